"""Commands of the collectors: ``collect SOURCE --once``, ``status`` and ``run`` (the live bot)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from monitor.commands import add_command, settings_and_engine
from monitor.errors import ConfigError, CredentialsError, SourceError
from monitor.logjson import say

log = logging.getLogger(__name__)
SOURCES = ("x", "reddit", "bluesky")


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT set the stop event (the current page still commits); a second one exits hard."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("%s received: finishing the current page and stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cmd_collect(args: argparse.Namespace) -> int:
    from monitor.collectors import health
    from monitor.collectors.registry import build_collector

    settings, engine = settings_and_engine(args)
    section = getattr(settings, args.source)
    if not section.enabled:
        raise ConfigError(f"{args.source} is disabled in the config: set [{args.source}] enabled = true")
    try:
        collector = build_collector(args.source, settings)
    except CredentialsError as exc:
        health.record_error(engine, args.source, str(exc), disabled=True)
        raise
    stop = threading.Event()
    _stop_on_signals(stop)
    interval = int(getattr(settings.scheduler, f"{args.source}_seconds", 300))
    status = 0
    while True:
        try:
            result = collector.collect(engine, stop)
        except CredentialsError as exc:
            health.record_error(engine, args.source, str(exc), disabled=True)
            raise
        except SourceError as exc:
            health.record_error(engine, args.source, str(exc))
            if args.once:
                raise
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        else:
            health.record_pass(engine, result)
            print(result.summary())
        if args.once or stop.wait(interval):
            return status


def _fmt(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    ago = now - moment
    minutes = int(ago.total_seconds() // 60)
    if minutes < 60:
        return f"{moment:%Y-%m-%d %H:%M}Z ({minutes} min ago)"
    return f"{moment:%Y-%m-%d %H:%M}Z ({minutes // 60} h ago)"


def print_status(engine: Any, settings: Any, now: datetime, out: TextIO, disabled: dict[str, str] | None = None) -> int:
    """Per-source health, the pipeline and open alerts (:func:`monitor.operations.snapshot`, which
    ``/metrics`` exports too); returns how many sources need attention."""
    from monitor.operations import snapshot

    snap = snapshot(engine, settings, now)
    attention = 0
    stored = snap.posts_by_source
    detail = ", ".join(f"{source} {n}" for source, n in stored.items())
    print(f"posts stored: {snap.posts_total}" + (f" ({detail})" if detail else ""), file=out)
    print("sources:", file=out)
    for source in sorted(set(SOURCES) | set(snap.sources)):
        view = snap.sources.get(source)
        reason = (disabled or {}).get(source)
        if view is None:
            print(f"  {source}: never ran" + (f" - {reason}" if reason else ""), file=out)
            continue
        spend = f", spend today ~${view.spend_today_usd:.2f}"
        if source == "x":
            spend += f" of ${snap.x_budget_usd:.2f} budget"
        print(f"  {source}: last success {_fmt(view.last_success_at, now)}, {view.posts_collected} posts collected, "
              f"{view.requests} requests{spend}", file=out)
        if view.last_error:
            # Both times show to the minute: say whether passes have succeeded since, so an outage that has
            # ended does not read as one that goes on.
            recovered = view.last_success_at is not None and view.last_error_at is not None and \
                view.last_success_at > view.last_error_at
            print(f"    last error {_fmt(view.last_error_at, now)}: {view.last_error}"
                  + (" (passes have succeeded since)" if recovered else ""), file=out)
        if view.disabled_reason or reason:
            attention += 1
            print(f"    DISABLED: {view.disabled_reason or reason}", file=out)
        elif view.silent:
            attention += 1
            print(f"    WARNING: no new post for over {snap.silent_after_minutes} min "
                  f"(last new post {_fmt(view.last_post_at, now)}); check its queries and credentials", file=out)
    lag = f", oldest created {_fmt(snap.analysis_oldest, now)}" if snap.analysis_backlog else ""
    print(f"posts stored: {snap.posts_total}; waiting for analysis: {snap.analysis_backlog}{lag}", file=out)
    print(f"alerts opened (live): {sum(snap.alerts_opened.values())}; messages retrying: {snap.messages_retrying}, "
          f"given up: {snap.messages_dead}", file=out)
    print(f"rejected records: {snap.rejected}"
          + (" (incident-monitor db rejected lists them)" if snap.rejected else ""), file=out)
    print(f"open alerts: {len(snap.open_alerts)}", file=out)
    for alert in snap.open_alerts:
        if alert.kind == "source":
            print(f"  [{alert.status}] source {alert.key}: {alert.explanation}", file=out)
            continue
        print(f"  [{alert.status}] {alert.kind} {alert.key}: {alert.count} reporters "
              f"(expected {alert.expected:.1f}, score {alert.score:.1f}) since {_fmt(alert.since, now)}", file=out)
    return attention


def check_health(engine: Any, settings: Any, now: datetime, out: TextIO) -> int:
    """For container health checks: 0 when the store answers and the live cycle is not stale."""
    from monitor.pipeline import LIVE_SCOPE
    from storage.database import schema_behind, session_scope
    from storage.models import StateEntry

    limit = timedelta(seconds=max(5 * settings.pipeline.cycle_seconds, 300))
    if schema_behind(engine):
        print("unhealthy: the store's schema is older than this version; run `incident-monitor db upgrade`", file=out)
        return 1
    with session_scope(engine) as session:
        entry = session.get(StateEntry, f"detector:{LIVE_SCOPE}")
        last = entry.updated_at if entry is not None else None
    if last is not None and now - last > limit:
        print(f"unhealthy: the last analyze/detect cycle ran {_fmt(last, now)}; check the bot's log", file=out)
        return 1
    print("ok: store reachable" + (f", last cycle {_fmt(last, now)}" if last else ", no cycle yet"), file=out)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from monitor.collectors.registry import build_collectors

    # A health check (the Dockerfile's) only reads: it never creates a store or runs migrations.
    settings, engine = settings_and_engine(args, must_exist=True, migrate=not args.check)
    if args.check:
        return check_health(engine, settings, datetime.now(UTC), sys.stdout)
    _, disabled = build_collectors(settings)
    print_status(engine, settings, datetime.now(UTC), sys.stdout, disabled)
    return 0


def _pipeline_cycle(engine: Any, settings: Any, stop: threading.Event, sources: Sequence[str] = ()) -> Any:
    """The analyze -> detect -> alert cycle the scheduler calls with ``now``; alerts go to the terminal
    and Slack, and each event is written to the log stream (stderr) as one bare contract JSON line, at any
    log level (as DESIGN.md promises for `run`: `docker logs` shows them and a log shipper can parse them).
    ``sources`` are watched for silence (an alert of the bot's own when one stops collecting)."""
    from monitor.alerts import build_notifiers
    from monitor.pipeline import Pipeline, jsonl_sink

    ctx = Pipeline(engine, settings, event_sinks=[jsonl_sink(sys.stderr)], watched_sources=sources)
    ctx.notifiers = build_notifiers(settings.alerts, settings.slack, terminal=sys.stdout, stop=stop)
    return ctx.run_cycle


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.collectors.registry import build_collectors
    from monitor.scheduler import Bot

    settings, engine = settings_and_engine(args)
    collectors, disabled = build_collectors(settings)
    for line in disabled.values():
        say(line, level="WARNING")
    if not collectors:
        raise ConfigError("no source can run: set X_BEARER_TOKEN, the REDDIT_* variables, or enable [bluesky]")
    stop = threading.Event()
    _stop_on_signals(stop)
    _serve_metrics_until(stop, engine, settings)  # before the lock: a standby answers scrapes too
    leader = _lead_or_stand_by(engine, stop)
    if leader is None:
        say("stopped")
        return 0
    cycle = None if args.no_cycle else _pipeline_cycle(engine, settings, stop, [c.source for c in collectors])
    bot = Bot(engine, collectors, settings.scheduler, cycle=cycle, cycle_seconds=settings.pipeline.cycle_seconds, stop=stop)
    say(f"running: {', '.join(c.source for c in collectors)}; stop with Ctrl-C or SIGTERM")
    _schedule_prune(bot, engine, settings)
    leadership = _Leadership(engine, leader)
    lost = _watch_lock(leadership, stop)
    try:
        bot.run_until_stopped()
    finally:
        leadership.release()
    say("stopped")
    return 1 if lost.is_set() else 0


def _serve_metrics_until(stop: threading.Event, engine: Any, settings: Any) -> None:
    """Prometheus metrics on ``[metrics] port`` (when set) until ``stop`` is set."""
    from monitor.metrics import serve_metrics

    server = serve_metrics(engine, settings, settings.metrics)
    if server is not None:
        threading.Thread(target=lambda: (stop.wait(), server.shutdown()), daemon=True, name="metrics-stop").start()


def _schedule_prune(bot: Any, engine: Any, settings: Any) -> None:
    """The retention job: `db prune` every ``[retention] prune_every_hours``, first one an hour after start."""
    from monitor.retention import prune

    every = settings.retention.prune_every_hours
    if not every:
        return

    def job() -> None:
        try:
            log.info("%s", prune(engine, settings.retention, datetime.now(UTC)).summary())
        except Exception:  # noqa: BLE001 - a failed prune is retried at the next interval
            log.exception("retention prune failed")

    bot.scheduler.add_job(job, "interval", id="retention-prune", hours=every,
                          next_run_time=datetime.now(UTC) + timedelta(hours=1))


class _Leadership:
    """The scheduler lock this instance holds. A PostgreSQL lock ends with its connection, so a database
    restart takes it away; it is then taken again (nobody else can hold it while the server is down) -
    unless a standby got it first, and then this instance stops."""

    def __init__(self, engine: Any, lock: Any) -> None:
        self.engine = engine
        self.lock = lock

    def check(self) -> bool:
        """True while this instance still leads (re-taking a dropped lock); False once another one does."""
        from sqlalchemy.exc import SQLAlchemyError

        from storage.locks import acquire

        if self.lock.alive():
            return True
        self.lock.release()  # its connection is gone; this only closes it
        try:
            again = acquire(self.engine, "scheduler")
        except SQLAlchemyError as exc:  # the database is still down: nobody can take the lock; ask again soon
            log.warning("the scheduler lock's database connection dropped and the database is unreachable "
                        "(%s); asking again", type(getattr(exc, "orig", None) or exc).__name__)
            return True
        if again is None:
            return False
        self.lock = again
        log.warning("the scheduler lock's database connection dropped (a database restart?); took the "
                    "scheduler lock again")
        return True

    def release(self) -> None:
        self.lock.release()


def _watch_lock(leader: _Leadership, stop: threading.Event, every: float = 2.0) -> threading.Event:
    """Stop the bot when another instance holds the scheduler lock by now (it was lost with the database
    connection and a standby took it first): two schedulers would page twice. Exits non-zero so that a
    supervisor restarts it, as a standby."""
    lost = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            if not leader.check():
                log.error("lost the scheduler lock to another instance (the database connection dropped); "
                          "stopping so that only one instance schedules")
                lost.set()
                stop.set()

    threading.Thread(target=watch, daemon=True, name="scheduler-lock-watch").start()
    return lost


STANDBY_POLL_SECONDS = 2.0


def _lead_or_stand_by(engine: Any, stop: threading.Event) -> Any:
    """Exactly one scheduler and alerting loop per store: take the ``scheduler`` lock (a PostgreSQL advisory
    lock on a dedicated connection, a lock file on SQLite), or stand by until its holder is gone and take
    over. Returns the held lock, or None when stopped while standing by."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.locks import acquire

    lock = acquire(engine, "scheduler")
    if lock is not None:
        return lock
    say(f"another instance runs the scheduler for this store; standing by (pid {os.getpid()}), "
        "taking over when it stops")
    while not stop.wait(STANDBY_POLL_SECONDS):
        try:
            lock = acquire(engine, "scheduler")
        except SQLAlchemyError:  # the database is down (a restart): nobody can lead now; keep standing by
            continue
        if lock is not None:
            say("the other instance is gone; taking over the scheduler")
            return lock
    return None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "collect", "run collection passes of one source (X, Reddit or Bluesky)",
             "incident-monitor collect x --once")
    p.add_argument("source", choices=SOURCES, help="which source")
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: repeat at the source's interval)")
    p.set_defaults(handler=cmd_collect)

    p = add_command(subparsers, "status", "per source: last success, posts collected, last error, spend; open alerts",
             "incident-monitor status")
    p.add_argument("--check", action="store_true",
                   help="health check: exit 1 when the store is unreachable or the live cycle is stale")
    p.set_defaults(handler=cmd_status)

    p = add_command(subparsers, "run", "the live bot: every configured source plus the alert cycle, until SIGTERM/Ctrl-C",
             "incident-monitor run")
    p.add_argument("--no-cycle", action="store_true", help="collect only; do not run the analyze/detect/alert cycle")
    p.set_defaults(handler=cmd_run)
