"""Alert lifecycle and notifications: signals -> open / update / resolve events -> outbox -> notifiers.

The pipeline calls three functions:

* :func:`process_signals` plans the lifecycle step (pure planner, :mod:`monitor.alerts.planner`) and writes
  the alerts, their events and one outbox row per (notified event, notifier) in the caller's transaction.
* :func:`deliver_pending` sends what the outbox owes, exactly once per (event, notifier), retrying with
  back-off across outages and restarts.
* :func:`build_notifiers` builds the terminal, JSONL and Slack notifiers from the settings.

Only :mod:`monitor.alerts.slack` talks to Slack, and only after the rows are committed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from monitor.alerts.config import AlertsConfig, SlackConfig
from monitor.errors import ConfigError
from storage.queries import LIVE_SCOPE

if TYPE_CHECKING:
    from sqlmodel import Session

    from monitor.alerts.notifiers import Delivery, JsonlNotifier, Notifier, SendResult, TerminalNotifier
    from monitor.alerts.outbox import DeliveryReport, deliver_pending
    from monitor.alerts.planner import AlertState, Plan, PlannedEvent, SilenceRule, plan
    from monitor.events import AlertEvent, Signal

# The lifecycle's modules load on first use: loading settings imports monitor.alerts.config, and with it
# this package, for every command (an export too), most of which never plan or send an alert.
_LAZY = {
    "Delivery": "notifiers", "JsonlNotifier": "notifiers", "Notifier": "notifiers", "SendResult": "notifiers",
    "TerminalNotifier": "notifiers", "DeliveryReport": "outbox", "deliver_pending": "outbox",
    "AlertState": "planner", "Plan": "planner", "PlannedEvent": "planner", "SilenceRule": "planner",
    "plan": "planner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'monitor.alerts' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"monitor.alerts.{module}"), name)


__all__ = [
    "AlertState", "AlertsConfig", "Delivery", "DeliveryReport", "JsonlNotifier", "Notifier", "Plan",
    "PlannedEvent", "SendResult", "SilenceRule", "SlackConfig", "TerminalNotifier", "build_notifiers",
    "deliver_pending", "plan", "process_signals",
]


def process_signals(
    session: Session,
    signals: Sequence[Signal],
    now: datetime,
    config: AlertsConfig,
    notifiers: Sequence[str],
    scope: str = LIVE_SCOPE,
) -> list[AlertEvent]:
    """Plan and record the alert events for ``signals`` at stream time ``now``; the caller commits.

    Returns the events in stream-time order (per alert: open -> update* -> resolve). Each event's
    ``extra`` holds ``alert_id``, ``event_id``, ``silenced``, ``inhibited_by``, ``notified`` and the sample
    posts (``posts``: key, text, url) its message shows. Muted events (silenced, or folded into a broker
    alert) are recorded but owe no notification.
    """
    from monitor.alerts.planner import plan
    from monitor.alerts.store import load_silences, load_states, write_plan

    signals = [_bounded(s) for s in signals]
    states = load_states(session, signals, now, config, scope)
    silences = load_silences(session, now)
    result = plan(states, signals, now, config, silences)
    return write_plan(session, result, now, config, notifiers, scope)


MAX_KEY_CHARS = 256  # Alert.key's column width; a longer key is cut the same way every time


def _bounded(signal: Signal) -> Signal:
    if len(signal.key) <= MAX_KEY_CHARS and len(signal.explanation) <= 1000:
        return signal
    return replace(signal, key=signal.key[:MAX_KEY_CHARS], explanation=signal.explanation[:1000])


def build_notifiers(
    alerts: AlertsConfig,
    slack: SlackConfig,
    *,
    terminal: TextIO | None = None,
    jsonl_path: str | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Notifier]:
    """The notifiers to use, by name: terminal when a stream is given, jsonl when a path is given, slack
    when ``SLACK_BOT_TOKEN`` (with ``SLACK_CHANNEL``) or ``SLACK_WEBHOOK_URL`` is set (the token wins).

    ``stop`` is set on shutdown so a rate-limit wait ends at once.
    """
    from monitor.alerts.notifiers import JsonlNotifier, TerminalNotifier

    found: dict[str, Notifier] = {}
    if terminal is not None:
        found["terminal"] = TerminalNotifier(terminal, utc_offset_hours=alerts.display_utc_offset_hours,
                                             max_samples=alerts.max_samples)
    if jsonl_path:
        found["jsonl"] = JsonlNotifier(jsonl_path)
    if slack.bot_token:
        if not slack.channel:
            raise ConfigError(
                "SLACK_BOT_TOKEN is set but SLACK_CHANNEL is not: set SLACK_CHANNEL to the channel id for alerts"
            )
        from monitor.alerts.slack import SlackBotNotifier

        found["slack"] = SlackBotNotifier(slack.bot_token, slack, alerts, stop=stop)
    elif slack.webhook_url:
        from monitor.alerts.slack import SlackWebhookNotifier

        found["slack"] = SlackWebhookNotifier(slack.webhook_url, slack, alerts, stop=stop)
    return found
