"""`spikes detect FILE.csv` (the DESIGN.md contract) and the NAB scoring used by the benchmark."""

from __future__ import annotations

import argparse
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.nab import STANDARD, load_corpus, normalised, onsets, scaled_sigmoid, score_file
from monitor.cli import main as cli_main
from monitor.commands import spikes
from monitor.detect.series import detect_series, read_series_csv, series_config

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def write_series(path: Path, values, start="2015-03-01 00:00:00", fmt=None) -> Path:
    t0 = datetime.fromisoformat(start)
    lines = ["timestamp,value"]
    for i, v in enumerate(values):
        t = t0 + timedelta(minutes=5 * i)
        lines.append(f"{t.isoformat() if fmt == 'iso' else t.strftime('%Y-%m-%d %H:%M:%S')},{v}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(args, capsys) -> tuple[int, str, str]:
    rc = cli_main(["spikes", "detect", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_detect_writes_one_row_per_input_row_in_order(tmp_path, capsys):
    values = [20 + i % 5 for i in range(400)]
    values[350] = 400
    path = write_series(tmp_path / "s.csv", values)
    rc, out, err = run_cli([str(path)], capsys)
    assert rc == 0 and err == ""
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["timestamp", "score", "alert"]
    assert len(rows) == 401
    assert [r[0] for r in rows[1:]] == [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    assert all(r[2] in ("0", "1") for r in rows[1:]) and all(float(r[1]) >= 0 for r in rows[1:])
    assert rows[351][2] == "1" and not any(r[2] == "1" for r in rows[1:300])
    assert float(rows[351][1]) == max(float(r[1]) for r in rows[290:])


def test_detect_matches_the_library_and_accepts_iso_with_offsets(tmp_path, capsys):
    values = [3, 0, 1, 0, 0, 2] * 80
    path = write_series(tmp_path / "iso.csv", values, start="2025-03-19T00:00:00+09:00", fmt="iso")
    rc, out, _ = run_cli([str(path), "--warmup", "10", "--threshold", "3"], capsys)
    ts, vs, _ = read_series_csv(path)
    expected = detect_series(
        ts, vs, series_config(warmup_buckets=10, threshold=3.0, ticker_window_minutes=360)
    )
    got = [(float(r[1]), int(r[2])) for r in list(csv.reader(io.StringIO(out)))[1:]]
    assert rc == 0 and [a for _, a in got] == [a for _, a in expected]
    assert got == [(round(s, 4), a) for s, a in expected]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            "timestamp,value\n2015-03-01 00:00:00,3\n2015-03-01 00:05:00,abc\n",
            ":3: value 'abc' is not a number",
        ),
        ("timestamp,value\n2015-03-01 00:00:00,3\nyesterday,4\n", ":3: timestamp 'yesterday'"),
        (
            "timestamp,value\n2015-03-01 00:05:00,3\n2015-03-01 00:00:00,4\n",
            ":3: timestamp '2015-03-01 00:00:00' is not after",
        ),
        ("timestamp,value\n2015-03-01 00:00:00,-2\n", ":2: value '-2' must be a finite count"),
        ("time,count\n2015-03-01 00:00:00,3\n", ":1: the header must be `timestamp,value`"),
        ("timestamp,value\n2015-03-01 00:00:00\n", ":2: expected `timestamp,value`"),
    ],
)
def test_bad_rows_give_one_line_with_file_and_line(tmp_path, capsys, body, needle):
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    rc, out, err = run_cli([str(path)], capsys)
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and str(path) + needle in err


def test_missing_file_and_bad_options(tmp_path, capsys):
    rc, _, err = run_cli([str(tmp_path / "nope.csv")], capsys)
    assert rc == 1 and "nope.csv" in err and "check the path" in err
    path = write_series(tmp_path / "s.csv", [1, 2, 3])
    rc, _, err = run_cli([str(path), "--threshold", "1", "--release", "3"], capsys)
    assert rc == 1 and "release_threshold must not exceed threshold" in err
    with pytest.raises(SystemExit):
        cli_main(["spikes", "detect", str(path), "--windows", "0,x"])


def test_help_ends_with_an_example():
    parser = argparse.ArgumentParser(prog="incident-monitor")
    spikes.register(parser.add_subparsers())
    detect = (
        parser._subparsers._group_actions[0].choices["spikes"]._subparsers._group_actions[0].choices["detect"]
    )
    assert detect.description.rstrip().split("Example: ")[-1].startswith("incident-monitor spikes detect")


# ------------------------------------------------------------------ NAB scoring
def _hours(n):
    return [datetime(2015, 3, 1) + timedelta(hours=i) for i in range(n)]


def test_nab_scoring_null_perfect_and_early_beats_late():
    ts = _hours(200)
    windows = [(ts[60], ts[79]), (ts[140], ts[159])]
    null = [score_file(ts, [False] * 200, windows)]
    perfect_alerts = [i in (60, 140) for i in range(200)]
    perfect = [score_file(ts, perfect_alerts, windows)]
    assert normalised(null) == 0 and normalised(perfect) == pytest.approx(100)
    early = score_file(ts, [i == 62 for i in range(200)], windows)
    late = score_file(ts, [i == 78 for i in range(200)], windows)
    assert early.raw > late.raw and early.detected == late.detected == 1
    assert early.delays_h == [62 - 69.5]


def test_nab_false_positives_cost_more_far_from_windows():
    ts = _hours(200)
    windows = [(ts[60], ts[79])]
    just_after = score_file(ts, [i == 81 for i in range(200)], windows)
    far_after = score_file(ts, [i == 190 for i in range(200)], windows)
    before = score_file(ts, [i == 40 for i in range(200)], windows)
    in_probation = score_file(ts, [i == 10 for i in range(200)], windows)
    base = -STANDARD.fn
    assert base - STANDARD.fp == pytest.approx(far_after.raw) == pytest.approx(before.raw)
    assert base - STANDARD.fp < just_after.raw < base
    assert in_probation.raw == base and in_probation.false_positives == 0
    assert scaled_sigmoid(0.0) == 0 and onsets([1, 1, 0, 1]) == [True, False, False, True]


def test_series_detector_beats_the_null_detector_on_nab():
    root = SHARED / "nab"
    if not (root / "realTweets").is_dir():
        pytest.skip(f"../shared not found: {root}")
    corpus = [f for f in load_corpus(root) if f.name.endswith("FB.csv")]
    scores = [
        score_file(f.timestamps, onsets([a for _, a in detect_series(f.timestamps, f.values)]), f.windows)
        for f in corpus
    ]
    assert normalised(scores) > 0 and scores[0].detected >= 1


def test_no_anomaly_score_before_the_warm_up_ends():
    """Regression: the first row scored 300 (its count against the bare prior) while alert stayed 0."""
    from datetime import datetime, timedelta

    from monitor.detect.series import detect_series, series_config

    config = series_config(warmup_buckets=6)
    times = [datetime(2015, 2, 26) + timedelta(minutes=5 * i) for i in range(12)]
    rows = detect_series(times, [50.0] * 12, config)
    assert [score for score, _ in rows[:6]] == [0.0] * 6
    assert all(alert == 0 for _, alert in rows[:6])
