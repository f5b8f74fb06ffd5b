"""Contract checks every detector passes (river-style): input not mutated, state survives JSON, seeded runs
are deterministic, incremental equals batch, causal."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from monitor.detect.config import DetectConfig
from monitor.detect.detector import Detector, run_detector
from monitor.detect.series import SeriesDetector, detect_series, series_config
from monitor.events import Report

T0 = datetime(2025, 3, 19, 0, 0, tzinfo=UTC)
BROKERS = ["楽天証券", "SBI証券", "マネックス証券"]


def stream(seed: int, hours: int = 10) -> list[Report]:
    """Sporadic victims and discussion, plus a surge at 楽天証券 around hour 6 and a ticker cluster."""
    rng = random.Random(seed)
    out = []
    for i in range(hours * 12):
        t = T0 + timedelta(minutes=5 * i)
        if rng.random() < 0.5:
            out.append(_r(rng, len(out), t, "incident_discussion", rng.choice(BROKERS)))
        if rng.random() < 0.05:
            out.append(_r(rng, len(out), t, "victim_report", rng.choice(BROKERS)))
    for j in range(8):
        out.append(_r(rng, len(out), T0 + timedelta(hours=6, minutes=4 * j), "victim_report", "楽天証券"))
    for j in range(3):
        r = _r(rng, len(out), T0 + timedelta(hours=3, minutes=50 * j), "victim_report", "SBI証券")
        out.append(Report(**{**_fields(r), "tickers": ("2269.HK",)}))
    out.append(Report(**{**_fields(out[-1]), "post_key": "x:rt", "author_key": "x:rt", "repost_of": "x:1"}))
    return out


def _fields(r: Report) -> dict:
    return {f: getattr(r, f) for f in Report.__slots__}


def _r(rng: random.Random, n: int, t: datetime, label: str, broker: str) -> Report:
    t = t + timedelta(seconds=rng.randrange(300))
    text = f"{broker} {label} 報告 {rng.randrange(10**9)} {'あいうえおかきくけこさしすせそ'[n % 15] * 3} {n}"
    return Report(f"x:{n}", "x", f"x:u{rng.randrange(40)}", t, label, text, (broker,))


def times(hours: int = 10, minutes: int = 5) -> list[datetime]:
    """Calls every ``minutes``, the first at T0 + 5 min whatever the step (so steps line up)."""
    return [T0 + timedelta(minutes=5 + minutes * i) for i in range((hours * 60 - 5) // minutes + 1)]


def config() -> DetectConfig:
    return DetectConfig(warmup_buckets=6)


def as_tuples(batches):
    return [
        [
            (
                s.kind,
                s.key,
                s.count,
                round(s.expected, 9),
                round(s.score, 9),
                s.firing,
                s.sample_post_ids,
                s.first_seen,
            )
            for s in batch
        ]
        for batch in batches
    ]


# ------------------------------------------------------------------ report detector
def test_reports_detector_fires_in_this_stream():
    # guards the other checks against passing vacuously on a stream where nothing happens
    signals = [s for batch in run_detector(stream(1), times(), Detector(config())) for s in batch]
    assert any(s.firing and s.key == "楽天証券" for s in signals)
    assert any(s.firing and s.kind == "ticker" for s in signals)


def test_reports_input_not_mutated():
    reports = stream(2)
    before = copy.deepcopy(reports)
    det = Detector(config())
    for now in times()[:60]:
        det.evaluate(now, reports)
    assert reports == before


def test_reports_deterministic():
    a = run_detector(stream(3), times(), Detector(config()))
    b = run_detector(stream(3), times(), Detector(config()))
    assert as_tuples(a) == as_tuples(b)


def test_reports_state_round_trip_mid_stream():
    reports, ts = stream(4), times()
    straight = run_detector(reports, ts, Detector(config()))
    det = Detector(config())
    first = run_detector(reports, ts[:70], det)
    restored = Detector.from_state(json.loads(json.dumps(det.to_state())))
    second = run_detector(reports, ts[70:], restored)
    assert as_tuples(first + second) == as_tuples(straight)
    assert restored.to_state() == json.loads(json.dumps(restored.to_state()))


def test_reports_calling_often_equals_calling_once_per_bucket():
    # the baseline learns each closed bucket once however often evaluate() runs
    reports = stream(5)
    every_bucket = Detector(config())
    every_minute = Detector(config())
    coarse = run_detector(reports, times(minutes=5), every_bucket)
    fine = run_detector(reports, times(minutes=1), every_minute)
    assert as_tuples(coarse) == as_tuples(fine[::5])
    assert every_bucket.to_state() == every_minute.to_state()


def test_reports_causal():
    reports, ts = stream(6), times()
    cut = T0 + timedelta(hours=5)
    future = [r for r in stream(7) if r.created_at > cut]
    future = [Report(**{**_fields(r), "post_key": "f" + r.post_key}) for r in future]
    base = run_detector(reports, ts, Detector(config()))
    altered = run_detector([r for r in reports if r.created_at <= cut] + future, ts, Detector(config()))
    upto = sum(1 for t in ts if t <= cut)
    assert as_tuples(base[:upto]) == as_tuples(altered[:upto])
    assert as_tuples(base) != as_tuples(altered)


# ------------------------------------------------------------------ series detector
def series(seed: int, n: int = 900) -> tuple[list[datetime], list[float]]:
    rng = random.Random(seed)
    ts = [datetime(2015, 3, 1) + timedelta(minutes=5 * i) for i in range(n)]
    vs = [float(rng.randrange(20, 40)) for _ in range(n)]
    for i in range(600, 612):
        vs[i] *= 6
    return ts, vs


def test_series_fires_on_the_spike():
    out = detect_series(*series(1))
    assert any(a for _, a in out[600:612])
    assert not any(a for _, a in out[:288])  # warm-up


def test_series_input_not_mutated_and_deterministic():
    ts, vs = series(2)
    before = (list(ts), list(vs))
    a = detect_series(ts, vs)
    assert (ts, vs) == before
    assert a == detect_series(ts, vs)


@pytest.mark.parametrize("cut", [1, 300, 605])
def test_series_incremental_equals_batch_with_state_round_trip(cut):
    ts, vs = series(3)
    batch = detect_series(ts, vs)
    det = SeriesDetector(series_config())
    out = [det.update(t, v) for t, v in zip(ts[:cut], vs[:cut], strict=True)]
    det = SeriesDetector.from_state(json.loads(json.dumps(det.to_state())))
    out += [det.update(t, v) for t, v in zip(ts[cut:], vs[cut:], strict=True)]
    assert out == batch


def test_series_causal():
    ts, vs = series(4)
    base = detect_series(ts, vs)
    for i in (100, 599, 700):
        changed = vs[: i + 1] + [v * 3 + 50 for v in vs[i + 1 :]]
        other = detect_series(ts, changed)
        assert other[: i + 1] == base[: i + 1]
        assert other != base
