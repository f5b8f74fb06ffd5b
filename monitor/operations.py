"""What an operator watches, computed in one place: `status` prints it and `/metrics` exports it.

:func:`snapshot` reads the store once per call: stored posts per source, each source's health row (last
success, last error, spend today), the analysis backlog and its lag, live alerts opened and open, and
messages that are retrying or were given up. Both the ``status`` command and the Prometheus collector
(:mod:`monitor.metrics`) call it, so a number can never differ between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from monitor.collectors.health import HealthView, health_report
from storage.database import session_scope
from storage.models import Alert, AlertEventRow, AnalysisQueue, OutboxItem, StateEntry
from storage.quarantine import count_rejected
from storage.queries import LIVE_SCOPE, post_counts

ALERT_KINDS = ("broker", "ticker", "overall", "source")


@dataclass(frozen=True)
class OpenAlert:
    status: str
    kind: str
    key: str
    count: int
    expected: float
    score: float
    since: datetime
    explanation: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The store's operational state as of ``now`` (live scope only: backtests never show here)."""

    now: datetime
    posts_by_source: dict[str, int]
    sources: dict[str, HealthView]
    x_budget_usd: float
    silent_after_minutes: int
    analysis_backlog: int
    analysis_oldest: datetime | None  # created_at of the oldest post waiting for analysis
    alerts_opened: dict[str, int]  # live alerts ever opened (open events), by kind
    open_alerts: list[OpenAlert] = field(default_factory=list)
    messages_retrying: int = 0  # owed, and the last attempt failed
    messages_dead: int = 0  # given up after [alerts] max_attempts or a permanent error
    last_cycle_at: datetime | None = None  # the live analyze/detect cycle's heartbeat
    rejected: int = 0  # bad records quarantined by any ingest path (`db rejected` lists them)

    @property
    def posts_total(self) -> int:
        return sum(self.posts_by_source.values())

    @property
    def analysis_lag(self) -> timedelta | None:
        """How far analysis is behind: the age of the oldest post still waiting (None when none waits)."""
        if not self.analysis_backlog or self.analysis_oldest is None:
            return None
        return max(timedelta(0), self.now - self.analysis_oldest)

    @property
    def x_spend_today_usd(self) -> float:
        view = self.sources.get("x")
        return view.spend_today_usd if view is not None else 0.0


def aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # SQLite's min() returns the stored naive UTC text


def snapshot(engine: Engine, settings: Any, now: datetime) -> Snapshot:
    """Read everything `status` and `/metrics` show. ``settings`` may be None (the defaults)."""
    from monitor.collectors.config import SchedulerConfig, XConfig

    scheduler = settings.scheduler if settings is not None else SchedulerConfig()
    x = settings.x if settings is not None else XConfig()
    silent_after = scheduler.silent_after_minutes
    views = {v.source: v for v in health_report(engine, now, timedelta(minutes=silent_after))}
    with session_scope(engine) as session:
        stored = post_counts(session)
        queued, oldest = session.exec(select(sa.func.count(), sa.func.min(AnalysisQueue.created_at))).one()
        opened_rows = session.exec(
            select(Alert.kind, sa.func.count()).select_from(AlertEventRow)
            .join(Alert, col(Alert.id) == col(AlertEventRow.alert_id))
            .where(col(Alert.scope) == LIVE_SCOPE, col(AlertEventRow.event) == "open")
            .group_by(col(Alert.kind))).all()
        retrying = session.exec(select(sa.func.count()).select_from(OutboxItem).where(
            col(OutboxItem.status) == "pending", col(OutboxItem.last_error).is_not(None))).one()
        dead = session.exec(select(sa.func.count()).select_from(OutboxItem).where(col(OutboxItem.status) == "dead")).one()
        alerts = session.exec(
            select(Alert).where(Alert.scope == LIVE_SCOPE, col(Alert.status).in_(("pending", "firing")))
            .order_by(col(Alert.first_seen))).all()
        open_alerts = [
            OpenAlert(a.status, a.kind, a.key, a.count, a.expected, a.score, aware(a.opened_at or a.first_seen) or now,
                      str((a.extra or {}).get("explanation") or ""))
            for a in alerts
        ]
        rejected = count_rejected(session)
        heartbeat = session.get(StateEntry, f"detector:{LIVE_SCOPE}")
        last_cycle = aware(heartbeat.updated_at) if heartbeat is not None else None
    return Snapshot(
        now=now, posts_by_source=stored, sources=views, x_budget_usd=float(x.daily_budget_usd),
        silent_after_minutes=silent_after, analysis_backlog=int(queued), analysis_oldest=aware(oldest),
        alerts_opened={str(kind): int(n) for kind, n in opened_rows}, open_alerts=open_alerts,
        messages_retrying=int(retrying), messages_dead=int(dead), last_cycle_at=last_cycle,
        rejected=rejected,
    )
