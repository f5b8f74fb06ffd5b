"""`serve`: the read-only HTTP API and dashboard (FastAPI + uvicorn, the ``api`` extra).

Author ids are served pseudonymised with ``MONITOR_PSEUDONYM_KEY``, as exports are; without the key `serve`
refuses to start unless ``--raw-authors`` says to serve them as stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from monitor.commands import add_command
from monitor.errors import ConfigError

EXAMPLE = ("incident-monitor serve --port 8080   (with MONITOR_API_TOKENS and MONITOR_PSEUDONYM_KEY set in the "
           "environment)")


def build_app(args: argparse.Namespace) -> tuple[Any, Any]:
    """The app and the [api] settings (with --host/--port applied), over the existing store."""
    import dataclasses

    from monitor.commands import settings_and_engine
    from monitor.commands.query import pseudonymizer_from_env

    try:
        from monitor.api.app import create_app
    except ImportError as exc:
        raise ConfigError(f"serve needs the web stack ({exc.name} is missing): "
                          "pip install 'incident-monitor[api]'") from exc
    settings, engine = settings_and_engine(args, read_only=True)
    config = settings.api
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = dataclasses.replace(config, **overrides)
    if not config.token_list():
        raise ConfigError("MONITOR_API_TOKENS is not set, so no client could use the API: set it to one or more "
                          "comma-separated tokens (or MONITOR_API_TOKENS_FILE to a file holding them)")
    pseudonymizer = None if args.raw_authors else pseudonymizer_from_env("the API and dashboard", "serve")
    return create_app(engine, config, settings, pseudonymizer=pseudonymizer, raw_authors=args.raw_authors), config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    app, config = build_app(args)
    print(f"serving the API and dashboard on http://{config.host}:{config.port}/ (docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    return 0


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "serve", "read-only HTTP API and dashboard over the store; /api/ routes need a "
                    "bearer token from MONITOR_API_TOKENS", EXAMPLE, cmd_serve)
    p.add_argument("--host", help="address to listen on (default [api] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default [api] port, 8080)")
    p.add_argument("--raw-authors", action="store_true",
                   help="serve author ids and handles as stored (default: pseudonymised with MONITOR_PSEUDONYM_KEY, "
                        "as in exports)")
