"""The `incident-monitor` command line: a thin client of the library.

Each area registers its commands from its own module in ``monitor/commands/`` (``register(subparsers)``);
this module only builds the parser, adds the options every command shares (``--db``, ``--config``,
``-v``), and turns typed errors into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.errors import USER_ERRORS, MonitorError

COMMAND_MODULES = (
    "monitor.commands.core",
    "monitor.commands.nlp",
    "monitor.commands.spikes",
    "monitor.commands.alerts",
    "monitor.commands.collect",
    "monitor.commands.work",
    "monitor.commands.label",
    "monitor.commands.query",
    "monitor.commands.serve",
)


def _add_shared_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--config`` where the command uses them (``set_defaults(shared_options=(...))`` narrows
    the pair, so no command accepts a flag it ignores), and ``-v`` everywhere."""
    shared = parser.get_default("shared_options")
    shared = ("db", "config") if shared is None else shared
    group = parser.add_argument_group("shared options")
    if "db" in shared:
        group.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                           help="database URL; overrides DATABASE_URL (default: a SQLite file in the user data dir)")
    if "config" in shared:
        group.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                           help="incident-monitor.toml to read (default: ./incident-monitor.toml if present)")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    group.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                       help="log lines as text (default) or one JSON object per line (time, level, logger, "
                            "message, extra fields) for a log shipper")


def _walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.extend(_walk(sub))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-monitor",
        description="Watch Japanese social media for reports of hijacked brokerage accounts and alert fast.",
        epilog="Example: incident-monitor demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"incident-monitor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a broken install: say so instead of quietly losing commands
            raise MonitorError(
                f"command module {name} cannot be imported ({exc}): the install is broken; reinstall with "
                "`pip install -e .`"
            ) from exc
        module.register(subparsers)
    for sub in _walk(parser)[1:]:
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            _add_shared_options(sub)
    return parser


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(verbosity: int, log_format: str = "text") -> None:
    from monitor.logjson import JsonFormatter, use_json
    from monitor.redact import install

    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=TEXT_FORMAT, stream=sys.stderr)
    use_json(log_format == "json")
    for handler in logging.getLogger().handlers:  # main() may run twice in one process (tests)
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
        elif isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    install()  # secrets never reach the log, whichever library logs them


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except MonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _configure_logging(getattr(args, "verbose", 0) or 0, getattr(args, "log_format", "text"))
    from monitor.logjson import say

    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        say(f"error: {exc}", level="ERROR")
        return 1
    except KeyboardInterrupt:
        say("interrupted", level="WARNING")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
