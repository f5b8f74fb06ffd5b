"""The pure lifecycle planner: examples of each rule, then properties over random signal streams."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.alerts.config import AlertsConfig
from monitor.alerts.planner import AlertState, PlannedEvent, SilenceRule, needs_update, plan
from monitor.events import Signal

T0 = datetime(2025, 3, 19, 5, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
CFG = AlertsConfig(group_wait_minutes=10, resolve_after_minutes=20, cooldown_minutes=30,
                   repeat_interval_minutes=60, update_growth=0.5, update_min_delta=2)


def sig(kind: str, key: str, at: datetime, *, count: int = 5, firing: bool = True, brokers: tuple[str, ...] = (),
        tickers: tuple[str, ...] = (), samples: tuple[str, ...] = ("x:1", "x:2")) -> Signal:
    return Signal(kind, key, at, timedelta(minutes=15), at - timedelta(minutes=15), count=count, expected=0.4,
                  score=8.0, firing=firing, tickers=tickers, brokers=brokers, sample_post_ids=samples,
                  first_seen=at - timedelta(minutes=3))


@dataclass
class Sim:
    """Carries states between planner calls the way the store does (active + recently resolved)."""

    config: AlertsConfig = CFG
    silences: list[SilenceRule] = field(default_factory=list)
    states: dict[str, AlertState] = field(default_factory=dict)
    events: list[PlannedEvent] = field(default_factory=list)

    def step(self, now: datetime, signals: list[Signal]) -> list[PlannedEvent]:
        result = plan(list(self.states.values()), signals, now, self.config, self.silences)
        for state in result.states:
            if state.status == "dropped":
                self.states.pop(state.ref, None)
            else:
                self.states[state.ref] = state
        active = defaultdict(int)
        for state in self.states.values():
            active[state.fingerprint] += state.active
        assert all(n <= 1 for n in active.values()), active  # one open alert per fingerprint
        self.events.extend(result.events)
        return list(result.events)


def names(events: list[PlannedEvent]) -> list[tuple[str, str]]:
    return [(e.event.event, e.event.fingerprint) for e in events]


# --- examples -------------------------------------------------------------------------------------------


def test_opens_only_after_group_wait_and_carries_the_signal_numbers() -> None:
    sim = Sim()
    assert sim.step(T0, [sig("broker", "楽天証券", T0)]) == []
    assert sim.step(T0 + STEP, [sig("broker", "楽天証券", T0 + STEP)]) == []
    events = sim.step(T0 + 2 * STEP, [sig("broker", "楽天証券", T0 + 2 * STEP, count=7, tickers=("2269.HK",))])
    assert names(events) == [("open", "broker:楽天証券")]
    event = events[0].event
    assert (event.count, event.expected, event.tickers, event.sample_post_ids) == (7, 0.4, ("2269.HK",), ("x:1", "x:2"))
    assert event.at == T0 + 2 * STEP and events[0].notify
    assert event.extra["first_seen"] == (T0 - timedelta(minutes=3)).isoformat()


def test_a_flap_shorter_than_group_wait_never_pages() -> None:
    sim = Sim()
    sim.step(T0, [sig("broker", "SBI証券", T0)])
    sim.step(T0 + STEP, [sig("broker", "SBI証券", T0 + STEP)])
    sim.step(T0 + 2 * STEP, [sig("broker", "SBI証券", T0 + 2 * STEP, firing=False)])
    for i in range(3, 20):
        sim.step(T0 + i * STEP, [])
    assert sim.events == [] and sim.states == {}


def test_updates_only_on_material_growth_or_repeat_interval_then_resolves_when_quiet() -> None:
    sim = Sim()
    counts = [3, 3, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]
    for i, n in enumerate(counts):
        sim.step(T0 + i * STEP, [sig("broker", "楽天証券", T0 + i * STEP, count=n)])
    kinds = [(e.event.event, e.event.count, e.event.extra["reason"]) for e in sim.events]
    # open at 3 (after 10 min), growth update at 5 (>= 3 + 2), reminder 60 min after that update.
    assert kinds == [("open", 3, "group_wait"), ("update", 5, "growth"), ("update", 6, "repeat")]
    last = T0 + (len(counts) - 1) * STEP
    assert sim.step(last + timedelta(minutes=15), []) == []
    resolved = sim.step(last + timedelta(minutes=20), [])
    assert names(resolved) == [("resolve", "broker:楽天証券")] and resolved[0].notify


def test_cooldown_holds_a_new_episode_back() -> None:
    sim = Sim()
    t = T0
    for _ in range(3):
        sim.step(t, [sig("ticker", "2269.HK", t)])
        t += STEP
    resolve_at = t + timedelta(minutes=20)
    assert names(sim.step(resolve_at, [])) == [("resolve", "ticker:2269.HK")]
    t = resolve_at + STEP
    opened_at = None
    while opened_at is None and t < resolve_at + timedelta(hours=2):
        if sim.step(t, [sig("ticker", "2269.HK", t)]):
            opened_at = t
        t += STEP
    assert opened_at == resolve_at + timedelta(minutes=30)


def test_silenced_events_are_recorded_but_owe_no_notification_and_no_resolve_follows() -> None:
    silence = SilenceRule(7, "broker", "*", T0, T0 + timedelta(hours=1))
    sim = Sim(silences=[silence])
    for i in range(3):
        sim.step(T0 + i * STEP, [sig("broker", "楽天証券", T0 + i * STEP)])
    sim.step(T0 + timedelta(hours=2), [])
    assert [(e.event.event, e.notify, e.event.extra["silenced"]) for e in sim.events] == [
        ("open", False, True), ("resolve", False, False)]


def test_ticker_alert_is_folded_into_the_open_broker_alert_naming_it() -> None:
    sim = Sim()
    for i in range(6):
        t = T0 + i * STEP
        signals = [sig("broker", "楽天証券", t, tickers=("0700.HK",))]
        if i >= 2:
            signals.append(sig("ticker", "2269.HK", t, brokers=("楽天証券",)))
            signals.append(sig("ticker", "9999.HK", t, brokers=()))  # no broker named: pages on its own
        sim.step(t, signals)
    opened = {e.event.fingerprint: e for e in sim.events if e.event.event == "open"}
    assert opened["broker:楽天証券"].notify
    assert not opened["ticker:2269.HK"].notify
    assert opened["ticker:2269.HK"].event.extra["inhibited_by"] == ["broker:楽天証券"]
    assert opened["ticker:9999.HK"].notify
    broker = next(s for s in sim.states.values() if s.fingerprint == "broker:楽天証券")
    assert broker.tickers == ("0700.HK", "2269.HK") and broker.folded_tickers == ("2269.HK",)


def test_needs_update_is_logarithmic() -> None:
    counts, last = [], 3
    for n in range(3, 400):
        if needs_update(last, n, CFG):
            counts.append(n)
            last = n
    assert len(counts) < 15 and counts[:3] == [5, 8, 12]


# --- properties -----------------------------------------------------------------------------------------

KEYS = [("broker", "楽天証券"), ("broker", "SBI証券"), ("ticker", "2269.HK"), ("overall", "overall")]
cycle = st.lists(st.tuples(st.sampled_from(["fire", "quiet", "absent"]), st.integers(1, 40)),
                 min_size=len(KEYS), max_size=len(KEYS))
stream = st.lists(cycle, min_size=1, max_size=40)
configs = st.builds(
    AlertsConfig,
    group_wait_minutes=st.sampled_from([0, 5, 10, 15]),
    resolve_after_minutes=st.sampled_from([5, 15, 30]),
    cooldown_minutes=st.sampled_from([0, 10, 60]),
    repeat_interval_minutes=st.sampled_from([10, 30, 240]),
)
silence_windows = st.lists(st.tuples(st.sampled_from([None, "broker", "ticker"]), st.integers(0, 40),
                                     st.integers(1, 20)), max_size=2)


def run_stream(config: AlertsConfig, cycles: list, windows: list) -> tuple[Sim, dict[str, list[tuple]]]:
    silences = [SilenceRule(i, kind, "*", T0 + a * STEP, T0 + (a + n) * STEP) for i, (kind, a, n) in enumerate(windows)]
    sim = Sim(config=config, silences=silences)
    observed: dict[str, list[tuple]] = defaultdict(list)  # fingerprint -> (time, firing) of each signal
    for i, states in enumerate(cycles):
        t = T0 + i * STEP
        signals = []
        for (kind, key), (what, count) in zip(KEYS, states, strict=True):
            if what == "absent":
                continue
            brokers = ("楽天証券",) if kind != "broker" and count % 2 else ()
            signals.append(sig(kind, key, t, count=count, firing=what == "fire", brokers=brokers))
            observed[f"{kind}:{key}"].append((t, what == "fire"))
        sim.step(t, signals)
    sim.step(T0 + (len(cycles) + 30) * STEP, [])  # long quiet tail: everything resolves
    return sim, observed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, stream, silence_windows)
def test_lifecycle_properties(config: AlertsConfig, cycles: list, windows: list) -> None:
    sim, observed = run_stream(config, cycles, windows)
    by_ref: dict[str, list[PlannedEvent]] = defaultdict(list)
    for planned in sim.events:
        by_ref[planned.ref].append(planned)
    times = [e.event.at for e in sim.events]
    assert times == sorted(times)
    for episode in by_ref.values():
        kinds = [e.event.event for e in episode]
        # open -> update* -> resolve, and after the quiet tail every episode has resolved
        assert kinds[0] == "open" and kinds[-1] == "resolve" and set(kinds[1:-1]) <= {"update"}, kinds
        fp = episode[0].event.fingerprint
        opened = episode[0].event.at
        # no open without group_wait of uninterrupted firing (a shorter flap never opens)
        run = [(t, f) for t, f in observed[fp] if t <= opened]
        start = opened
        for t, firing in reversed(run):
            if not firing or start - t > config.resolve_after:
                break
            start = t
        assert opened - start >= config.group_wait, (fp, opened, start)
        # no update without a material change or the repeat interval
        for before, update in zip(episode, episode[1:-1], strict=False):
            grew = needs_update(before.event.count, update.event.count, config)
            assert grew or update.event.at - before.event.at >= config.repeat_interval
        # resolve only after resolve_after without a firing signal
        last_firing = max(t for t, f in observed[fp] if f and t <= episode[-1].event.at)
        assert episode[-1].event.at - last_firing >= config.resolve_after
        # silences and inhibition mute; a resolve is only sent for an episode someone saw
        seen = False
        for planned in episode:
            event = planned.event
            silenced = any(s.matches(event.kind, event.key, event.at) for s in sim.silences)
            assert event.extra["silenced"] == silenced
            expected = not silenced and not event.extra["inhibited_by"] and (event.event != "resolve" or seen)
            assert planned.notify == expected
            seen = seen or planned.notify
    # cooldown between episodes of one fingerprint
    episodes = defaultdict(list)
    for episode in by_ref.values():
        episodes[episode[0].event.fingerprint].append((episode[0].event.at, episode[-1].event.at))
    for spans in episodes.values():
        spans.sort()
        for (_, resolved), (opened, _) in zip(spans, spans[1:], strict=False):
            assert opened - resolved >= config.cooldown


@settings(max_examples=60, deadline=None)
@given(configs, stream)
def test_planning_is_deterministic(config: AlertsConfig, cycles: list) -> None:
    first, _ = run_stream(config, cycles, [])
    second, _ = run_stream(config, cycles, [])
    assert [(e.ref, e.event, e.notify) for e in first.events] == [(e.ref, e.event, e.notify) for e in second.events]
