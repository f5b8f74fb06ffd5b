"""Delivery of the outbox: each owed notification sent once, retried with back-off across outages and restarts.

For each due item: claim it (a conditional UPDATE that bumps ``attempts`` and holds the item for
``claim_seconds``, committed), send it, then mark it sent in its own transaction at once. A second worker
cannot claim a held item, and a restart simply finds the item due again. The one gap no outbox can close
is a crash after Slack accepted a message but before the commit: that message is sent again.

Order: the items of one alert for one notifier go out in event order (the open before its updates, so
replies have a thread to go to); when one is waiting for a retry, the later ones wait with it. A dead item
(permanent error, or ``max_attempts`` spent) no longer holds the others back.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.alerts.config import AlertsConfig
from monitor.alerts.notifiers import Delivery, Notifier, SendResult
from monitor.collectors.retry import RetryPolicy
from monitor.errors import DeliveryError
from monitor.events import AlertEvent
from storage.models import Alert, AlertEventRow, OutboxItem
from storage.queries import LIVE_SCOPE

log = logging.getLogger(__name__)

BATCH = 500  # items looked at per call; the rest wait for the next call


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0  # failed this time, scheduled again
    dead: int = 0  # given up (permanent error or attempts spent)
    waiting: int = 0  # not due yet, or queued behind an earlier item of the same alert
    errors: list[str] = field(default_factory=list)  # one line per failure this call

    @property
    def failed(self) -> int:
        return self.retrying + self.dead


def backoff(attempts: int, config: AlertsConfig) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones: doubling, capped.

    >>> [backoff(n, AlertsConfig()).total_seconds() for n in (1, 2, 3, 10)]
    [30.0, 60.0, 120.0, 3600.0]
    """
    policy = RetryPolicy(base_delay=config.backoff_seconds, max_delay=config.max_backoff_seconds)
    return timedelta(seconds=policy.backoff(attempts))  # the one retry policy's back-off


def event_from_payload(payload: dict) -> AlertEvent:
    event = AlertEvent.from_json(payload)
    extra = payload.get("extra")
    return AlertEvent(**{**{f: getattr(event, f) for f in event.__dataclass_fields__}, "extra": dict(extra or {})})


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return "unknown-boot"


def claim_owner() -> str:
    """This process as a claim owner: host, boot and pid, so another process can tell when it is gone."""
    return f"{socket.gethostname()}/{_boot_id()}/{os.getpid()}"


def owner_is_gone(owner: str | None) -> bool:
    """Whether the process that holds a claim has certainly ended: same host and boot, pid not running.

    A claim by a process on another host (or of unknown form) is never judged gone; it expires after
    ``claim_seconds`` as before.

    >>> owner_is_gone(None), owner_is_gone(claim_owner())
    (False, False)
    """
    if not owner:
        return False
    host, _, rest = owner.partition("/")
    boot, _, pid = rest.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if boot != _boot_id():
        return True  # the machine rebooted since: that process is gone
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _claim(engine: Engine, item_id: int, attempts: int, now: datetime, config: AlertsConfig,
           take_over: str | None = None) -> bool:
    """Hold an item for ``claim_seconds``; ``take_over`` names a dead owner whose unexpired claim we take."""
    due = col(OutboxItem.next_attempt_at) <= now
    if take_over is not None:
        due = sa.or_(due, col(OutboxItem.claimed_by) == take_over)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(OutboxItem)
            .where(col(OutboxItem.id) == item_id, col(OutboxItem.status) == "pending",
                   col(OutboxItem.attempts) == attempts, due)
            .values(attempts=attempts + 1, next_attempt_at=now + timedelta(seconds=config.claim_seconds),
                    claimed_by=claim_owner())
        )
        return result.rowcount == 1


def _mark_sent(engine: Engine, item_id: int, alert_id: int, result: SendResult | None, now: datetime) -> None:
    with Session(engine) as session:
        session.execute(
            sa.update(OutboxItem).where(col(OutboxItem.id) == item_id)
            .values(status="sent", sent_at=now, last_error=None, claimed_by=None)
        )
        if result is not None and result.slack_ts:
            # Only the first message of an alert becomes its thread.
            session.execute(
                sa.update(Alert).where(col(Alert.id) == alert_id, col(Alert.slack_ts).is_(None))
                .values(slack_channel=result.slack_channel, slack_ts=result.slack_ts)
            )
        session.commit()


