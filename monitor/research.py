"""Read-side helpers for researchers that need the detector's own logic: the per-bucket series of distinct
reporters the detector saw for a key, with the baseline's expected values from the stored detector state.

Counting is :mod:`monitor.detect.counting` (the same reporter grouping, reposts and near-duplicates
collapsed); nothing here re-implements it. ``query --counts`` and the API's ``/api/counts`` both call
:func:`count_series`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.analyze import load_reports
from monitor.detect.config import DetectConfig
from monitor.detect.counting import (
    VICTIM,
    bucket_index,
    bucket_start,
    counts_as_reporter,
    report_keys,
    reporter_groups,
)
from monitor.detect.dedup import NearDuplicates
from monitor.detect.detector import Detector
from monitor.errors import InputError, MonitorError
from monitor.events import OVERALL_KEY
from storage.models import Annotation, Post, StateEntry

MAX_BUCKETS = 20_000  # a series longer than this is a mistake (1m buckets over a year), not a chart
DEFAULT_SPAN = timedelta(days=7)


def parse_key(key: str) -> tuple[str, str]:
    """``broker:NAME``, ``ticker:CODE`` or ``overall`` as (kind, value).

    >>> parse_key("broker:楽天証券"), parse_key("overall")
    (('broker', '楽天証券'), ('overall', 'overall'))
    """
    if key == OVERALL_KEY:
        return ("overall", OVERALL_KEY)
    kind, sep, value = key.partition(":")
    if not sep or kind not in ("broker", "ticker") or not value.strip():
        raise InputError(f"key {key[:60]!r} is not a count key: write broker:NAME, ticker:CODE or overall")
    return (kind, value.strip())


@dataclass(frozen=True)
class CountPoint:
    t: datetime
    count: int
    expected: float | None

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t.isoformat(), "count": self.count,
                "expected": None if self.expected is None else round(self.expected, 4)}


def latest_model(session: Session) -> str | None:
    """The model of the newest annotation: the one whose labels the detector is counting now."""
    return session.exec(select(Annotation.model).order_by(Annotation.id.desc()).limit(1)).first()  # type: ignore[union-attr]


def stored_detector(session: Session, scope: str | None = None) -> Detector | None:
    """The detector state saved by the pipeline (``scope``: live, replay, demo ...; default the newest)."""
    stmt = select(StateEntry).where(StateEntry.key.like("detector:%"))  # type: ignore[attr-defined]
    if scope:
        stmt = stmt.where(StateEntry.key == f"detector:{scope}")
    entry = session.exec(stmt.order_by(StateEntry.updated_at.desc()).limit(1)).first()  # type: ignore[attr-defined]
    if entry is None or not entry.value:
        return None
    try:
        return Detector.from_state(entry.value)
    except (MonitorError, ValueError, KeyError, TypeError):  # an unreadable state only loses "expected"
        return None


def count_series(session: Session, key: str, bucket: timedelta, since: datetime | None = None,
                 until: datetime | None = None, *, scope: str | None = None) -> list[CountPoint]:
    """Distinct reporters of victim reports per bucket for ``key``, every bucket in [since, until) listed.

    ``expected`` is the stored baseline's expectation for each bucket (summed over the detector's own
    buckets), or None where there is no stored state, the key has no model yet, or ``bucket`` is not a
    multiple of the detector's bucket.
    """
    kind, value = parse_key(key)
    if bucket <= timedelta(0):
        raise InputError("bucket must be positive, e.g. 5m, 1h or 1d")
    if until is None:
        newest = session.exec(select(sa.func.max(Post.created_at))).one()
        until = (newest + bucket) if newest is not None else datetime.now(UTC)
    since = since or until - DEFAULT_SPAN
    if since >= until:
        raise InputError("since must be before until")
    first, last = bucket_index(since, bucket), bucket_index(until - timedelta(microseconds=1), bucket)
    if last - first + 1 > MAX_BUCKETS:
        raise InputError(f"{last - first + 1:,} buckets requested, over the {MAX_BUCKETS:,} limit: "
                         "use a larger bucket or a shorter time range")
    model = latest_model(session)
    # Only victim reports count, and only those naming the key: narrowed in SQL, then counted by detect.
    mention = (kind, value) if kind != "overall" else None
    reports = load_reports(session, model, since, until, labels=(VICTIM,), mention=mention) if model else []
    keyed = [r for r in reports if r.created_at < until and counts_as_reporter(r) and (kind, value) in report_keys(r)]
    detector = stored_detector(session, scope)
    neighbours: dict[str, list[str]] = {}
    if keyed:
        config = detector.config if detector else DetectConfig()  # the detector's own dedup settings
        dedup = _near_duplicates(config.minhash_threshold, config.minhash_perm, config.shingle_chars)
        neighbours = _neighbours_by_text(dedup, keyed)
    per_bucket: dict[int, list[Any]] = {}
    for r in keyed:
        per_bucket.setdefault(bucket_index(r.created_at, bucket), []).append(r)
    counts = {b: len(reporter_groups(rs, neighbours)) for b, rs in per_bucket.items()}
    expected_of = _expected_function(detector, kind, value, bucket)
    return [CountPoint(bucket_start(b, bucket), counts.get(b, 0), expected_of(b)) for b in range(first, last + 1)]


def _neighbours_by_text(dedup: NearDuplicates, reports: list[Any]) -> dict[str, list[str]]:
    """``dedup.neighbours`` of the reports' post keys, worked out once per distinct text.

    Reports often repeat a text word for word (copypasta, templates), and whether two posts are near
    duplicates depends on their texts alone: identical texts always are (their signatures are equal), and
    the LSH candidates and Jaccard estimate of two texts do not depend on which posts carry them. So each
    distinct text is hashed and compared once, keyed by a hash of the text (its signature cached under that
    key serves every post and every later series that repeats it), and the answer is spread to its posts.
    """
    keys_of: dict[str, list[str]] = {}
    for r in reports:
        keys = keys_of.setdefault(r.text, [])
        if r.post_key not in keys:
            keys.append(r.post_key)
    texts = list(keys_of)
    text_keys = ["text:" + hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for t in texts]
    near = dedup.neighbours(text_keys, texts)
    text_of = dict(zip(text_keys, texts, strict=True))
    out: dict[str, list[str]] = {}
    for text_key, text in zip(text_keys, texts, strict=True):
        same = keys_of[text]
        linked = [k for other in near[text_key] for k in keys_of[text_of[other]]]
        for key in same:
            out[key] = sorted([k for k in same if k != key] + linked)
    return out


@functools.lru_cache(maxsize=4)
def _near_duplicates(threshold: float, num_perm: int, shingle_chars: int) -> NearDuplicates:
    """One per setting, kept: building one works out the LSH layout, and its signature cache (keyed by post)
    serves the next series too."""
    return NearDuplicates(threshold, num_perm, shingle_chars)


def _expected_function(detector: Detector | None, kind: str, value: str, bucket: timedelta) -> Any:
    if detector is None:
        return lambda _b: None
    model = detector.baseline((kind, value))  # type: ignore[arg-type]
    step = detector.bucket
    if model is None or bucket % step:
        return lambda _b: None
    per = bucket // step
    config = detector.config
    return lambda b: sum(model.expected(b * per + i, config) for i in range(per))
