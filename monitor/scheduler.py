"""APScheduler wiring of the live bot, and nothing more.

One interval job per collector plus one analyze -> detect -> alert cycle job (``monitor.pipeline``,
imported lazily). Jobs never overlap (``max_instances=1``), missed runs collapse into one (``coalesce``),
a run late by less than the misfire grace still runs, and jitter spreads the sources apart.

Shutdown: :meth:`Bot.stop` sets one :class:`threading.Event` that every collector sleeps on and checks
between pages, so a running job finishes the page it is storing (pages commit atomically) and returns
within seconds; the bot waits at most ``shutdown_seconds`` for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from monitor.collectors import health
from monitor.collectors.base import Collector
from monitor.errors import USER_ERRORS, CredentialsError, RateLimited

log = logging.getLogger(__name__)
CYCLE_JOB = "pipeline-cycle"


def db_error(exc: SQLAlchemyError) -> str:
    """The driver's first line of a database error (without SQLAlchemy's statement and background link)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Bot:
    """The scheduler with every collector and the pipeline cycle; ``cycle`` is called with ``now``."""

    def __init__(
        self,
        engine: Engine,
        collectors: list[Collector],
        scheduler_config: Any,
        *,
        cycle: Callable[[datetime], Any] | None = None,
        cycle_seconds: int = 60,
        stop: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.collectors = list(collectors)
        self.config = scheduler_config
        self.cycle = cycle
        self.cycle_seconds = cycle_seconds
        self.stop_event = stop or threading.Event()
        self.scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "max_instances": 1,
            "coalesce": True,
            "misfire_grace_time": scheduler_config.misfire_grace_seconds,
        })
        self.runs: dict[str, int] = {}

    def interval(self, source: str) -> int:
        return int(getattr(self.config, f"{source}_seconds", 300))

    def run_source(self, collector: Collector) -> None:
        """One pass; every failure is logged and recorded, none escapes to stop the scheduler."""
        source = collector.source
        self.runs[source] = self.runs.get(source, 0) + 1
        try:
            result = collector.collect(self.engine, self.stop_event)
        except CredentialsError as exc:
            log.error("%s disabled: %s", source, exc)
            health.record_error(self.engine, source, str(exc), disabled=True)
            try:
                self.scheduler.remove_job(f"collect-{source}")
            except Exception:  # noqa: BLE001 - the job may already be gone at shutdown
                pass
            return
        except RateLimited as exc:
            log.warning("%s: %s", source, exc)
            self._record_error(source, str(exc))
            return
        except USER_ERRORS as exc:
            log.error("%s: pass failed: %s", source, exc)
            self._record_error(source, str(exc))
            return
        except DBAPIError as exc:
            # The store failed (a database restart, a dropped connection): one line, no traceback; the
            # page's transaction rolled back with its cursor, so the next pass fetches it again.
            log.error("%s: pass failed: the database failed (%s); the next pass tries again", source, db_error(exc))
            self._record_error(source, f"database error: {db_error(exc)}")
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one source must not stop the others
            log.exception("%s: unexpected error in a pass", source)
            self._record_error(source, f"unexpected {type(exc).__name__}: {exc}")
            return
        try:
            health.record_pass(self.engine, result)
        except SQLAlchemyError as exc:
            log.error("%s: pass stored, its health not recorded: the database failed (%s)", source, db_error(exc))
        log.info("%s", result.summary())

    def _record_error(self, source: str, message: str) -> None:
        try:
            health.record_error(self.engine, source, message)
        except SQLAlchemyError:  # the database is what failed; the log line above says so
            pass

    def run_cycle(self) -> None:
        if self.cycle is None:
            return
        try:
            self.cycle(datetime.now(UTC))
        except USER_ERRORS as exc:
            log.error("pipeline cycle failed: %s", exc)
        except DBAPIError as exc:
            log.error("pipeline cycle failed: the database failed (%s); the next cycle tries again", db_error(exc))
        except Exception:  # noqa: BLE001 - the next cycle may well succeed; keep collecting
            log.exception("pipeline cycle failed")

    def start(self) -> None:
        now = datetime.now(UTC)
        jitter = self.config.jitter_seconds or None
        for collector in self.collectors:
            self.scheduler.add_job(
                self.run_source, "interval", args=[collector], id=f"collect-{collector.source}",
                seconds=self.interval(collector.source), jitter=jitter, next_run_time=now,
            )
        if self.cycle is not None:
            self.scheduler.add_job(
                self.run_cycle, "interval", id=CYCLE_JOB, seconds=self.cycle_seconds, jitter=jitter,
                next_run_time=now + timedelta(seconds=min(5, self.cycle_seconds)),
            )
        self.scheduler.start()
        log.info("bot started: %s", ", ".join(c.source for c in self.collectors) or "no collectors")

    def stop(self, timeout: float | None = None) -> bool:
        """Stop promptly; True when every running job finished within ``timeout``."""
        timeout = self.config.shutdown_seconds if timeout is None else timeout
        self.stop_event.set()
        done = threading.Event()

        def wait_for_jobs() -> None:
            try:
                self.scheduler.shutdown(wait=True)
            except Exception:  # noqa: BLE001 - not running
                pass
            done.set()

        threading.Thread(target=wait_for_jobs, daemon=True, name="bot-shutdown").start()
        finished = done.wait(timeout)
        if not finished:
            log.warning("a job still runs after %.0fs; exiting anyway (its uncommitted page is fetched again next start)", timeout)
        return finished

    def run_until_stopped(self, poll: float = 0.5) -> None:
        """Start, block until the stop event is set (signal handler, test), then stop."""
        self.start()
        while not self.stop_event.wait(poll):
            pass
        self.stop()
