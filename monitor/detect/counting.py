"""Counting distinct reporters per key (broker, ticker, overall) and bucket.

A reporter is a person, not a post: each author counts once in a window, reposts never count, and authors
whose texts are near-duplicates of each other (copypasta) are joined into one reporter. Only
``victim_report`` posts are counted; ``incident_discussion`` posts are kept as a context volume.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from monitor.events import OVERALL_KEY, Kind, Report

VICTIM = "victim_report"
DISCUSSION = "incident_discussion"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

KeyId = tuple[Kind, str]
OVERALL: KeyId = ("overall", OVERALL_KEY)


def bucket_index(t: datetime, bucket: timedelta) -> int:
    """Index of the bucket holding ``t`` (buckets are aligned on the Unix epoch, so on clock minutes).

    >>> from datetime import timedelta
    >>> bucket_index(datetime(1970, 1, 1, 0, 9, 59, tzinfo=UTC), timedelta(minutes=5))
    1
    """
    return (t - EPOCH) // bucket


def bucket_start(index: int, bucket: timedelta) -> datetime:
    return EPOCH + index * bucket


def report_keys(report: Report) -> list[KeyId]:
    """The keys a report feeds: overall, each broker and each ticker it names (each once).

    >>> r = Report("x:1", "x", "x:9", datetime(2025, 3, 19, tzinfo=UTC), VICTIM, "t", ("楽天証券",), ("0700.HK",))
    >>> report_keys(r)
    [('overall', 'overall'), ('broker', '楽天証券'), ('ticker', '0700.HK')]
    """
    keys: list[KeyId] = [OVERALL]
    keys += [("broker", b) for b in dict.fromkeys(report.brokers)]
    keys += [("ticker", t) for t in dict.fromkeys(report.tickers)]
    return keys


def counts_as_reporter(report: Report) -> bool:
    return report.label == VICTIM and not report.is_repost


def reporter_groups(
    reports: Sequence[Report], neighbours: Mapping[str, Sequence[str]] | None = None
) -> list[list[Report]]:
    """Group counted reports (victim, not repost) into distinct reporters, earliest group first.

    Two reports belong to one reporter when they share an author, or when their texts are near-duplicates
    (``neighbours`` maps a post key to its near-duplicate post keys); links only count inside ``reports``.

    >>> t = datetime(2025, 3, 19, tzinfo=UTC)
    >>> rs = [Report("x:1", "x", "x:a", t, VICTIM, "p"), Report("x:2", "x", "x:a", t, VICTIM, "q"),
    ...       Report("x:3", "x", "x:b", t, VICTIM, "p"), Report("x:4", "x", "x:c", t, VICTIM, "r", repost_of="1")]
    >>> len(reporter_groups(rs)), len(reporter_groups(rs, {"x:1": ["x:3"], "x:3": ["x:1"]}))
    (2, 1)
    """
    counted = [r for r in reports if r.label == VICTIM and r.repost_of is None]  # counts_as_reporter, inlined
    # Union-find over authors (each author is one reporter; near-duplicate texts join two authors). This
    # runs for every key and window of every detector cycle, so it is written out flat.
    parent: dict[str, str] = {r.author_key: r.author_key for r in counted}
    joined = False
    if neighbours and len(parent) > 1:
        present = {r.post_key: r.author_key for r in counted}
        for r in counted:
            links = neighbours.get(r.post_key)
            if not links:
                continue
            a = r.author_key
            for other in links:
                b = present.get(other)
                if b is None or b == a:
                    continue
                ra = a
                while parent[ra] != ra:
                    ra = parent[ra]
                rb = b
                while parent[rb] != rb:
                    rb = parent[rb]
                if ra != rb:
                    joined = True
                    if ra < rb:
                        parent[rb] = ra
                    else:
                        parent[ra] = rb
                parent[a] = parent[b] = min(ra, rb)  # compress the two paths just walked
    groups: dict[str, list[Report]] = {}
    for r in sorted(counted, key=_time_order):
        root = r.author_key
        if joined:
            while parent[root] != root:
                root = parent[root]
        groups.setdefault(root, []).append(r)
    return sorted(groups.values(), key=_group_order)


def _time_order(r: Report) -> tuple[datetime, str]:
    return (r.created_at, r.post_key)


def _group_order(g: list[Report]) -> tuple[datetime, str]:
    return (g[0].created_at, g[0].post_key)


def distinct_reporters(
    reports: Sequence[Report], neighbours: Mapping[str, Sequence[str]] | None = None
) -> int:
    """Number of distinct reporters among ``reports`` (see :func:`reporter_groups`)."""
    return len(reporter_groups(reports, neighbours))


def by_key(reports: Iterable[Report]) -> dict[KeyId, list[Report]]:
    """Reports (victim and discussion) grouped by the keys they feed, each list in time order."""
    out: dict[KeyId, list[Report]] = {}
    for r in sorted(reports, key=lambda r: (r.created_at, r.post_key)):
        for k in report_keys(r):
            out.setdefault(k, []).append(r)
    return out


def bucket_counts(
    reports: Iterable[Report], bucket: timedelta, neighbours: Mapping[str, Sequence[str]] | None = None
) -> dict[KeyId, dict[int, int]]:
    """Distinct reporters per key and bucket index (only buckets with at least one reporter appear).

    >>> t = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    >>> rs = [Report("x:1", "x", "x:a", t, VICTIM, "p", ("SBI証券",)),
    ...       Report("x:2", "x", "x:a", t + timedelta(minutes=1), VICTIM, "q", ("SBI証券",)),
    ...       Report("x:3", "x", "x:b", t + timedelta(minutes=6), VICTIM, "r")]
    >>> counts = bucket_counts(rs, timedelta(minutes=5))
    >>> sorted(counts[("overall", "overall")].values()), sorted(counts[("broker", "SBI証券")].values())
    ([1, 1], [1])
    """
    per: dict[KeyId, dict[int, list[Report]]] = {}
    for r in reports:
        if not counts_as_reporter(r):
            continue
        b = bucket_index(r.created_at, bucket)
        for k in report_keys(r):
            per.setdefault(k, {}).setdefault(b, []).append(r)
    return {k: {b: distinct_reporters(rs, neighbours) for b, rs in sorted(d.items())} for k, d in per.items()}


def top_values(values: Iterable[str], limit: int = 5) -> tuple[str, ...]:
    """Most frequent first, ties in order of first appearance.

    >>> top_values(["b", "a", "a", "c", "b", "a"], 2)
    ('a', 'b')
    """
    items = list(values)
    counts = Counter(items)
    first: dict[str, int] = {}
    for i, v in enumerate(items):
        first.setdefault(v, i)
    return tuple(sorted(counts, key=lambda v: (-counts[v], first[v]))[:limit])
