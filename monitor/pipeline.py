"""The one entry point that the live scheduler and ``replay`` both call.

A cycle at time ``now``: analyze new posts -> count and detect -> plan alert events (committed with their
outbox rows) -> deliver the outbox. Replay drives the very same cycle with a simulated clock taken from the
posts' timestamps, so a backtest exercises exactly what the live bot runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlmodel import Session

from monitor import alerts as alerting
from monitor.analyze import ReportWindow, analyze_pending, load_analyzer
from monitor.detect.detector import Detector
from monitor.errors import InputError, MonitorError
from monitor.events import AlertEvent, Signal
from monitor.ingest import ImportResult, import_file
from monitor.settings import Settings, load_settings
from storage.database import open_store, session_scope
from storage.export import json_line
from storage.models import StateEntry
from storage.queries import has_active_alerts

log = logging.getLogger(__name__)

LIVE_SCOPE = "live"


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
        state = self.detector.to_state()
        entry = session.get(StateEntry, self._state_key())
        if entry is None:
            session.add(StateEntry(key=self._state_key(), value=state, updated_at=now))
        else:
            entry.value = state
            entry.updated_at = now
            session.add(entry)

    def analyze(self, now: datetime) -> int:
        return analyze_pending(self.engine, self.analyzer, batch=self.settings.pipeline.analyze_batch, now=now)

    def detect(self, now: datetime) -> list[Signal]:
        detector = self.detector
        if self._window is None or self._window.model != self.analyzer.model_version:
            self._window = ReportWindow(self.analyzer.model_version, detector.lookback)
        with session_scope(self.engine) as session:
            reports = self._window.refresh(session, now)
            signals = detector.evaluate(now, reports)
            self._save_detector(session, now)
        return signals

    def alert(self, now: datetime, signals: list[Signal]) -> list[AlertEvent]:
        if not signals and self._alerts_active is False:
            return []
        with session_scope(self.engine) as session:
            events = alerting.process_signals(session, signals, now, self.settings.alerts, list(self.notifiers))
            self._alerts_active = has_active_alerts(session)
        if events:
            self._outbox_idle = False
        for event in events:
            for sink in self.event_sinks:
                sink(event)
        return events

    def deliver(self, now: datetime) -> int:
        if not self.notifiers or self._outbox_idle:
            return 0
        report = alerting.deliver_pending(self.engine, self.notifiers, now, self.settings.alerts)
        self._outbox_idle = report.retrying == 0 and report.waiting == 0
        return report.sent

    def run_cycle(self, now: datetime) -> CycleResult:
        """One analyze -> detect -> alert -> deliver pass at ``now`` (stream time in replay)."""
        result = CycleResult(now=now)
        result.analyzed = self.analyze(now)
        result.signals = self.detect(now)
        result.events = self.alert(now, result.signals)
        result.delivered = self.deliver(now)
        return result

    # -- files ---------------------------------------------------------------------------------------

    def import_file(self, path: str | Path, *, on_error: Callable[[InputError], None] | None = None) -> ImportResult:
        """Store every good record of a Post JSONL / twarc2 JSONL file; report bad lines with file:line."""
        return import_file(self.engine, path, on_error=on_error)

    def replay(self, path: str | Path, *, step: timedelta | None = None, tail: timedelta | None = None,
               on_error: Callable[[InputError], None] | None = None,
               on_cycle: Callable[[CycleResult], None] | None = None) -> tuple[ImportResult, list[AlertEvent]]:
        """The whole pipeline over a file in simulated time: store it, then step the clock through it.

        The clock starts at the first post and advances by ``step``; each cycle sees only posts created
        before its ``now``, so the run is causal. After the last post the clock runs on for ``tail`` so
        open alerts can resolve.
        """
        step = step or timedelta(seconds=self.settings.pipeline.replay_step_seconds)
        imported = self.import_file(path, on_error=on_error)
        events: list[AlertEvent] = []
        if imported.first is None or imported.last is None:
            return imported, events
        tail = tail if tail is not None else timedelta(hours=3)
        start = _ceil_time(imported.first, step)
        # A backtest judges the file on its own: it starts from a fresh baseline, kept apart from the
        # live bot's (scope), so replaying the past never disturbs the live state or vice versa.
        self._detector = Detector(self.settings.detect)
        self._window = None
        now = start
        end = imported.last + tail
        while now <= end:
            cycle = self.run_cycle(now)
            events.extend(cycle.events)
            if on_cycle:
                on_cycle(cycle)
            now += step
        return imported, events


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
