"""The one entry point that the live scheduler and ``replay`` both call.

A cycle at time ``now``: analyze new posts -> count and detect -> plan alert events (committed with their
outbox rows) -> deliver the outbox. Replay drives the very same cycle with a simulated clock taken from the
posts' timestamps, so a backtest exercises exactly what the live bot runs.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from monitor import alerts as alerting
from monitor.analyze import ReportWindow, analyze_pending, load_analyzer
from monitor.detect.counting import bucket_index
from monitor.detect.detector import Detector
from monitor.detect.silence import SourceSeen, silence_signals
from monitor.errors import InputError, MonitorError
from monitor.events import AlertEvent, Signal
from monitor.ingest import ImportResult, _insert, check_input_file, import_file
from monitor.settings import Settings, load_settings
from storage.database import open_store, session_scope
from storage.export import json_line
from storage.locks import acquire
from storage.models import SourceHealth, StateEntry
from storage.queries import LIVE_SCOPE, has_active_alerts

log = logging.getLogger(__name__)


@dataclass
class CycleResult:
    now: datetime
    analyzed: int = 0
    signals: list[Signal] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    delivered: int = 0


class Pipeline:
    """Stages bound to one store, one analyzer, one detector state and a set of notifiers."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        *,
        notifiers: dict[str, Any] | None = None,
        event_sinks: Iterable[Callable[[AlertEvent], None]] = (),
        scope: str = LIVE_SCOPE,
        analyzer: Any = None,
        watched_sources: Iterable[str] = (),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.notifiers = dict(notifiers or {})
        self.event_sinks = list(event_sinks)
        self.scope = scope
        self._analyzer = analyzer
        self._detector: Detector | None = None
        self._window: ReportWindow | None = None
        # What the last cycle left behind; None = unknown (ask the store). Quiet cycles then skip the
        # alert and delivery stages instead of re-reading empty tables every few minutes.
        self._alerts_active: bool | None = None
        self._outbox_idle: bool | None = None
        self._replay_run: ReplayRun | None = None
        self._saved_bucket: int | None = None  # bucket of the detector state last stored
        self._pruned_at: datetime | None = None
        # The sources `run` collects from: a silent one gets an alert of its own (monitor.detect.silence).
        # Only the live bot passes them, so replay and the analyze workers never raise one.
        self.watched_sources = tuple(watched_sources)
        self._watching_since: datetime | None = None

    # -- stages --------------------------------------------------------------------------------------

    @property
    def analyzer(self) -> Any:
        if self._analyzer is None:
            self._analyzer = load_analyzer(
                self.settings.nlp.model, self.settings.nlp.securities_files, self.settings.nlp.onnx_threads
            )
        return self._analyzer

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = self._load_detector()
        return self._detector

    def _state_key(self) -> str:
        return f"detector:{self.scope}"

    def _load_detector(self) -> Detector:
        with Session(self.engine) as session:
            entry = session.get(StateEntry, self._state_key())
        config = self.settings.detect
        if entry is not None and entry.value:
            try:
                detector = Detector.from_state(entry.value)
                if detector.config == config:
                    return detector
                log.warning("detector settings changed since the baseline was stored; starting a fresh baseline")
            except (MonitorError, KeyError, TypeError, ValueError) as exc:
                log.warning("stored detector state is unreadable (%s); starting a fresh baseline", exc)
        return Detector(config)

    def _save_detector(self, session: Session, now: datetime) -> None:
        """Store the detector state when it changed: it changes only when a bucket closes, so a live cycle
        every minute writes it once per bucket, not every cycle. Once a (stream) day, idle ticker models
        are pruned first (:func:`prune_state`).

        A replay closes a bucket every cycle, and the state grows with every key ever named (a ticker's
        model is kept for months of stream time), so writing it each cycle made a long replay slower per
        post the longer it ran. A replay writes it once per ``REPLAY_STATE_EVERY`` of stream time instead,
        with the cycle it belongs to; a killed replay re-runs detection (not alerting) from that cycle up
        to its clock, which rebuilds exactly the state it had (see :meth:`replay`)."""
        bucket = bucket_index(now, self.detector.bucket)
        if bucket == self._saved_bucket:
            return
        state = None
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            state = self.detector.to_state()
            if prune_state(state, bucket):
                self._detector = Detector.from_state(state)
        self._saved_bucket = bucket
        run = self._replay_run
        if run is not None and run.state_clock is not None and now - run.state_clock < REPLAY_STATE_EVERY:
            return
        save_state(session, self._state_key(), state if state is not None else self.detector.to_state(), now)
        if run is not None:
            run.state_clock, run.pruned_at = now, self._pruned_at

    def analyze(self, now: datetime) -> int:
        # A replay analyses only the posts its clock has reached, so the first cycle does not classify the
        # whole file and the window never holds reports from the simulated future.
        until = now if self._replay_run is not None else None
        return analyze_pending(self.engine, self.analyzer, batch=self.settings.pipeline.analyze_batch, now=now,
                               until=until)

    def detect(self, now: datetime, *, catch_up: bool = False) -> list[Signal]:
        detector = self.detector
        if self._window is None or self._window.model != self.analyzer.model_version:
            self._window = ReportWindow(self.analyzer.model_version, detector.lookback)
        with session_scope(self.engine) as session:
            reports = self._window.refresh(session, now)
            signals = detector.evaluate(now, reports)
            self._save_detector(session, now)
            if self._replay_run is not None:
                # The replay's clock is committed with the cycle's detector state (or with the cycle of the
                # last stored state, from which detection is re-run): a killed replay resumes at this cycle
                # (re-planning one cycle is idempotent), never from the start. Catching up on a resume
                # moves no clock: those cycles were planned before the kill.
                if not catch_up:
                    self._replay_run.clock = now
                self._replay_run.save(session)
        return signals

    def source_signals(self, now: datetime) -> list[Signal]:
        """Silence signals of the watched sources (live scope only): firing for a source without a
        successful pass for ``[alerts] source_silence_minutes``; non-firing ones only while an alert may be
        open (they are what resolves it)."""
        if not self.watched_sources or self.scope != LIVE_SCOPE or self._replay_run is not None:
            return []
        if self._watching_since is None:
            self._watching_since = now
        from monitor.redact import redact_text, secret_values

        secrets = secret_values()  # an error text goes to Slack: mask what the log would mask
        with Session(self.engine) as session:
            rows = session.exec(select(SourceHealth)).all()
            seen = [SourceSeen(r.source, r.last_success_at, r.last_error_at,
                               redact_text(r.last_error, secrets) if r.last_error else None) for r in rows]
        limit = timedelta(minutes=self.settings.alerts.source_silence_minutes)
        return silence_signals(seen, self.watched_sources, now, self._watching_since, limit,
                               include_healthy=self._alerts_active is not False)

    def alert(self, now: datetime, signals: list[Signal]) -> list[AlertEvent]:
        if not signals and self._alerts_active is False:
            return []
        try:
            events = self._plan_alerts(now, signals)
        except IntegrityError:
            # Another writer opened one of these alerts first (the unique index on active fingerprints):
            # plan again on top of what it stored instead of opening a second episode.
            log.warning("another instance recorded an alert first; planning again on top of it")
            events = self._plan_alerts(now, signals)
        if events:
            self._outbox_idle = False
        for event in events:
            for sink in self.event_sinks:
                sink(event)
        return events

    def deliver(self, now: datetime) -> int:
        if not self.notifiers or self._outbox_idle:
            return 0
        report = alerting.deliver_pending(self.engine, self.notifiers, now, self.settings.alerts, self.scope)
        self._outbox_idle = report.retrying == 0 and report.waiting == 0
        return report.sent

    def _plan_alerts(self, now: datetime, signals: list[Signal]) -> list[AlertEvent]:
        with session_scope(self.engine) as session:
            events = alerting.process_signals(session, signals, now, self.settings.alerts, list(self.notifiers),
                                              self.scope)
            self._alerts_active = has_active_alerts(session, self.scope)
        return events

    def run_cycle(self, now: datetime) -> CycleResult:
        """One analyze -> detect -> alert -> deliver pass at ``now`` (stream time in replay)."""
        result = CycleResult(now=now)
        result.analyzed = self.analyze(now)
        result.signals = self.detect(now) + self.source_signals(now)
        result.events = self.alert(now, result.signals)
        result.delivered = self.deliver(now)
        return result

    # -- files ---------------------------------------------------------------------------------------

    def import_file(self, path: str | Path, *, on_error: Callable[[InputError], None] | None = None,
                    ingest: str = "import", name: str | None = None) -> ImportResult:
        """Store every good record of a Post JSONL / twarc2 JSONL file; bad records go to ``rejected`` and
        are reported with file:line."""
        return import_file(self.engine, path, on_error=on_error, ingest=ingest, name=name)

    def replay(self, path: str | Path, *, step: timedelta | None = None, tail: timedelta | None = None,
               on_error: Callable[[InputError], None] | None = None,
               on_cycle: Callable[[CycleResult], None] | None = None,
               rerun: bool = False) -> tuple[ImportResult, list[AlertEvent]]:
        """The whole pipeline over a file in simulated time: store it, then step the clock through it.

        The clock starts at the first post and advances by ``step``; each cycle analyses and sees only
        posts created before its ``now``, so the run is causal. After the last post the clock runs on for
        ``tail`` so open alerts can resolve.

        A backtest never touches live state: its alerts, events, outbox rows and detector baseline live in
        a scope of their own (``replay:<file digest>#<run>``), starting from a fresh baseline. The run is
        recorded in the store with its clock, so a killed replay of the same file resumes where it stopped
        and never opens its alerts again. A file whose replay already finished here, or whose posts were
        all stored before, is refused with the way to backtest it (``rerun`` runs detection again over the
        stored posts in a new scope). One replay at a time per store.
        """
        step = step or timedelta(seconds=self.settings.pipeline.replay_step_seconds)
        tail = tail if tail is not None else timedelta(hours=3)
        base = self.scope if self.scope != LIVE_SCOPE else "replay"
        events: list[AlertEvent] = []
        with _local_copy(path) as (local, digest), _replay_lock(self.engine, str(path)):
            run = ReplayRun.load(self.engine, digest)
            if run is not None and run.status == "done" and not rerun:
                raise InputError(
                    f"{path}: this store already holds a finished replay of this file ({run.scope}); a backtest "
                    "judges a file on its own: replay into a fresh --db, or pass --rerun to run detection again "
                    "over the stored posts")
            imported = self.import_file(local, on_error=on_error, ingest="replay", name=str(path))
            if imported.first is None or imported.last is None:
                return imported, events
            if run is None and imported.stored == 0 and not rerun:
                raise InputError(
                    f"{path}: every post of this file ({imported.duplicates}) was already stored here, so a replay "
                    "would not judge the file on its own: replay into a fresh --db, or pass --rerun to run "
                    "detection over the stored posts")
            resume = run is not None and run.status == "running" and run.clock is not None
            catch_up_from = None
            if resume:
                assert run is not None and run.clock is not None
                log.warning("%s: resuming the interrupted replay (%s) at %s", path, run.scope, run.clock.isoformat())
                now = run.clock
                catch_up_from = run.state_clock
            else:
                number = (run.number + 1) if run is not None else 1
                run = ReplayRun(digest, str(path), f"{base}:{digest[:16]}#{number}", number, "running", None)
                now = _ceil_time(imported.first, step)
            self.scope = run.scope
            self._replay_run = run
            self._window = None
            self._alerts_active = self._outbox_idle = None
            self._saved_bucket = None
            self._pruned_at = run.pruned_at if resume else None
            # A fresh baseline for a new run; a resumed run reads the stored one and re-runs detection from
            # the cycle it was stored at up to the clock (those cycles' alerts were planned before the kill).
            self._detector = None if resume else Detector(self.settings.detect)
            with session_scope(self.engine) as session:
                run.save(session)
            if catch_up_from is not None:
                moment = catch_up_from + step
                while moment < now:
                    self.detect(moment, catch_up=True)
                    moment += step
            end = imported.last + tail
            while now <= end:
                cycle = self.run_cycle(now)
                events.extend(cycle.events)
                if on_cycle:
                    on_cycle(cycle)
                now += step
            run.status = "done"
            with session_scope(self.engine) as session:
                save_state(session, self._state_key(), self.detector.to_state(), now - step)
                run.save(session)
            self._replay_run = None
        return imported, events


