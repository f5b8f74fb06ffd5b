"""Core commands: demo, replay, import, init, db upgrade (query and export live in query.py)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from monitor.commands import add_command, settings_and_engine
from monitor.durations import parse_duration
from monitor.errors import ConfigError, InputError


def _db(args: argparse.Namespace) -> str | None:
    return getattr(args, "db", None)


def _config(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None)


def _error_printer(stream: Any = None) -> Any:
    """One line per bad record, as it is met: ``error: FILE:LINE: reason``. Every one is also in the
    ``rejected`` table (``db rejected`` lists them), so nothing is cut short here."""
    stream = stream or sys.stderr

    def show(err: InputError) -> None:
        print(f"error: {err}", file=stream)

    return show


# -- import ----------------------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from monitor.ingest import import_file

    engine = settings_and_engine(args)[1]
    show = _error_printer()
    result = import_file(engine, args.file, on_error=show)
    print(f"{args.file}: {result.lines} lines, {result.stored} new posts stored, "
          f"{result.duplicates} already stored, {len(result.errors)} bad", file=sys.stderr)
    if result.lines and not (result.stored or result.duplicates or result.errors):
        print(f"{args.file}: imported 0 posts: its lines hold no posts (X API counts pages or pages with no "
              "tweets); import a Post JSONL or twarc2 search output instead", file=sys.stderr)
    return 1 if result.failed else 0


# -- replay ----------------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    from monitor.alerts import build_notifiers
    from monitor.pipeline import jsonl_sink, open_pipeline

    with ExitStack() as stack:
        sinks = []
        if args.alerts_jsonl:
            out = sys.stdout if args.alerts_jsonl == "-" else stack.enter_context(
                open(args.alerts_jsonl, "w", encoding="utf-8"))
            sinks.append(jsonl_sink(out))
        pipeline = open_pipeline(_db(args), _config(args), event_sinks=sinks, scope="replay")
        if args.notify:
            pipeline.notifiers = build_notifiers(pipeline.settings.alerts, pipeline.settings.slack,
                                                 terminal=sys.stderr)
        show = _error_printer()
        step = parse_duration(args.step) if args.step else None
        imported, events = pipeline.replay(args.file, step=step, tail=parse_duration(args.tail), on_error=show,
                                           rerun=args.rerun)
    kinds = Counter(e.event for e in events)
    print(f"{args.file}: {imported.stored} new posts, {imported.duplicates} already stored, "
          f"{len(imported.errors)} bad lines; alert events: "
          + (", ".join(f"{kinds[k]} {k}" for k in ("open", "update", "resolve") if kinds[k]) or "none"),
          file=sys.stderr)
    return 1 if imported.failed else 0


# -- demo ------------------------------------------------------------------------------------------------


DEMO_STREAM = Path(__file__).resolve().parents[1] / "demo" / "stream.jsonl"


def demo_database_path() -> Path:
    from storage.database import default_database_path

    return default_database_path().with_name("demo.sqlite")


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.alerts import build_notifiers
    from monitor.demo.report import print_demo_summary
    from monitor.pipeline import jsonl_sink, open_pipeline

    db = _db(args)
    if db is None:
        path = demo_database_path()
        # The demo is a fresh backtest every time: start from an empty file so a second run shows the
        # same alerts instead of a store already past the stream's end.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = f"sqlite:///{path}"
    events_path = Path(args.alerts_jsonl) if args.alerts_jsonl else demo_database_path().with_name("demo-alerts.jsonl")
    events_path.parent.mkdir(parents=True, exist_ok=True)
    with open(events_path, "w", encoding="utf-8") as events_out:
        pipeline = open_pipeline(db, _config(args), event_sinks=[jsonl_sink(events_out)], scope="demo")
        pipeline.notifiers = build_notifiers(pipeline.settings.alerts, pipeline.settings.slack, terminal=sys.stdout)
        print(f"Replaying the bundled demo stream ({DEMO_STREAM.name}): a week of Japanese posts, simulated time.")
        print("Loading the classifier and the Sudachi dictionary ...", flush=True)
        _ = pipeline.analyzer
        imported, events = pipeline.replay(DEMO_STREAM, on_error=_error_printer())
    print_demo_summary(pipeline, imported, events, db=db, events_path=events_path, stream=sys.stdout)
    if not any(e.event == "open" for e in events):
        print("error: the demo raised no alert; the NLP or detection stage is not working", file=sys.stderr)
        return 1
    return 1 if imported.failed else 0


# -- init / db -------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from monitor.settings import DEFAULT_CONFIG_NAME, render_default_config

    path = Path(args.path or DEFAULT_CONFIG_NAME)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists: pass --force to overwrite it")
    path.write_text(render_default_config(), encoding="utf-8")
    print(f"wrote {path}; edit it, put secrets in the environment, then run `incident-monitor run`")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage.database import current_revision, redact

    engine = settings_and_engine(args)[1]
    print(f"{redact(str(engine.url.render_as_string(hide_password=False)))}: schema at revision {current_revision(engine)}")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from monitor.retention import prune

    settings, engine = settings_and_engine(args)
    report = prune(engine, settings.retention, datetime.now(UTC))
    print(report.summary())
    return 0


def cmd_db_rejected(args: argparse.Namespace) -> int:
    from storage.database import session_scope
    from storage.quarantine import count_rejected, list_rejected

    engine = settings_and_engine(args, read_only=True)[1]
    with session_scope(engine) as session:
        total = count_rejected(session)
        rows = list_rejected(session, limit=args.limit, source=args.source)
    for row in rows:
        print(f"{row.rejected_at:%Y-%m-%d %H:%M:%S}Z  {row.ingest:<17}  {row.location}: {row.reason}")
        if args.records:
            more = f" [... {row.record_chars:,} characters in all]" if row.record_chars > len(row.record) else ""
            print("    " + " ".join(row.record.split()) + more)
    print(f"{total} rejected records stored" + (f"; newest {len(rows)} shown" if rows and total > len(rows) else ""),
          file=sys.stderr)
    return 0


# -- registration ----------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "demo", "replay the bundled demo stream into a fresh SQLite store and print the alerts",
             "incident-monitor demo", cmd_demo)
    p.add_argument("--alerts-jsonl", metavar="PATH", help="where to write the alert events (default: data dir)")

    p = add_command(subparsers, "replay", "run the whole pipeline over a JSONL file (Post records or X API v2 pages) in simulated time",
             "incident-monitor replay posts.jsonl --alerts-jsonl -", cmd_replay)
    p.add_argument("file", help="Post JSONL or twarc2 JSONL; - for stdin")
    p.add_argument("--alerts-jsonl", metavar="PATH", help="write alert events as JSONL to PATH (- for stdout)")
    p.add_argument("--step", metavar="DURATION", help="simulated clock step between cycles (default 5m)")
    p.add_argument("--tail", metavar="DURATION", default="3h", help="keep the clock running after the last post (default 3h)")
    p.add_argument("--notify", action="store_true", help="also send to the configured notifiers (Slack ...)")
    p.add_argument("--rerun", action="store_true",
                   help="replay a file this store already holds again: detection over the stored posts, "
                        "in a new backtest scope")

    p = add_command(subparsers, "import", "store a Post JSONL or twarc2 JSONL file without alerting",
             "incident-monitor import posts.jsonl", cmd_import)
    p.add_argument("file", help="Post JSONL or twarc2 JSONL; - for stdin")

    p = add_command(subparsers, "init", "write a commented incident-monitor.toml to start from",
             "incident-monitor init", cmd_init)
    p.add_argument("path", nargs="?", help="where to write it (default ./incident-monitor.toml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    db = subparsers.add_parser("db", help="database schema commands",
                               description="Database schema commands.\n\nExample: incident-monitor db upgrade",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    add_command(db_sub, "upgrade", "apply schema migrations (also done on every start)",
         "incident-monitor db upgrade --db postgresql://monitor@db/monitor", cmd_db_upgrade)
    add_command(db_sub, "prune", "delete what the [retention] settings no longer keep (also scheduled in run)",
         "incident-monitor db prune", cmd_db_prune)
    p = add_command(db_sub, "rejected", "list the quarantined bad records, newest first: when, ingest, where, why",
                    "incident-monitor db rejected --limit 50 --records", cmd_db_rejected)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="how many to list (default 20)")
    p.add_argument("--source", metavar="NAME", help="only those from this source (x, reddit, bluesky, file)")
    p.add_argument("--records", action="store_true", help="also print each record as received (cut to 4 kB)")



