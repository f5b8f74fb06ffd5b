"""Behaviour of the report detector: firing rules, hysteresis, baseline hygiene, ticker clusters, evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.detect.baseline import KeyModel, tail_score
from monitor.detect.config import DetectConfig
from monitor.detect.detector import Detector, format_window, run_detector
from monitor.errors import ConfigError, InputError
from monitor.events import Report

T0 = datetime(2025, 3, 19, 0, 0, tzinfo=UTC)
TEXTS = [
    "楽天証券で勝手に株を売られた",
    "知らない中国株を買われてる",
    "ログイン履歴に覚えのない端末",
    "保有株が全部売却されていた",
    "不正ログインされて米国株が消えた",
    "パスワードを変えられてログインできない",
    "預り金がほぼゼロになってる",
    "信用取引で見知らぬ銘柄を買われていた",
    "投資信託が全部解約されてた",
    "メールアドレスが勝手に変更されてた",
]


def victim(
    n: int, t: datetime, broker: str = "楽天証券", tickers=(), author: str | None = None, **kw
) -> Report:
    return Report(
        f"x:{n}",
        "x",
        author or f"x:u{n}",
        t,
        "victim_report",
        f"{TEXTS[n % 10]} ({n}番)",
        (broker,),
        tuple(tickers),
        **kw,
    )


def every(step_min: int, hours: float, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(minutes=step_min * (i + 1)) for i in range(int(hours * 60 / step_min))]


def broker_signals(batches, key="楽天証券"):
    return [next((s for s in batch if s.key == key), None) for batch in batches]


def test_surge_fires_with_evidence():
    reports = [
        victim(i, T0 + timedelta(hours=2, minutes=3 * i), tickers=("2269.HK",) if i % 2 else ())
        for i in range(6)
    ]
    reports.append(victim(99, T0 + timedelta(hours=2, minutes=1), author="x:u0"))  # same author again
    reports.append(victim(98, T0 + timedelta(hours=2, minutes=2), repost_of="x:0"))  # a repost
    reports.append(
        Report("x:d", "x", "x:d", T0 + timedelta(hours=2), "incident_discussion", "ニュース", ("楽天証券",))
    )
    batches = run_detector(reports, every(5, 3))
    sig = broker_signals(batches)[every(5, 3).index(T0 + timedelta(hours=2, minutes=20))]
    assert sig.firing and sig.count == 6
    # distinct reporters: the first one and the newest, in time order
    assert sig.sample_post_ids == ("x:0", "x:2", "x:3", "x:4", "x:5")
    assert sig.tickers == ("2269.HK",)
    assert sig.discussion_count == 1
    assert sig.first_seen == T0 + timedelta(hours=2)
    assert sig.expected < 0.5 and sig.score >= 5
    assert sig.explanation.startswith(
        f"6 distinct reporters in {format_window(sig.window)} vs {sig.expected:.2g} "
    )


def test_two_reporters_never_fire_however_unlikely():
    reports = [victim(i, T0 + timedelta(hours=2, minutes=i)) for i in range(2)]
    cfg = DetectConfig(prior_rate=0.0001)
    signals = [s for batch in run_detector(reports, every(1, 3), Detector(cfg)) for s in batch]
    assert signals and not any(s.firing for s in signals)
    assert max(s.score for s in signals) > cfg.threshold  # unlikely, but only two people


def test_warm_up_suppresses_opening():
    reports = [victim(i, T0 + timedelta(minutes=2 + i)) for i in range(6)]
    cold = run_detector(reports, every(5, 0.5), Detector(DetectConfig(warmup_buckets=12)))
    assert not any(s.firing for batch in cold for s in batch)
    warm = run_detector(reports, every(5, 0.5), Detector(DetectConfig(warmup_buckets=0)))
    assert any(s.firing for batch in warm for s in batch)


def test_hysteresis_holds_then_releases():
    cfg = DetectConfig(windows_minutes=(15, 60))
    reports = [victim(i, T0 + timedelta(hours=2, minutes=2 * i)) for i in range(6)]
    ts = every(5, 5)
    firing = [bool(s and s.firing) for s in broker_signals(run_detector(reports, ts, Detector(cfg)))]
    opened = firing.index(True)
    closed = firing.index(False, opened)
    # still open when the 15-minute window is empty again: the 1 h window holds it above release
    assert ts[opened] <= T0 + timedelta(hours=2, minutes=10)
    assert ts[closed] > T0 + timedelta(hours=2, minutes=30)
    assert not any(firing[closed:])


def test_spike_does_not_pollute_the_baseline():
    cfg = DetectConfig(warmup_buckets=0)
    reports = [victim(i, T0 + timedelta(hours=1, minutes=i % 30), author=f"x:p{i}") for i in range(60)]
    det = Detector(cfg)
    run_detector(reports, every(5, 3), det)
    state = det.to_state()
    model = KeyModel.from_state(next(m for kind, key, m in state["models"] if key == "楽天証券"))
    learned = Detector(cfg.replace(clip_sd=1e9))  # learns the spike in full
    run_detector(reports, every(5, 3), learned)
    polluted = KeyModel.from_state(next(m for k, key, m in learned.to_state()["models"] if key == "楽天証券"))
    assert model.expected(0, cfg) < 0.05 < polluted.expected(0, cfg)


def test_ticker_cluster_fires_without_a_short_burst():
    # three people at three brokers name one ticker over five hours: no window is statistically wild
    reports = [
        victim(i, T0 + timedelta(hours=1 + 2 * i), broker=b, tickers=("2269.HK",))
        for i, b in enumerate(["楽天証券", "SBI証券", "マネックス証券"])
    ]
    ts = every(5, 7)
    sigs = broker_signals(run_detector(reports, ts), key="2269.HK")
    fired = [s for s in sigs if s and s.firing]
    assert fired and fired[0].at >= T0 + timedelta(hours=5)
    assert fired[0].kind == "ticker" and fired[0].count == 3
    assert "cluster rule" in fired[0].explanation
    assert set(fired[0].brokers) == {"楽天証券", "SBI証券", "マネックス証券"}
    assert not any(s.firing for batch in run_detector(reports, ts) for s in batch if s.kind == "broker")


def test_discussion_only_key_reports_context_but_never_fires():
    reports = [
        Report(
            f"x:{i}", "x", f"x:{i}", T0 + timedelta(minutes=i), "incident_discussion", "注意", ("SBI証券",)
        )
        for i in range(50)
    ]
    last = run_detector(reports, every(5, 1))[-1]  # at 01:00 the 15-minute window holds minutes 45-49
    sbi = next(s for s in last if s.key == "SBI証券")
    assert not sbi.firing and sbi.count == 0 and sbi.discussion_count == 5 and sbi.first_seen is None


def test_seasonal_baseline_expects_more_at_the_busy_hour():
    cfg = DetectConfig(seasonal_min_days=2, utc_offset_hours=0)
    m = KeyModel()
    for b in range(288 * 4):
        hour = (b * 5 // 60) % 24
        m.learn(b, 1.0 if hour == 21 and b % 3 == 0 else 0.0, m.expected(b, cfg), cfg)
    day5 = 288 * 4
    assert m.expected(day5 + 21 * 12, cfg) > 5 * m.expected(day5 + 9 * 12, cfg)


def test_tail_score_grows_with_the_surprise():
    assert tail_score(1, 0.4) < tail_score(3, 0.4) < tail_score(7, 0.4)
    assert tail_score(7, 0.4) > tail_score(7, 4.0)
    assert tail_score(10**6, 1e-6) == pytest.approx(300.0)  # capped, never inf


def test_naive_now_is_a_clear_error():
    with pytest.raises(InputError, match="timezone"):
        Detector().evaluate(datetime(2025, 3, 19), [])


def test_bad_state_and_settings_are_config_errors():
    with pytest.raises(ConfigError, match="fresh baseline"):
        Detector.from_state({"version": 99})
    with pytest.raises(ConfigError, match="multiple of bucket_minutes"):
        DetectConfig(windows_minutes=(7,))
    with pytest.raises(ConfigError, match="unknown key"):
        DetectConfig.from_dict({"treshold": 3})


def test_every_setting_has_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(DetectConfig))


def test_lookback_covers_the_longest_window():
    det = Detector(DetectConfig(windows_minutes=(15, 60), ticker_window_minutes=720))
    assert det.lookback == timedelta(minutes=725)


def _sparse_stream(days: int) -> list[Report]:
    """Tickers named now and then over days, most of them idle for long stretches, and a broker burst on
    the last day: the keys an eager detector would step every bucket."""
    reports = []
    for i in range(days * 24):
        t = T0 + timedelta(hours=i, minutes=7)
        reports.append(victim(i, t, broker=["SBI証券", "楽天証券"][i % 2], tickers=(f"{(i * 37) % 50:05d}.HK",)))
    last = T0 + timedelta(days=days - 1, hours=12)
    reports += [victim(10_000 + j, last + timedelta(minutes=2 * j), broker="松井証券") for j in range(6)]
    return reports


def test_idle_keys_owe_their_quiet_buckets_and_decide_the_same():
    # The lazy detector steps only the keys a bucket touches; a copy whose every model is brought up to
    # date after each call (as stepping all of them each bucket did) must see the same baselines, so the
    # same counts, expectations and alerts.
    reports = _sparse_stream(4)
    times = every(15, 4 * 24)
    lazy, eager = Detector(), Detector()
    ordered = sorted(reports, key=lambda r: r.created_at)
    fired = set()
    for now in times:
        window = [r for r in ordered if now - lazy.lookback <= r.created_at <= now]
        a, b = lazy.evaluate(now, window), eager.evaluate(now, window)
        for key in list(eager._models):
            eager.baseline(key)
        assert [(s.key, s.count, s.firing) for s in a] == [(s.key, s.count, s.firing) for s in b]
        assert [s.expected for s in a] == pytest.approx([s.expected for s in b], rel=1e-9)
        fired |= {s.key for s in a if s.firing}
    assert "松井証券" in fired
    stale = [m for m in lazy._models.values() if m.last is not None and m.last < lazy._last_closed]
    assert stale, "some idle ticker was stepped anyway"
    for key, model in eager._models.items():
        caught = lazy.baseline(key)
        assert caught is not None and caught.learned == model.learned and caught.last == model.last
        assert caught.expected(lazy._last_closed + 1, lazy.config) == pytest.approx(
            model.expected(lazy._last_closed + 1, lazy.config), rel=1e-9)


def test_buckets_that_left_the_lookback_are_skipped_not_learned():
    det = Detector()
    report = victim(1, T0 + timedelta(hours=1, minutes=30))
    det.evaluate(T0 + timedelta(hours=1), [])
    det.evaluate(T0 + timedelta(hours=2), [report])
    before = det.baseline(("broker", "楽天証券"))
    assert before is not None
    learned = before.learned
    later = T0 + timedelta(days=3)
    det.evaluate(later, [])  # two days without a call: beyond the 6 h lookback
    model = det.baseline(("broker", "楽天証券"))
    assert model is not None
    covered = int(det.lookback / det.bucket)  # only the buckets still inside the lookback were closed
    assert learned < model.learned <= learned + covered + 12 + 1


def test_state_round_trip_keeps_owed_buckets():
    reports = _sparse_stream(2)
    times = every(30, 2 * 24)
    straight = Detector()
    run_detector(reports, times, straight)
    half = len(times) // 2
    first = Detector()
    run_detector(reports, times[:half], first)
    resumed = Detector.from_state(first.to_state())
    run_detector(reports, times[half:], resumed)
    assert resumed.to_state() == straight.to_state()
