"""The notifier seam, and the two local notifiers: terminal and JSONL.

A notifier gets one :class:`Delivery` (an outbox item with its event and the alert's Slack thread, if any)
and either returns (delivered) or raises :class:`~monitor.errors.DeliveryError` (``retryable`` says whether
the outbox should try again). Notifiers never touch the database: the outbox records the outcome.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from monitor.alerts.render import render_text
from monitor.errors import DeliveryError
from monitor.events import AlertEvent
from storage.export import json_line


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification owed: the event (with ``extra`` holding what the message shows) and its alert."""

    item_id: int
    event_id: int
    alert_id: int
    event: AlertEvent
    attempt: int  # 1 for the first try
    slack_channel: str | None = None  # where the alert's first message went (bot token mode)
    slack_ts: str | None = None  # its ts: updates thread under it and edit it in place


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a notifier learned while sending (stored on the alert): the Slack message that is the thread."""

    slack_channel: str | None = None
    slack_ts: str | None = None


class Notifier(Protocol):
    name: str

    def send(self, delivery: Delivery) -> SendResult | None: ...


class TerminalNotifier:
    """Prints a readable summary of each event to a text stream (stdout in ``demo``)."""

    name = "terminal"

    def __init__(self, stream: TextIO, *, utc_offset_hours: float = 9.0, max_samples: int = 5) -> None:
        self.stream = stream
        self.utc_offset_hours = utc_offset_hours
        self.max_samples = max_samples
        self._lock = threading.Lock()

    def send(self, delivery: Delivery) -> SendResult | None:
        text = render_text(delivery.event, utc_offset_hours=self.utc_offset_hours, max_samples=self.max_samples)
        try:
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            raise DeliveryError(f"terminal notifier: cannot write ({exc}); check the output stream") from exc
        return None


class JsonlNotifier:
    """Appends each event as one line in the DESIGN.md alert-event contract."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, delivery: Delivery) -> SendResult | None:
        line = json_line(delivery.event.to_json())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())  # marked sent right after this returns: the line must be on disk
        except OSError as exc:
            raise DeliveryError(
                f"jsonl notifier: cannot append to {self.path} ({exc.strerror}); check the path and permissions"
            ) from exc
        return None