@dataclass
class ReplayRun:
    """A replay of one file (by content digest) into this store: its scope, run number, status and clock."""

    digest: str
    path: str
    scope: str
    number: int
    status: str  # running | done
    clock: datetime | None
    # The cycle whose detector state is stored (replay stores it once per REPLAY_STATE_EVERY) and when the
    # detector was last pruned then; None for a run recorded before they were kept (state at the clock).
    state_clock: datetime | None = None
    pruned_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"replay-run:{self.digest}"

    @classmethod
    def load(cls, engine: sa.Engine, digest: str) -> ReplayRun | None:
        with Session(engine) as session:
            entry = session.get(StateEntry, f"replay-run:{digest}")
        if entry is None or not entry.value:
            return None
        v = entry.value
        clock = datetime.fromisoformat(v["clock"]) if v.get("clock") else None
        state_clock = datetime.fromisoformat(v["state_clock"]) if v.get("state_clock") else None
        pruned_at = datetime.fromisoformat(v["pruned_at"]) if v.get("pruned_at") else None
        return cls(digest, v.get("path", ""), v["scope"], int(v.get("number", 1)), v.get("status", "done"), clock,
                   state_clock, pruned_at)

    def save(self, session: Session) -> None:
        value = {"path": self.path, "scope": self.scope, "number": self.number, "status": self.status,
                 "clock": self.clock.isoformat() if self.clock else None,
                 "state_clock": self.state_clock.isoformat() if self.state_clock else None,
                 "pruned_at": self.pruned_at.isoformat() if self.pruned_at else None}
        save_state(session, self.key, value, datetime.now(UTC))


