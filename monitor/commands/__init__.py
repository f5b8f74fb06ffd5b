"""Command modules of the CLI; each exposes ``register(subparsers)``. Shared helpers live here."""

from __future__ import annotations

import argparse
from typing import Any


def add_command(sub: Any, name: str, help_text: str, example: str, handler: Any = None) -> argparse.ArgumentParser:
    """A subcommand whose description ends with a runnable example (every command's help must)."""
    parser = sub.add_parser(name, help=help_text, description=f"{help_text}\n\nExample: {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def settings_and_engine(args: argparse.Namespace, *, read_only: bool = False, must_exist: bool = False,
                        migrate: bool = True) -> tuple[Any, Any]:
    """The settings (``--config``) and the store: ``--db``, else DATABASE_URL / the config, else the default
    SQLite file, with its schema brought up to date.

    ``read_only`` commands (query, export, serve, alerts list) open a store that must exist already and is
    never created or migrated (a store behind the code's schema is one line naming ``db upgrade``);
    ``must_exist`` only refuses to create one (``status``, whose ``--check`` also passes ``migrate=False``).
    """
    from monitor.settings import load_settings
    from storage.database import open_existing_store, open_store

    settings = load_settings(getattr(args, "config", None))
    url = getattr(args, "db", None) or settings.storage.database_url
    if read_only:
        return settings, open_existing_store(url)
    return settings, open_store(url, must_exist=must_exist, migrate=migrate)
