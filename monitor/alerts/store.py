"""Alert rows <-> planner states, and writing a plan: alerts, their events and outbox rows.

Everything here runs in the caller's session and transaction, so an event and the notifications it owes
are committed together or not at all (the outbox pattern): a crash can delay a message, never lose it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from monitor.alerts.config import AlertsConfig
from monitor.alerts.planner import AlertState, Plan, SilenceRule
from monitor.alerts.render import truncate
from monitor.events import AlertEvent, Signal
from storage.models import Alert, AlertEventRow, OutboxItem, Silence
from storage.queries import LIVE_SCOPE, get_posts_by_keys

STATE_KEYS = (
    "pending_since", "last_firing_at", "window_minutes", "brokers", "discussion_count", "explanation",
    "last_event_count", "notified", "inhibited_by", "folded_tickers",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: Any, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else default
    except ValueError:
        return default


def state_from_row(row: Alert) -> AlertState:
    extra = row.extra or {}
    return AlertState(
        ref=f"id:{row.id}",
        kind=row.kind,  # type: ignore[arg-type]
        key=row.key,
        status=row.status,
        first_seen=row.first_seen,
        pending_since=_time(extra.get("pending_since"), row.first_seen),
        last_firing_at=_time(extra.get("last_firing_at"), row.updated_at),
        window_start=row.window_start,
        window_minutes=float(extra.get("window_minutes") or 0.0),
        count=row.count,
        max_count=row.max_count,
        expected=row.expected,
        score=row.score,
        tickers=tuple(row.tickers or ()),
        brokers=tuple(extra.get("brokers") or ()),
        sample_post_ids=tuple(row.sample_post_ids or ()),
        discussion_count=int(extra.get("discussion_count") or 0),
        explanation=str(extra.get("explanation") or ""),
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        last_event_at=row.last_notified_at,
        last_event_count=int(extra.get("last_event_count") or 0),
        notified=bool(extra.get("notified")),
        inhibited_by=tuple(extra.get("inhibited_by") or ()),
        folded_tickers=tuple(extra.get("folded_tickers") or ()),
        alert_id=row.id,
    )


def _fill_row(row: Alert, state: AlertState, now: datetime) -> None:
    row.fingerprint = state.fingerprint
    row.kind = state.kind
    row.key = state.key
    row.status = state.status
    row.first_seen = state.first_seen
    row.opened_at = state.opened_at
    row.updated_at = now
    row.resolved_at = state.resolved_at
    row.last_notified_at = state.last_event_at
    row.window_start = state.window_start
    row.count = state.count
    row.max_count = state.max_count
    row.expected = float(state.expected)
    row.score = float(state.score)
    row.tickers = list(state.tickers)
    row.sample_post_ids = list(state.sample_post_ids)
    extra = dict(row.extra or {})
    extra.update(
        pending_since=_iso(state.pending_since),
        last_firing_at=_iso(state.last_firing_at),
        window_minutes=state.window_minutes,
        brokers=list(state.brokers),
        discussion_count=state.discussion_count,
        explanation=state.explanation,
        last_event_count=state.last_event_count,
        notified=state.notified,
        inhibited_by=list(state.inhibited_by),
        folded_tickers=list(state.folded_tickers),
    )
    row.extra = extra  # a new dict, so the JSON column is seen as changed


def load_states(session: Session, signals: Sequence[Signal], now: datetime, config: AlertsConfig,
                scope: str = LIVE_SCOPE) -> list[AlertState]:
    """Every pending or firing episode of ``scope``, plus resolved ones recent enough to hold a cooldown."""
    earliest = min([now, *(s.at for s in signals)]) - config.cooldown - timedelta(seconds=1)
    rows = session.exec(
        select(Alert).where(
            col(Alert.scope) == scope,
            sa.or_(
                col(Alert.status).in_(("pending", "firing")),
                sa.and_(col(Alert.status) == "resolved", col(Alert.resolved_at) >= earliest),
            )
        ).order_by(col(Alert.id))
    ).all()
    return [state_from_row(row) for row in rows]


def load_silences(session: Session, now: datetime) -> list[SilenceRule]:
    rows = session.exec(select(Silence).where(col(Silence.expires_at) > now).order_by(col(Silence.id))).all()
    return [SilenceRule(r.id, r.kind, r.key, r.created_at, r.expires_at, r.comment) for r in rows]


def _fallback_url(source: str, post_id: str) -> str | None:
    if source == "x" and post_id.isdigit():
        return f"https://x.com/i/web/status/{post_id}"
    return None


def load_posts(session: Session, keys: Iterable[str], sample_chars: int) -> dict[str, dict[str, Any]]:
    """The text and link of sample posts, so delivery never reads posts (they may even be purged by then)."""
    found: dict[str, dict[str, Any]] = {}
    for post in get_posts_by_keys(session, list(keys)).values():
        text = truncate(" ".join(post.text.split()), sample_chars)
        found[post.key] = {
            "key": post.key,
            "text": text,
            "url": post.url or _fallback_url(post.source, post.post_id),
            "created_at": post.created_at.isoformat(),
        }
    return found


def write_plan(
    session: Session,
    plan: Plan,
    now: datetime,
    config: AlertsConfig,
    notifiers: Sequence[str],
    scope: str = LIVE_SCOPE,
) -> list[AlertEvent]:
    """Store the plan's alerts, events and outbox rows in ``session``; return the events with their ids.

    An alert whose state did not change is not written (a firing alert is re-planned every cycle). A new
    episode is inserted under the one-active-episode-per-fingerprint unique index: when another writer
    opened the same alert first, the flush raises ``IntegrityError`` and the caller re-plans.
    """
    rows: dict[str, Alert] = {}
    for state in plan.states:
        row = session.get(Alert, state.alert_id) if state.alert_id is not None else None
        if state.status == "dropped":
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = Alert(
                scope=scope, fingerprint=state.fingerprint, kind=state.kind, key=state.key, status=state.status,
                first_seen=state.first_seen, window_start=state.window_start, updated_at=now,
            )
        elif replace(state_from_row(row), ref=state.ref) == state:
            rows[state.ref] = row
            continue
        _fill_row(row, state, now)
        session.add(row)
        rows[state.ref] = row
    session.flush()
    posts = load_posts(
        session, (k for p in plan.events for k in p.event.sample_post_ids[: config.max_samples]), config.sample_chars
    )
    events: list[AlertEvent] = []
    for planned in plan.events:
        row = rows[planned.ref]
        event = planned.event
        extra = dict(event.extra)
        extra["posts"] = [posts.get(k, {"key": k}) for k in event.sample_post_ids[: config.max_samples]]
        extra["alert_id"] = row.id
        event_row = AlertEventRow(alert_id=row.id, event=event.event, at=event.at,  # type: ignore[arg-type]
                                  payload={**event.to_json(), "extra": extra})
        session.add(event_row)
        session.flush()
        extra["event_id"] = event_row.id
        if planned.notify:
            for name in dict.fromkeys(notifiers):
                session.add(OutboxItem(event_id=event_row.id, notifier=name, status="pending",  # type: ignore[arg-type]
                                       next_attempt_at=now, created_at=now))
        events.append(replace(event, extra=extra))
    session.flush()
    return events
