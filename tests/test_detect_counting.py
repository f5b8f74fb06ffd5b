"""Counting invariants (hypothesis): bucket counts add up, reposts never count, an author counts once per
window, copypasta by several accounts collapses to one reporter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect.counting import OVERALL, bucket_counts, bucket_index, distinct_reporters, reporter_groups
from monitor.detect.dedup import NearDuplicates
from monitor.detect.detector import Detector
from monitor.events import Report

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
BUCKET = timedelta(minutes=5)
BROKERS = ["楽天証券", "SBI証券", "マネックス証券"]

report_specs = st.lists(
    st.tuples(
        st.integers(0, 5),  # author
        st.integers(0, 59 * 60),  # seconds after T0
        st.sampled_from(["victim_report", "victim_report", "incident_discussion"]),
        st.lists(st.sampled_from(BROKERS), max_size=2, unique=True),
        st.booleans(),  # repost
    ),
    max_size=40,
)


def build(specs) -> list[Report]:
    return [
        Report(
            f"x:{i}",
            "x",
            f"x:a{author}",
            T0 + timedelta(seconds=sec),
            label,
            f"text {i}",
            tuple(brokers),
            repost_of="x:0" if repost else None,
        )
        for i, (author, sec, label, brokers, repost) in enumerate(specs)
    ]


@given(report_specs)
def test_bucket_counts_add_up(specs):
    reports = build(specs)
    counts = bucket_counts(reports, BUCKET)
    counted = [r for r in reports if r.label == "victim_report" and not r.is_repost]
    for key, per_bucket in counts.items():
        feeding = [r for r in counted if key == OVERALL or key[1] in r.brokers]
        # each bucket counts its authors once: the buckets together hold one per (author, bucket) pair
        assert sum(per_bucket.values()) == len(
            {(r.author_key, bucket_index(r.created_at, BUCKET)) for r in feeding}
        )
        # over the hour an author counts once, so the window holds at most the buckets' sum, at least their max
        window = distinct_reporters(feeding)
        assert max(per_bucket.values()) <= window <= sum(per_bucket.values())
        assert window == len({r.author_key for r in feeding})
    for broker in BROKERS:
        if ("broker", broker) in counts:
            for b, n in counts[("broker", broker)].items():
                assert n <= counts[OVERALL][b]


@given(report_specs, st.lists(st.tuples(st.integers(0, 99), st.integers(0, 59 * 60)), max_size=30))
def test_reposts_never_change_counts(specs, reposts):
    reports = build(specs)
    extra = [
        Report(
            f"x:rt{i}",
            "x",
            f"x:fan{author}",
            T0 + timedelta(seconds=sec),
            "victim_report",
            "RT",
            ("楽天証券",),
            repost_of="x:1",
        )
        for i, (author, sec) in enumerate(reposts)
    ]
    assert bucket_counts(reports + extra, BUCKET) == bucket_counts(reports, BUCKET)


@given(report_specs, st.integers(0, 5), st.lists(st.integers(0, 59 * 60), min_size=1, max_size=10))
def test_an_author_counts_once_per_window(specs, author, seconds):
    reports = build(specs)
    base = distinct_reporters(reports)
    mine = [
        Report(f"x:m{i}", "x", f"x:a{author}", T0 + timedelta(seconds=s), "victim_report", f"mine {i}")
        for i, s in enumerate(seconds)
    ]
    has_author = any(
        r.author_key == f"x:a{author}" and r.label == "victim_report" and not r.is_repost for r in reports
    )
    assert distinct_reporters(reports + mine) == base + (0 if has_author else 1)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 30), st.sampled_from(["", "!!", " https://t.co/abc", " @someone"]))
def test_copypasta_by_many_accounts_is_one_reporter(copies, suffix):
    text = "楽天証券で勝手に中国株を買われた。保有していた米国株は全部売却されていた。同じ被害の人いますか"
    reports = [
        Report(
            f"x:{i}",
            "x",
            f"x:acct{i}",
            T0 + timedelta(minutes=i),
            "victim_report",
            text + (suffix if i % 2 else ""),
        )
        for i in range(copies)
    ]
    nd = NearDuplicates(threshold=0.7)
    neighbours = nd.neighbours([r.post_key for r in reports], [r.text for r in reports])
    assert distinct_reporters(reports, neighbours) == 1
    assert distinct_reporters(reports) == copies  # without the text links each account is a reporter


def test_different_reports_are_not_collapsed():
    texts = [
        "楽天証券で勝手に株を売られた",
        "SBI証券のパスワードが変更されてた",
        "マネックスで知らない香港株を買われてる",
        "ログイン履歴に覚えのない端末がある、松井証券",
        "野村の口座から出金されてた",
    ]
    reports = [Report(f"x:{i}", "x", f"x:{i}", T0, "victim_report", t) for i, t in enumerate(texts)]
    nd = NearDuplicates(threshold=0.7)
    neighbours = nd.neighbours([r.post_key for r in reports], [r.text for r in reports])
    assert distinct_reporters(reports, neighbours) == 5


def test_groups_list_earliest_report_first():
    reports = [
        Report("x:2", "x", "x:b", T0 + timedelta(minutes=2), "victim_report", "b"),
        Report("x:1", "x", "x:a", T0 + timedelta(minutes=1), "victim_report", "a"),
        Report("x:3", "x", "x:a", T0, "victim_report", "a again"),
    ]
    groups = reporter_groups(reports)
    assert [[r.post_key for r in g] for g in groups] == [["x:3", "x:1"], ["x:2"]]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 50 * 60)), min_size=1, max_size=25))
def test_detector_counts_reposts_and_repeat_authors_once(posts):
    reports = [
        Report(
            f"x:{i}",
            "x",
            f"x:a{a}",
            T0 + timedelta(seconds=s),
            "victim_report",
            f"被害 {i} " + "あいうえお" * (i % 4),
            ("楽天証券",),
        )
        for i, (a, s) in enumerate(posts)
    ]
    reposts = [
        Report(
            f"x:rt{i}",
            "x",
            f"x:fan{i}",
            r.created_at,
            "victim_report",
            r.text,
            r.brokers,
            repost_of=r.post_key,
        )
        for i, r in enumerate(reports)
    ]
    now = T0 + timedelta(hours=1)
    plain = Detector().evaluate(now, reports)
    with_reposts = Detector().evaluate(now, reports + reposts)
    assert [(s.key, s.count) for s in plain] == [(s.key, s.count) for s in with_reposts]
    broker = next(s for s in plain if s.key == "楽天証券")
    authors = {r.author_key for r in reports if r.created_at >= now - broker.window}
    assert broker.count <= len(authors)