def _mark_failed(engine: Engine, item_id: int, attempts: int, error: DeliveryError, now: datetime,
                 config: AlertsConfig) -> bool:
    """Record a failure; True when the item is now dead."""
    dead = not error.retryable or attempts >= config.max_attempts
    message = str(error)
    if dead and error.retryable:
        message = f"gave up after {attempts} attempts: {message}"
    delay = max(backoff(attempts, config), timedelta(seconds=error.retry_after or 0))
    values = {"status": "dead", "last_error": message, "claimed_by": None} if dead else {
        "last_error": message, "next_attempt_at": now + delay, "claimed_by": None}
    with engine.begin() as conn:
        conn.execute(sa.update(OutboxItem).where(col(OutboxItem.id) == item_id).values(**values))
    return dead


def deliver_pending(
    engine: Engine,
    notifiers: Mapping[str, Notifier],
    now: datetime,
    config: AlertsConfig,
    scope: str = LIVE_SCOPE,
) -> DeliveryReport:
    """Send every due outbox item of the given notifiers for the alerts of ``scope``; items of other
    notifiers and other scopes (a backtest's, the live bot's) stay untouched.

    An item still claimed by a process that has died (killed between claim and send) is taken over at
    once rather than after ``claim_seconds``."""
    report = DeliveryReport()
    if not notifiers:
        return report
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxItem, AlertEventRow, Alert)
            .join(AlertEventRow, col(AlertEventRow.id) == col(OutboxItem.event_id))
            .join(Alert, col(Alert.id) == col(AlertEventRow.alert_id))
            .where(col(OutboxItem.status) == "pending", col(OutboxItem.notifier).in_(list(notifiers)),
                   col(Alert.scope) == scope)
            .order_by(col(OutboxItem.event_id), col(OutboxItem.id))
            .limit(BATCH)
        ).all()
        work = [(cast(int, item.id), item.attempts, item.next_attempt_at, item.claimed_by, item.notifier,
                 cast(int, ev.id), ev.payload, cast(int, alert.id)) for item, ev, alert in rows]
    held: set[tuple[int, str]] = set()  # (alert, notifier) with an earlier item still owed
    for item_id, attempts, next_at, owner, name, event_id, payload, alert_id in work:
        group = (alert_id, name)
        orphan = owner if next_at > now and owner_is_gone(owner) else None
        if orphan is not None:
            log.warning("%s: event %s was claimed by %s, which has ended; sending it now", name, event_id, orphan)
        if group in held or (next_at > now and orphan is None) or not _claim(
                engine, item_id, attempts, now, config, take_over=orphan):
            held.add(group)
            report.waiting += 1
            continue
        with Session(engine) as session:  # fresh: an earlier item may just have set the thread
            alert = session.get(Alert, alert_id)
            channel, ts = (alert.slack_channel, alert.slack_ts) if alert else (None, None)
        delivery = Delivery(item_id=item_id, event_id=event_id, alert_id=alert_id,
                            event=event_from_payload(payload), attempt=attempts + 1,
                            slack_channel=channel, slack_ts=ts)
        try:
            result = notifiers[name].send(delivery)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not stop the other deliveries
            log.exception("notifier %s crashed on outbox item %s", name, item_id)
            error = DeliveryError(f"{name} notifier failed unexpectedly ({type(exc).__name__}: {exc}); will retry")
        else:
            _mark_sent(engine, item_id, alert_id, result, now)
            report.sent += 1
            continue
        if _mark_failed(engine, item_id, attempts + 1, error, now, config):
            report.dead += 1
            log.error("%s: event %s dead: %s", name, event_id, error)
        else:
            report.retrying += 1
            held.add(group)
            log.warning("%s: event %s failed (attempt %d): %s", name, event_id, attempts + 1, error)
        report.errors.append(f"{name} event {event_id}: {error}")
    return report