# An idle ticker's model is dropped once nearly nothing of its history is left: the reporters it counted,
# weighted by the detector's half-life, sum to less than this (a report five half-lives ago weighs 1/32).
PRUNE_BELOW_REPORTERS = 0.05
PRUNE_EVERY = timedelta(days=1)
# How often (in stream time) a replay stores its detector state; a resume re-runs at most this much detection.
REPLAY_STATE_EVERY = timedelta(hours=1)


def prune_state(state: dict[str, Any], bucket: int) -> int:
    """Drop idle ticker models from a detector state (in place); returns how many were dropped.

    Tickers are the one unbounded key space (every code anyone names gets a model, and each is stored with
    the state), so their models are kept only while they hold history: a ticker that is not
    firing and whose half-life-weighted reporter count has decayed below ``PRUNE_BELOW_REPORTERS`` starts
    again from the prior if it is named again. Brokers and ``overall`` are never pruned, so their
    near-zero baselines (what makes a third reporter at a quiet broker page) are kept. Scoring is not
    changed: this works on the stored state, and a pruned key scores exactly as a key never seen.

    >>> state = {"config": {"half_life_days": 1.0, "bucket_minutes": 60}, "episodes": [],
    ...          "models": [["ticker", "7203.T", {"ref": 0, "s": 1.0}], ["broker", "楽天証券", {"ref": 0, "s": 0.0}]]}
    >>> prune_state(state, 24 * 6), [m[1] for m in state["models"]]
    (1, ['楽天証券'])
    """
    config = state.get("config") or {}
    half_life = float(config.get("half_life_days") or 0) * 1440 / float(config.get("bucket_minutes") or 5)
    firing = {(kind, key) for kind, key, *_ in state.get("episodes", ())}
    kept, dropped = [], 0
    for kind, key, model in state.get("models", ()):
        if kind == "ticker" and (kind, key) not in firing:
            ref = model.get("ref")
            weight = 2.0 ** ((bucket - ref) / half_life) if half_life > 0 and ref is not None else 1.0
            if float(model.get("s", 0.0)) / weight < PRUNE_BELOW_REPORTERS:
                dropped += 1
                continue
        kept.append([kind, key, model])
    if dropped:
        state["models"] = kept
    return dropped


