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


def settings_and_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    """The settings (``--config``) and the migrated store: ``--db``, else DATABASE_URL / the config, else the
    default SQLite file."""
    from monitor.settings import load_settings
    from storage.database import open_store

    settings = load_settings(getattr(args, "config", None))
    return settings, open_store(getattr(args, "db", None) or settings.storage.database_url)


def settings_and_existing_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    """Like :func:`settings_and_engine` for read-only commands: the store must exist already; nothing is
    created or migrated."""
    from monitor.settings import load_settings
    from storage.database import open_existing_store

    settings = load_settings(getattr(args, "config", None))
    return settings, open_existing_store(getattr(args, "db", None) or settings.storage.database_url)
