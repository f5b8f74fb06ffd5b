"""`work analyze`: an analyze worker. Several share the annotation backlog on PostgreSQL without double
work (the queue rows a worker is classifying are locked ``FOR UPDATE SKIP LOCKED``); a SQLite store takes
one worker, guarded by a lock file."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime

from monitor.commands import add_command, settings_and_engine
from monitor.errors import ConfigError

log = logging.getLogger(__name__)


def work_analyze(engine, analyzer, *, batch: int, stop: threading.Event, once: bool,
                 poll_seconds: float) -> tuple[int, int]:
    """Classify queued posts until ``stop`` (or, with ``once``, until the queue is empty).

    Returns (posts classified by this worker, annotations it stored); on PostgreSQL with several workers
    the two are equal, because no two workers ever hold the same post.
    """
    from sqlmodel import Session

    from monitor.analyze import fill_queue, pending_posts, store_analyses

    fill_queue(engine, analyzer.model_version)
    classified = stored = 0
    while not stop.is_set():
        with Session(engine, expire_on_commit=False) as session:
            posts = pending_posts(session, batch)
            if posts:
                results = analyzer.analyze_batch([p.text for p in posts])
                stored += store_analyses(session, posts, results, datetime.now(UTC))
                classified += len(posts)
            session.commit()
        if not posts:
            if once:
                break
            stop.wait(poll_seconds)
    return classified, stored


def cmd_work_analyze(args: argparse.Namespace) -> int:
    from monitor.analyze import load_analyzer
    from monitor.commands.collect import _stop_on_signals
    from storage.locks import acquire

    settings, engine = settings_and_engine(args)
    lock = None
    if engine.dialect.name != "postgresql":
        lock = acquire(engine, "analyze-worker")
        if lock is None:
            raise ConfigError("another analyze worker already works on this SQLite store, and SQLite takes one "
                              "writer at a time: run more workers against PostgreSQL (DATABASE_URL=postgresql://...)")
        print("SQLite store: this is its one analyze worker (several share the work on PostgreSQL)", file=sys.stderr)
    stop = threading.Event()
    _stop_on_signals(stop)
    analyzer = load_analyzer(settings.nlp.model, settings.nlp.securities_files)
    started = time.perf_counter()
    try:
        classified, stored = work_analyze(engine, analyzer, batch=args.batch or settings.pipeline.analyze_batch,
                                          stop=stop, once=args.once, poll_seconds=args.poll)
    finally:
        if lock is not None:
            lock.release()
    seconds = time.perf_counter() - started
    print(f"worker {os.getpid()}: classified {classified} posts, stored {stored} annotations in {seconds:.1f}s",
          file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    work = subparsers.add_parser("work", help="background workers",
                                 description="Background workers.\n\nExample: incident-monitor work analyze",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = work.add_subparsers(dest="work_command", metavar="WORKER")
    p = add_command(sub, "analyze", "classify queued posts; several workers share the backlog on PostgreSQL",
                    "incident-monitor work analyze --db postgresql://monitor@db/monitor", cmd_work_analyze)
    p.add_argument("--once", action="store_true", help="stop when the queue is empty (default: wait for more)")
    p.add_argument("--batch", type=int, metavar="N", help="posts per transaction (default [pipeline] analyze_batch)")
    p.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                   help="wait between looks at an empty queue (default 5)")
