"""Source silence: signals of kind ``source`` for the collectors the live bot runs. Pure, ``now`` passed in.

A source the bot runs that has had no successful collection pass for longer than ``[alerts]
source_silence_minutes`` fires a ``source:<name>`` signal; the alert planner turns it into an alert of the
bot's own, through the same lifecycle, outbox and notifiers as an incident (group wait, silences, one
episode per fingerprint, reminders only every ``repeat_interval_minutes``). A source that succeeds again
gives a non-firing signal, which resolves that alert at once. Silence is counted from the bot's start at
the earliest, so a bot that was down for a night does not page about its own downtime.

Only `run` watches sources (it passes the sources it runs to the pipeline); `replay`, `demo` and the
analyze workers never do, so a backtest can never raise one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.events import Signal

SOURCE_NAMES = {"x": "X", "reddit": "Reddit", "bluesky": "Bluesky"}
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class SourceSeen:
    """What the health row says of one source (``source_health``)."""

    source: str
    last_success_at: datetime | None
    last_error_at: datetime | None = None
    last_error: str | None = None


def _clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _minutes(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def silence_signals(
    seen: Iterable[SourceSeen],
    watched: Iterable[str],
    now: datetime,
    watching_since: datetime,
    limit: timedelta,
    *,
    include_healthy: bool = True,
) -> list[Signal]:
    """One signal per watched source: firing when it has been silent for longer than ``limit``.

    ``include_healthy=False`` leaves out the non-firing signals (the caller knows no alert is open, so
    there is nothing to resolve).

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    >>> rows = [SourceSeen("x", t - timedelta(minutes=47), t - timedelta(minutes=1), "503 Service Unavailable")]
    >>> [s] = silence_signals(rows, ["x"], t, t - timedelta(hours=2), timedelta(minutes=30))
    >>> s.fingerprint, s.firing, s.explanation
    ('source:x', True, 'X has been silent for 47 min; last success 2025-03-19 05:13 UTC; last error 2025-03-19 05:59 UTC: 503 Service Unavailable')
    >>> [s] = silence_signals(rows, ["x"], t, t - timedelta(minutes=10), timedelta(minutes=30))
    >>> s.firing  # counted from the bot's start: only 10 minutes
    False
    """
    rows = {row.source: row for row in seen}
    found = []
    for source in dict.fromkeys(watched):
        row = rows.get(source) or SourceSeen(source, None)
        since = max(row.last_success_at or watching_since, watching_since)
        quiet = now - since
        name = SOURCE_NAMES.get(source, source)
        firing = limit > timedelta(0) and quiet > limit
        if not firing and not include_healthy:
            continue
        if firing:
            started = "" if row.last_success_at is not None and row.last_success_at >= watching_since else (
                f" (since the bot started at {_clock(watching_since)})")
            last = _clock(row.last_success_at) if row.last_success_at is not None else "never"
            explanation = f"{name} has been silent for {_minutes(quiet)}{started}; last success {last}"
            if row.last_error and row.last_error_at is not None and row.last_error_at >= since:
                error = " ".join(row.last_error.split())
                error = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
                explanation += f"; last error {_clock(row.last_error_at)}: {error}"
        else:
            explanation = f"{name} collected again" + (f" at {_clock(row.last_success_at)}" if row.last_success_at else "")
        found.append(Signal(
            kind="source", key=source, at=now, window=limit, window_start=since, count=0, expected=0.0, score=0.0,
            firing=firing, first_seen=since, explanation=explanation,
        ))
    return found
