"""The alert lifecycle planner: pure, deterministic, in the manner of Prometheus Alertmanager.

Given the stored alert episodes, the detector's signals, the stream's ``now`` and the active silences, it
returns the new states and the events to record. No I/O, no clock: a replay plans exactly what the live
bot planned.

Lifecycle of one fingerprint ``kind:key`` (at most one pending-or-firing episode at a time)::

    (none) --firing signal--> pending --still firing after group_wait--> firing  [open]
    pending --non-firing signal, or quiet for resolve_after--> dropped (never paged)
    firing --count grew materially, or repeat_interval since the last event--> firing  [update]
    firing --no firing signal for resolve_after--> resolved  [resolve]
    firing --non-firing signal of a ``source`` alert (the source collects again)--> resolved  [resolve]
    resolved --firing signal--> new pending episode, which cannot open before cooldown has passed

The detector reports a key on each cycle while it fires (``Signal.firing``); a key it stops reporting is
quiet, just like one reported with ``firing=False``.

Muting. Events are always recorded; ``notify`` says whether a notification is owed:

* silence: a silence active at ``now`` matching (kind, key) mutes the event (``extra["silenced"]``).
* inhibition (rule chosen here): a ticker or overall alert is *folded* into broker alerts when, at the
  moment it opens, its signal names at least one broker and EVERY broker it names has an open, unmuted
  broker alert. Its reports then all come from those broker episodes, so paging again adds nothing; the
  ticker is added to those broker alerts' tickers instead, and the whole folded episode stays muted
  (``extra["inhibited_by"]``). A ticker named in reports without a broker, or beside a broker that has
  no open alert, pages on its own - that is the pump-and-dump pattern worth a separate page.
* a resolve is notified only when an earlier event of the episode was, so nobody gets "resolved" for an
  alert they never saw.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor.alerts.config import AlertsConfig
from monitor.events import AlertEvent, Kind, Signal

ACTIVE = ("pending", "firing")
KIND_RANK = {"broker": 0, "overall": 1, "ticker": 2, "source": 3}  # brokers first, so inhibition sees their final state
MAX_TICKERS = 20


@dataclass(frozen=True, slots=True)
class AlertState:
    """One episode of one fingerprint, as the planner sees it (a pure mirror of an ``Alert`` row)."""

    ref: str  # "id:12" for a stored alert; "new:<fingerprint>@<iso time>" for one planned in this call
    kind: Kind
    key: str
    status: str  # pending | firing | resolved | dropped
    first_seen: datetime
    pending_since: datetime
    last_firing_at: datetime
    window_start: datetime
    window_minutes: float = 0.0
    count: int = 0
    max_count: int = 0
    expected: float = 0.0
    score: float = 0.0
    tickers: tuple[str, ...] = ()
    brokers: tuple[str, ...] = ()
    sample_post_ids: tuple[str, ...] = ()
    discussion_count: int = 0
    explanation: str = ""
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    last_event_at: datetime | None = None
    last_event_count: int = 0
    notified: bool = False  # some event of this episode was (or will be) notified
    inhibited_by: tuple[str, ...] = ()  # fingerprints of the broker alerts it is folded into
    folded_tickers: tuple[str, ...] = ()  # tickers folded into this (broker) alert
    alert_id: int | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.kind}:{self.key}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def open_at(self, t: datetime) -> bool:
        """Whether this episode was firing (opened, not yet resolved) at ``t``."""
        return (
            self.opened_at is not None
            and self.opened_at <= t
            and (self.resolved_at is None or self.resolved_at > t)
        )


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """A silence: matches ``kind`` (None = any) and ``key`` ("*" = any) from ``starts_at`` until ``expires_at``.

    >>> from datetime import UTC, datetime
    >>> s = SilenceRule(1, "broker", "*", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    >>> s.matches("broker", "楽天証券", datetime(2025, 3, 1, 12, tzinfo=UTC))
    True
    >>> s.matches("ticker", "2269.HK", datetime(2025, 3, 1, 12, tzinfo=UTC))
    False
    >>> s.matches("broker", "楽天証券", datetime(2025, 3, 2, tzinfo=UTC))  # expired
    False
    """

    id: int | None
    kind: str | None
    key: str
    starts_at: datetime
    expires_at: datetime
    comment: str = ""

    def matches(self, kind: str, key: str, t: datetime) -> bool:
        return (
            (self.kind is None or self.kind == kind)
            and self.key in ("*", key)
            and self.starts_at <= t < self.expires_at
        )


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event to record for episode ``ref``; ``notify`` says whether notifiers owe a message for it."""

    ref: str
    event: AlertEvent
    notify: bool


@dataclass(frozen=True, slots=True)
class Plan:
    states: tuple[AlertState, ...]  # every episode touched by this call, in its final form
    events: tuple[PlannedEvent, ...]  # in stream-time order; per episode open -> update* -> resolve


def needs_update(last_count: int, count: int, config: AlertsConfig) -> bool:
    """Whether ``count`` grew materially since the last event's ``last_count``.

    Growth must reach both ``update_growth`` (a fraction) and ``update_min_delta`` (reporters), so the number
    of updates grows with the logarithm of the count: a surge from 3 to 300 reporters sends about a dozen.

    >>> needs_update(4, 5, AlertsConfig()), needs_update(4, 6, AlertsConfig()), needs_update(20, 29, AlertsConfig())
    (False, True, False)
    """
    step = max(config.update_min_delta, math.ceil(last_count * config.update_growth))
    return count >= last_count + step


@dataclass
class _Planner:
    config: AlertsConfig
    now: datetime
    silences: Sequence[SilenceRule]
    latest: dict[str, AlertState] = field(default_factory=dict)  # ref -> newest version
    current: dict[str, str] = field(default_factory=dict)  # fingerprint -> ref of its newest episode
    history: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # fingerprint -> refs
    touched: dict[str, None] = field(default_factory=dict)  # refs changed in this call, in order
    events: list[PlannedEvent] = field(default_factory=list)

    # --- bookkeeping -------------------------------------------------------------------------------

    def load(self, state: AlertState) -> None:
        self.latest[state.ref] = state
        self.history[state.fingerprint].append(state.ref)
        held = self.current.get(state.fingerprint)
        if held is None or _newer(state, self.latest[held]):
            self.current[state.fingerprint] = state.ref

    def put(self, state: AlertState) -> None:
        if state.ref not in self.latest:
            self.history[state.fingerprint].append(state.ref)
        self.latest[state.ref] = state
        self.current[state.fingerprint] = state.ref
        self.touched[state.ref] = None

    def state(self, fingerprint: str) -> AlertState | None:
        ref = self.current.get(fingerprint)
        return self.latest[ref] if ref else None

    def emit(self, state: AlertState, name: str, t: datetime, reason: str, previous_count: int) -> AlertState:
        silence = next((s for s in self.silences if s.matches(state.kind, state.key, self.now)), None)
        muted = silence is not None or bool(state.inhibited_by)
        notify = not muted and (name != "resolve" or state.notified)
        extra = {
            "fingerprint": state.fingerprint,
            "reason": reason,
            "window_minutes": state.window_minutes,
            "first_seen": state.first_seen.isoformat(),
            "opened_at": state.opened_at.isoformat() if state.opened_at else None,
            "brokers": list(state.brokers),
            "discussion_count": state.discussion_count,
            "max_count": state.max_count,
            "previous_count": previous_count,
            "explanation": state.explanation,
            "silenced": silence is not None,
            "silence_id": silence.id if silence else None,
            "inhibited_by": list(state.inhibited_by),
            "notified": notify,
        }
        event = AlertEvent(
            event=name,  # type: ignore[arg-type]
            kind=state.kind,
            key=state.key,
            at=t,
            window_start=state.window_start,
            count=state.count,
            expected=state.expected,
            score=state.score,
            tickers=state.tickers,
            sample_post_ids=state.sample_post_ids,
            extra=extra,
        )
        self.events.append(PlannedEvent(state.ref, event, notify))
        return replace(state, last_event_at=t, last_event_count=state.count, notified=state.notified or notify)

    # --- transitions -------------------------------------------------------------------------------

    def advance(self, fingerprint: str, t: datetime, *, before_signal: bool = False) -> None:
        """Time-driven transitions: a quiet key resolves (firing) or is forgotten (pending).

        Just before a signal at ``t`` only a quiet spell that ended before ``t`` counts: a key that fires
        again exactly ``resolve_after`` after its last firing was never quiet for that long.
        """
        state = self.state(fingerprint)
        if state is None or not state.active:
            return
        quiet = t - state.last_firing_at
        if quiet < self.config.resolve_after or (before_signal and quiet == self.config.resolve_after):
            return
        if state.status == "pending":
            self.put(replace(state, status="dropped"))
            return
        state = replace(state, status="resolved", resolved_at=t)
        self.put(self.emit(state, "resolve", t, "quiet", state.last_event_count))

    def apply(self, signal: Signal) -> None:
        state = self.state(signal.fingerprint)
        if state is None or not state.active:
            if not signal.firing:
                return
            first_seen = min(signal.first_seen or signal.at, signal.at)
            state = AlertState(
                ref=f"new:{signal.fingerprint}@{signal.at.isoformat()}",
                kind=signal.kind,
                key=signal.key,
                status="pending",
                first_seen=first_seen,
                pending_since=signal.at,
                last_firing_at=signal.at,
                window_start=signal.window_start,
            )
        elif state.status == "pending" and not signal.firing:
            # The flap ended inside group_wait: it never pages.
            self.put(replace(state, status="dropped"))
            return
        elif state.kind == "source" and not signal.firing:
            # A silent source that collects again is over at once: waiting resolve_after would only
            # delay the all-clear (a source signal is a fact, not a noisy count).
            state = replace(_observe(state, signal), status="resolved", resolved_at=signal.at)
            self.put(self.emit(state, "resolve", signal.at, "recovered", state.last_event_count))
            return
        state = _observe(state, signal)
        if state.status == "pending":
            state = self.maybe_open(state, signal)
        elif signal.firing:
            last_event_at = state.last_event_at or state.opened_at or signal.at
            if needs_update(state.last_event_count, state.count, self.config):
                state = self.emit(state, "update", signal.at, "growth", state.last_event_count)
            elif signal.at - last_event_at >= self.config.repeat_interval:
                state = self.emit(state, "update", signal.at, "repeat", state.last_event_count)
        self.put(state)

    def maybe_open(self, state: AlertState, signal: Signal) -> AlertState:
        t = signal.at
        if t - state.pending_since < self.config.group_wait:
            return state
        last_resolve = max(
            (s.resolved_at for r in self.history[state.fingerprint]
             if r != state.ref and (s := self.latest[r]).resolved_at is not None),
            default=None,
        )
        if last_resolve is not None and t - last_resolve < self.config.cooldown:
            return state
        state = replace(state, status="firing", opened_at=t)
        if self.config.inhibit and state.kind != "broker":
            folded_into = self.inhibitors(state, t)
            if folded_into:
                state = replace(state, inhibited_by=tuple(b.fingerprint for b in folded_into))
                if state.kind == "ticker":
                    for broker in folded_into:
                        self.fold_ticker(broker, state.key)
        return self.emit(state, "open", t, "group_wait", 0)

    def inhibitors(self, state: AlertState, t: datetime) -> list[AlertState]:
        found = []
        for broker in state.brokers:
            episode = next(
                (s for r in reversed(self.history.get(f"broker:{broker}", []))
                 if (s := self.latest[r]).open_at(t) and not s.inhibited_by),
                None,
            )
            if episode is None:
                return []
            found.append(episode)
        return found

    def fold_ticker(self, broker: AlertState, ticker: str) -> None:
        broker = self.latest[broker.ref]
        if ticker in broker.folded_tickers:
            return
        tickers = broker.tickers if ticker in broker.tickers else (*broker.tickers, ticker)
        self.latest[broker.ref] = replace(
            broker, folded_tickers=(*broker.folded_tickers, ticker), tickers=tickers[:MAX_TICKERS]
        )
        self.touched[broker.ref] = None


def _newer(a: AlertState, b: AlertState) -> bool:
    """Which of two stored episodes of one fingerprint is the current one (an active one always wins)."""
    if a.active != b.active:
        return a.active
    return (a.resolved_at or a.pending_since) > (b.resolved_at or b.pending_since)


def _observe(state: AlertState, signal: Signal) -> AlertState:
    """Take the signal's numbers; keep the earlier evidence when a quieter signal carries none."""
    tickers = tuple(dict.fromkeys((*signal.tickers, *state.folded_tickers))) if signal.tickers else state.tickers
    return replace(
        state,
        last_firing_at=signal.at if signal.firing else state.last_firing_at,
        window_start=signal.window_start,
        window_minutes=signal.window.total_seconds() / 60,
        count=signal.count,
        max_count=max(state.max_count, signal.count),
        expected=signal.expected,
        score=signal.score,
        tickers=tickers[:MAX_TICKERS],
        brokers=(signal.brokers or state.brokers)[:MAX_TICKERS],
        sample_post_ids=signal.sample_post_ids or state.sample_post_ids,
        discussion_count=signal.discussion_count,
        explanation=signal.explanation or state.explanation,
        first_seen=min(state.first_seen, signal.first_seen) if signal.first_seen else state.first_seen,
    )


def plan(
    states: Iterable[AlertState],
    signals: Sequence[Signal],
    now: datetime,
    config: AlertsConfig,
    silences: Sequence[SilenceRule] = (),
) -> Plan:
    """Plan the lifecycle step for ``signals`` observed up to ``now``.

    ``states`` are the stored episodes that matter: every pending or firing one, plus the newest resolved
    one of each fingerprint still inside its cooldown. Signals of one fingerprint are applied in time
    order; afterwards every active episode is checked for quiet at ``now``.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    >>> def sig(minute, firing=True):
    ...     at = t0 + timedelta(minutes=minute)
    ...     return Signal("broker", "楽天証券", at, timedelta(minutes=15), at - timedelta(minutes=15),
    ...                   count=5, expected=0.3, score=9.0, firing=firing)
    >>> cfg = AlertsConfig(group_wait_minutes=5)
    >>> first = plan([], [sig(0)], t0, cfg)
    >>> [s.status for s in first.states], first.events
    (['pending'], ())
    >>> second = plan(first.states, [sig(5)], t0 + timedelta(minutes=5), cfg)
    >>> [(e.event.event, e.notify) for e in second.events]
    [('open', True)]
    >>> flap = plan(first.states, [sig(5, firing=False)], t0 + timedelta(minutes=5), cfg)
    >>> [s.status for s in flap.states], flap.events
    (['dropped'], ())
    """
    planner = _Planner(config=config, now=now, silences=silences)
    for state in states:
        planner.load(state)
    by_fp: dict[str, list[Signal]] = defaultdict(list)
    for signal in signals:
        by_fp[signal.fingerprint].append(signal)
    active = {fp for fp, ref in planner.current.items() if planner.latest[ref].active}
    kinds = {fp: signals_[0].kind for fp, signals_ in by_fp.items()}
    kinds.update({fp: planner.latest[planner.current[fp]].kind for fp in active})
    order = sorted(set(by_fp) | active, key=lambda fp: (KIND_RANK.get(kinds[fp], 9), fp))
    for fp in order:
        t = now
        for signal in sorted(by_fp.get(fp, ()), key=lambda s: s.at):
            planner.advance(fp, signal.at, before_signal=True)
            planner.apply(signal)
            t = max(t, signal.at)
        planner.advance(fp, t)
    events = sorted(planner.events, key=lambda e: e.event.at)  # stable: per-episode order is kept
    return Plan(tuple(planner.latest[r] for r in planner.touched), tuple(events))