def save_state(session: Session, key: str, value: dict[str, Any], now: datetime) -> None:
    """Upsert one state row without reading the old value first (the detector state is large)."""
    table = StateEntry.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    stmt = _insert(session, table).values(key=key, value=value, updated_at=now)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["key"], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}))


@contextmanager
def _replay_lock(engine: sa.Engine, path: str) -> Iterator[None]:
    lock = acquire(engine, "replay")
    if lock is None:
        raise InputError(f"{path}: another replay is running against this store; wait for it to finish, "
                         "or replay into another --db")
    with lock:
        yield


@contextmanager
def _local_copy(path: str | Path) -> Iterator[tuple[Path, str]]:
    """The file and its SHA-256; standard input is copied to a temporary file first (read twice)."""
    digest = hashlib.sha256()
    if str(path) == "-":
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as tmp:
            for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
                digest.update(chunk)
                tmp.write(chunk)
        try:
            yield Path(tmp.name), digest.hexdigest()
        finally:
            Path(tmp.name).unlink(missing_ok=True)
        return
    local = check_input_file(path)
    try:
        with open(local, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror}); check the path") from exc
    yield local, digest.hexdigest()


def _ceil_time(moment: datetime, step: timedelta) -> datetime:
    """The first multiple of ``step`` (since the epoch) at or after ``moment``.

    >>> _ceil_time(datetime(2025, 3, 19, 15, 2, tzinfo=UTC), timedelta(minutes=5)).isoformat()
    '2025-03-19T15:05:00+00:00'
    """
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -(-(moment - epoch) // step)
    return (epoch + steps * step).astimezone(moment.tzinfo)


def jsonl_sink(stream: TextIO) -> Callable[[AlertEvent], None]:
    """Writes each alert event as one DESIGN.md contract line, flushed at once."""

    def write(event: AlertEvent) -> None:
        stream.write(json_line(event.to_json()) + "\n")
        stream.flush()

    return write


def open_pipeline(db_url: str | None = None, config_path: str | None = None, **kwargs: Any) -> Pipeline:
    """Settings, migrated store and pipeline in one call (what every command uses)."""
    settings = load_settings(config_path)
    engine = open_store(db_url or settings.storage.database_url)
    return Pipeline(engine, settings, **kwargs)
