"""Per-source health rows (``source_health``) that ``status`` reads: last success, counts, errors, spend.

Each update is its own short transaction, separate from the page transactions, so a health write can
never roll back stored posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from monitor.collectors.base import CollectResult
from storage.database import session_scope
from storage.models import SourceHealth


def _row(session: Session, source: str) -> SourceHealth:
    row = session.get(SourceHealth, source)
    if row is None:
        row = SourceHealth(source=source)
        session.add(row)
    return row


def _day(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d")


def record_pass(engine: Engine, result: CollectResult, now: datetime | None = None) -> None:
    """A pass finished (possibly with nothing new): it counts as a success."""
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        row = _row(session, result.source)
        row.last_success_at = now
        row.posts_collected = (row.posts_collected or 0) + result.new
        row.requests = (row.requests or 0) + result.requests
        if result.new:
            row.last_post_at = now
        row.disabled_reason = None
        row.updated_at = now


def record_error(engine: Engine, source: str, message: str, now: datetime | None = None, *, disabled: bool = False) -> None:
    """A pass failed; ``disabled`` marks a source that will not run again until its settings change."""
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        row = _row(session, source)
        row.last_error_at = now
        row.last_error = message[:2000]
        if disabled:
            row.disabled_reason = message[:500]
        row.updated_at = now


def add_spend(engine: Engine, source: str, usd: float, requests: int = 0, now: datetime | None = None) -> float:
    """Add an estimated cost to today's (UTC) spend; returns today's total. A new day starts from zero."""
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        row = _row(session, source)
        if row.spend_day != _day(now):
            row.spend_day = _day(now)
            row.spend_usd = 0.0
        row.spend_usd = float(row.spend_usd or 0.0) + usd
        row.updated_at = now
        return row.spend_usd


def spent_today(engine: Engine, source: str, now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        row = session.get(SourceHealth, source)
        if row is None or row.spend_day != _day(now):
            return 0.0
        return float(row.spend_usd or 0.0)


@dataclass(frozen=True)
class HealthView:
    source: str
    last_success_at: datetime | None
    last_post_at: datetime | None
    posts_collected: int
    requests: int
    last_error_at: datetime | None
    last_error: str | None
    spend_today_usd: float
    disabled_reason: str | None
    silent: bool  # nothing new stored for longer than the configured limit


def health_report(engine: Engine, now: datetime, silent_after: timedelta) -> list[HealthView]:
    """Every source's health as of ``now``; ``silent`` flags sources quiet for longer than ``silent_after``."""
    with session_scope(engine) as session:
        rows = session.exec(select(SourceHealth).order_by(SourceHealth.source)).all()
        views = []
        for row in rows:
            # A pass that succeeds but stores nothing does not count: silence is about posts, not requests.
            silent = row.disabled_reason is None and (row.last_post_at is None or now - row.last_post_at > silent_after)
            views.append(
                HealthView(
                    source=row.source,
                    last_success_at=row.last_success_at,
                    last_post_at=row.last_post_at,
                    posts_collected=row.posts_collected or 0,
                    requests=row.requests or 0,
                    last_error_at=row.last_error_at,
                    last_error=row.last_error,
                    spend_today_usd=float(row.spend_usd or 0.0) if row.spend_day == _day(now) else 0.0,
                    disabled_reason=row.disabled_reason,
                    silent=silent,
                )
            )
        return views
