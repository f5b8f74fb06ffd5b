"""Silences: mute notifications for matching alerts until an expiry (the alerts themselves still track).

A silence matches a kind (or every kind) and a key (or ``*`` for every key of the kind). It applies to
events planned while it is active - judged at the pipeline's ``now`` - so an event planned during the
silence is recorded with ``extra["silenced"]`` and owes no notification, even after the silence ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from monitor.errors import InputError
from storage.models import Alert, AlertEventRow, Silence

KINDS = ("broker", "ticker", "overall")
MAX_SILENCE = timedelta(days=90)


def create_silence(
    session: Session,
    *,
    kind: str | None,
    key: str,
    duration: timedelta,
    now: datetime,
    comment: str = "",
    created_by: str = "",
) -> Silence:
    """Add a silence from ``now`` for ``duration``; the caller commits."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"silence kind {kind!r} is not one of {', '.join(KINDS)}: pick one, or leave --kind out")
    key = key.strip()
    if not key:
        raise InputError("silence key is empty: name a broker or ticker (e.g. 楽天証券, 2269.HK) or * for all")
    if len(key) > 256 or len(comment) > 1000:
        raise InputError("silence key (256) or comment (1,000 characters) is too long: shorten it")
    if duration <= timedelta(0) or duration > MAX_SILENCE:
        raise InputError(f"silence duration {duration} must be positive and at most {MAX_SILENCE.days} days")
    silence = Silence(kind=kind, key=key, created_at=now, expires_at=now + duration,
                      created_by=created_by[:128], comment=comment)
    session.add(silence)
    session.flush()
    return silence


def expire_silence(session: Session, silence_id: int, now: datetime) -> Silence:
    """End a silence now (kept for the record); the caller commits."""
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise InputError(f"no silence with id {silence_id}: see the ids with `incident-monitor alerts list`")
    if silence.expires_at > now:
        silence.expires_at = max(now, silence.created_at)
        session.add(silence)
        session.flush()
    return silence


def list_silences(session: Session, now: datetime, *, include_expired: bool = False) -> list[Silence]:
    query = select(Silence).order_by(col(Silence.expires_at))
    if not include_expired:
        query = query.where(col(Silence.expires_at) > now)
    return list(session.exec(query).all())


def list_alerts(session: Session, status: str = "open", limit: int = 50) -> list[Alert]:
    """Alerts for ``alerts list``: ``open`` (firing), ``pending``, ``resolved`` or ``all``, newest first."""
    query = select(Alert)
    if status == "open":
        query = query.where(col(Alert.status) == "firing")
    elif status in ("pending", "resolved"):
        query = query.where(col(Alert.status) == status)
    elif status != "all":
        raise InputError(f"alert status {status!r} not known: use open, pending, resolved or all")
    # newest opened first; a pending alert (not opened yet) sorts by when it was first seen
    opened = sa.func.coalesce(col(Alert.opened_at), col(Alert.first_seen))
    return list(session.exec(query.order_by(opened.desc(), col(Alert.id).desc()).limit(limit)).all())


def find_alert(session: Session, spec: str) -> Alert:
    """The alert ``spec`` names: an id, ``kind:key`` (``broker:楽天証券``), ``overall`` or a bare key; the
    newest opened when several match. Raises :class:`InputError` naming how to find one."""
    spec = spec.strip()
    query = select(Alert)
    if spec.isdigit():
        query = query.where(col(Alert.id) == int(spec))
    else:
        kind, sep, key = spec.partition(":")
        if sep and kind in ("broker", "ticker", "overall"):
            query = query.where(col(Alert.kind) == kind, col(Alert.key) == key)
        else:
            query = query.where(col(Alert.key) == spec)
    opened = sa.func.coalesce(col(Alert.opened_at), col(Alert.first_seen))
    alert = session.exec(query.order_by(opened.desc(), col(Alert.id).desc()).limit(1)).first()
    if alert is None:
        raise InputError(
            f"no alert {spec!r}: give an id or kind:key as `incident-monitor alerts list --status all` shows them"
        )
    return alert


def alert_events(session: Session, alert_id: int) -> list[AlertEventRow]:
    """The events of one alert, in the order they happened."""
    query = select(AlertEventRow).where(col(AlertEventRow.alert_id) == alert_id)
    return list(session.exec(query.order_by(col(AlertEventRow.at), col(AlertEventRow.id))).all())
