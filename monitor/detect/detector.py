"""The report-stream detector: distinct reporters per key, scored against a baseline, with hysteresis.

The pipeline calls :meth:`Detector.evaluate` every cycle with the reports of the last ``lookback``. Each
call first closes the buckets that ended since the previous call - in order, each exactly once: the alert
state steps at the bucket's end and the bucket's count is learned - and then scores the windows ending at
``now``. Because state only moves at bucket ends, calling every minute or every five gives the same
baseline and the same open/close decisions (call at least once per bucket: buckets older than the lookback
are skipped, not learned).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.detect.baseline import KeyModel, next_firing, tail_score
from monitor.detect.config import DetectConfig
from monitor.detect.counting import (
    DISCUSSION,
    VICTIM,
    KeyId,
    bucket_index,
    bucket_start,
    by_key,
    counts_as_reporter,
    reporter_groups,
    top_values,
)
from monitor.detect.dedup import NearDuplicates
from monitor.errors import ConfigError, InputError
from monitor.events import Report, Signal

_KIND_ORDER = {"overall": 0, "broker": 1, "ticker": 2}
_STATE_VERSION = 1


@dataclass(frozen=True)
class WindowStat:
    window: timedelta
    count: int
    expected: float
    score: float
    groups: tuple[tuple[Report, ...], ...]  # distinct reporters, earliest first
    discussion: int
    reports: tuple[Report, ...]  # the key's counted reports in the window


def format_window(window: timedelta) -> str:
    """
    >>> format_window(timedelta(minutes=15)), format_window(timedelta(hours=6)), format_window(timedelta(minutes=90))
    ('15 min', '6 h', '90 min')
    """
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


class _KeyReports:
    """One key's reports in time order, with their times for bisecting windows."""

    __slots__ = ("reports", "times")

    def __init__(self, reports: list[Report]) -> None:
        self.reports = reports
        self.times = [r.created_at for r in reports]

    def between(self, start: datetime, end: datetime, inclusive_end: bool) -> list[Report]:
        lo = bisect.bisect_left(self.times, start)
        hi = bisect.bisect_right(self.times, end) if inclusive_end else bisect.bisect_left(self.times, end)
        return self.reports[lo:hi]


class Detector:
    """Spike detector over analyzed reports; state is JSON-serializable (:meth:`to_state`).

    >>> from datetime import UTC
    >>> d = Detector()
    >>> t0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    >>> d.evaluate(t0, [])
    []
    >>> texts = ["楽天証券で勝手に株を売られた", "楽天の口座で知らない中国株を買われてる", "ログイン履歴に覚えのない端末",
    ...          "保有株が全部売却されていた、楽天", "楽天証券 不正ログインされて米国株が消えた"]
    >>> reports = [Report(f"x:{i}", "x", f"x:user{i}", t0 + timedelta(minutes=61 + i), "victim_report",
    ...                   text, ("楽天証券",)) for i, text in enumerate(texts)]
    >>> signals = d.evaluate(t0 + timedelta(minutes=70), reports)
    >>> [(s.kind, s.key, s.count, s.firing) for s in signals]
    [('overall', 'overall', 5, True), ('broker', '楽天証券', 5, True)]
    >>> signals[1].explanation
    '5 distinct reporters in 15 min vs 0.0076 expected (score 12.7)'
    """

    def __init__(self, config: DetectConfig | None = None) -> None:
        self.config = config or DetectConfig()
        # Every key ever seen has a model, but a bucket close steps only the keys that saw reports, fire,
        # are pending or hold buckets (_stepped); the others owe quiet buckets, learned when next read
        # (KeyModel.catch_up), so a close costs what the window holds, not every ticker ever named.
        self._models: dict[KeyId, KeyModel] = {}
        self._holding: set[KeyId] = set()  # keys whose models hold buckets back (pending)
        self._episodes: dict[KeyId, datetime] = {}  # firing key -> first report of its episode
        self._first_bucket: int | None = None
        self._last_closed: int | None = None
        self._dedup = NearDuplicates(
            self.config.minhash_threshold, self.config.minhash_perm, self.config.shingle_chars
        )
        # Reporter groups by the exact reports grouped (ids of the objects, which the groups hold, so an id
        # cannot be reused while its entry lives). Near-duplicate links depend on the pair of texts alone, so
        # the groups of one set of reports are the same in every call: windows of several lengths, the
        # close of a bucket and the signals after it, and successive calls over a quiet key repeat the
        # same sets. Entries not used in the previous call are dropped.
        self._groups: dict[tuple[int, ...], tuple[tuple[Report, ...], ...]] = {}
        self._groups_before: dict[tuple[int, ...], tuple[tuple[Report, ...], ...]] = {}

    # -- public ---------------------------------------------------------------------------------------
    @property
    def bucket(self) -> timedelta:
        return timedelta(minutes=self.config.bucket_minutes)

    @property
    def lookback(self) -> timedelta:
        """How far back the reports passed to :meth:`evaluate` must reach."""
        longest = max(*self.config.windows_minutes, self.config.ticker_window_minutes)
        return timedelta(minutes=longest) + self.bucket

    @property
    def firing(self) -> dict[KeyId, datetime]:
        """Keys whose alert was open at the last closed bucket, with the episode's first report time."""
        return dict(self._episodes)

    def evaluate(self, now: datetime, reports: Sequence[Report]) -> list[Signal]:
        """Close the buckets that ended before ``now``, then return one Signal per active or firing key."""
        if now.tzinfo is None:
            raise InputError("detector: `now` has no timezone; pass an aware datetime (e.g. with tzinfo=UTC)")
        bucket = self.bucket
        b_now = bucket_index(now, bucket)
        lo = now - self.lookback
        unique: dict[str, Report] = {}
        for r in reports:
            if lo <= r.created_at <= now and r.label in (VICTIM, DISCUSSION):
                unique.setdefault(r.post_key, r)
        keyed = {k: _KeyReports(v) for k, v in by_key(unique.values()).items()}
        self._groups_before, self._groups = self._groups, {}
        counted = sorted((r for r in unique.values() if counts_as_reporter(r)), key=lambda r: r.post_key)
        neighbours = self._dedup.neighbours([r.post_key for r in counted], [r.text for r in counted])

        if self._first_bucket is None or self._last_closed is None:
            self._first_bucket = b_now
            self._last_closed = b_now - 1
        first_covered = -((bucket_start(0, bucket) - lo) // bucket)  # first bucket starting at or after lo
        if first_covered > self._last_closed + 1:
            self._skip(first_covered - 1)
        for b in range(max(self._last_closed + 1, first_covered), b_now):
            self._close_bucket(b, keyed, neighbours)
        self._last_closed = max(self._last_closed, b_now - 1)
        return self._signals(now, b_now, keyed, neighbours)

    def to_state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "config": self.config.to_dict(),
            "first_bucket": self._first_bucket,
            "last_closed": self._last_closed,
            "models": [[k[0], k[1], m.to_state()] for k, m in sorted(self._models.items())],
            "episodes": [[k[0], k[1], t.isoformat()] for k, t in sorted(self._episodes.items())],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ConfigError(
                "detector state: unknown format or version; delete the stored state to start a fresh baseline"
            )
        det = cls(DetectConfig.from_dict(state["config"]))
        det._first_bucket = state["first_bucket"]
        det._last_closed = state["last_closed"]
        det._models = {(kind, key): KeyModel.from_state(m) for kind, key, m in state["models"]}
        for model in det._models.values():
            if model.last is None:  # a state from before lazy stepping: every model was stepped to here
                model.last = det._last_closed
        det._holding = {key for key, model in det._models.items() if model.held}
        det._episodes = {(kind, key): datetime.fromisoformat(t) for kind, key, t in state["episodes"]}
        return det

    # -- internals ------------------------------------------------------------------------------------
    def _assess(
        self,
        key: KeyId,
        kr: _KeyReports | None,
        end: datetime,
        last_bucket: int,
        neighbours: dict[str, list[str]],
        inclusive_end: bool,
    ) -> tuple[list[WindowStat], WindowStat | None]:
        cfg = self.config
        model = self._model(key, last_bucket)
        dispersion = model.dispersion(cfg)
        ticker_n = cfg.ticker_window_minutes // cfg.bucket_minutes
        minutes = cfg.scored_windows_minutes
        lengths = [m // cfg.bucket_minutes for m in minutes]
        expected = dict(
            zip((*lengths, ticker_n), model.expected_windows(last_bucket, [*lengths, ticker_n], cfg), strict=True)
        )

        def stat(minutes: int, n: int) -> WindowStat:
            window = timedelta(minutes=minutes)
            inside = kr.between(end - window, end, inclusive_end) if kr is not None else []
            counted = [r for r in inside if r.label == VICTIM and r.repost_of is None]  # counts_as_reporter
            groups = self._reporter_groups(counted, neighbours)
            discussion = sum(1 for r in inside if r.label == DISCUSSION and r.repost_of is None)
            return WindowStat(
                window,
                len(groups),
                expected[n],
                tail_score(len(groups), expected[n], dispersion),
                groups,
                discussion,
                tuple(counted),
            )

        stats = [stat(m, n) for m, n in zip(minutes, lengths, strict=True)]
        cluster = None
        if key[0] == "ticker":
            # The cluster window is usually one of the scored windows (6 h): the same stat, not computed twice.
            same = [s for s, m in zip(stats, minutes, strict=True) if m == cfg.ticker_window_minutes]
            cluster = same[0] if same and expected[ticker_n] == same[0].expected else stat(
                cfg.ticker_window_minutes, ticker_n)
        return stats, cluster

    def _reporter_groups(
        self, counted: list[Report], neighbours: dict[str, list[str]]
    ) -> tuple[tuple[Report, ...], ...]:
        """:func:`reporter_groups` of counted reports, remembered by the set of reports (see __init__)."""
        if not counted:
            return ()
        ids = tuple(map(id, counted))
        groups = self._groups.get(ids)
        if groups is None:
            groups = self._groups_before.get(ids)
            if groups is None:
                groups = tuple(tuple(g) for g in reporter_groups(counted, neighbours))
            self._groups[ids] = groups
        return groups

    def _decide(
        self, key: KeyId, stats: list[WindowStat], cluster: WindowStat | None, bucket: int
    ) -> tuple[bool, WindowStat, str]:
        """(firing, the window to report, the rule that fired it when the score alone did not: "cluster",
        "sparse" or "")."""
        cfg = self.config
        warm = self._first_bucket is not None and bucket - self._first_bucket >= cfg.warmup_buckets
        openers = [s for s in stats if s.score >= cfg.threshold and s.count >= cfg.min_reporters]
        sparse = self._sparse_opener(stats)
        cluster_ok = cluster is not None and cluster.count >= cfg.ticker_min_reporters
        best = max(stats, key=lambda s: s.score)  # max keeps the first (shortest) window on ties
        can_open = warm and (bool(openers) or sparse is not None or cluster_ok)
        can_hold = best.score >= cfg.release_threshold or cluster_ok
        firing = next_firing(key in self._episodes, can_open, can_hold)
        if firing and best.score < cfg.threshold:
            if cluster is not None and cluster_ok:
                return firing, cluster, "cluster"
            if sparse is not None:
                return firing, sparse, "sparse"
        return firing, best, ""

    def baseline(self, key: KeyId) -> KeyModel | None:
        """The stored model of ``key`` as of the last closed bucket (None for a key never seen)."""
        model = self._models.get(key)
        if model is not None and self._last_closed is not None:
            model.catch_up(self._last_closed + 1, self.config)
        return model

    def _model(self, key: KeyId, bucket: int) -> KeyModel:
        """The key's model having learned every bucket before ``bucket``, or for a key never seen before one
        that saw zeros since the detector started."""
        model = self._models.get(key)
        if model is None:
            return KeyModel.quiet_since(self._first_bucket or bucket, bucket, self.config)
        model.catch_up(bucket, self.config)
        return model

    def _skip(self, last: int) -> None:
        """Buckets up to ``last`` left the lookback before they were closed (no call for a while): they are
        skipped, not learned. Models learn the quiet buckets they owe before the gap, then stand after it."""
        closed = last if self._last_closed is None else self._last_closed
        for model in self._models.values():
            if model.last is not None and model.last < last:
                model.catch_up(closed + 1, self.config)
                model.last = last

    def _sparse_opener(self, stats: list[WindowStat]) -> WindowStat | None:
        """The sparse rule: the sparse window holds ``sparse_min_reporters`` (and ``min_reporters``) distinct
        reporters where at most ``sparse_max_expected`` were expected."""
        cfg = self.config
        if cfg.sparse_max_expected <= 0:
            return None
        window = timedelta(minutes=cfg.sparse_window_minutes)
        s = next(s for s in stats if s.window == window)
        enough = s.count >= max(cfg.sparse_min_reporters, cfg.min_reporters)
        return s if enough and s.expected <= cfg.sparse_max_expected else None

    def _pending(self, stats: list[WindowStat], bucket: int) -> bool:
        """A sparse key is pending while some window holds ``min_reporters`` distinct reporters scoring at
        least the release threshold: it may be the start of a slow build, so its buckets are held back from the
        baseline until the key calms down (learned then), opens an alert (learned clipped) or they leave
        every window (learned). Not before the detector has run ``prior_buckets``: until then the baseline
        is mostly the prior's guess and must learn what it sees."""
        cfg = self.config
        if self._first_bucket is None or bucket - self._first_bucket < cfg.prior_buckets:
            return False
        longest = max(stats, key=lambda s: s.window)
        return longest.expected <= cfg.pending_max_expected and any(
            s.count >= cfg.min_reporters and s.score >= cfg.release_threshold for s in stats
        )

    def _may_fire(self, key: KeyId, kr: _KeyReports, end: datetime) -> bool:
        """Whether a key that is not firing could open or turn pending at ``end``: every rule needs
        ``min_reporters`` distinct reporters in a window (``ticker_min_reporters`` for the cluster rule), and
        no window holds more reporters than the longest holds reports. Most tickers are named once in six
        hours; assessing only the others keeps a bucket's close proportional to what can change."""
        cfg = self.config
        need = cfg.min_reporters if key[0] != "ticker" else min(cfg.min_reporters, cfg.ticker_min_reporters)
        longest = timedelta(minutes=max(*cfg.scored_windows_minutes, cfg.ticker_window_minutes))
        counted = 0
        for r in kr.between(end - longest, end, False):
            if r.label == VICTIM and r.repost_of is None:
                counted += 1
                if counted >= need:
                    return True
        return False

    def _close_bucket(
        self, b: int, keyed: dict[KeyId, _KeyReports], neighbours: dict[str, list[str]]
    ) -> None:
        cfg = self.config
        bucket = self.bucket
        end = bucket_start(b + 1, bucket)
        horizon = end - self.lookback + bucket
        active = {k for k, kr in keyed.items() if kr.between(horizon, end, False) and self._may_fire(k, kr, end)}
        pending = set()
        for key in sorted(active | set(self._episodes)):
            stats, cluster = self._assess(key, keyed.get(key), end, b, neighbours, False)
            firing, shown, _ = self._decide(key, stats, cluster, b)
            if self._pending(stats, b):
                pending.add(key)
            if firing and key not in self._episodes:
                self._episodes[key] = shown.groups[0][0].created_at if shown.groups else end
            elif not firing:
                self._episodes.pop(key, None)
        start = bucket_start(b, bucket)
        in_bucket = {k for k, kr in keyed.items() if kr.between(start, end, False)}
        longest = max(cfg.scored_windows_minutes) // cfg.bucket_minutes
        stepped = in_bucket | ((set(self._episodes) | pending | self._holding) & self._models.keys())
        for key in sorted(stepped):
            model = self._models.get(key) or self._models.setdefault(key, self._model(key, b))
            model.catch_up(b, cfg)
            kr = keyed.get(key)
            if kr is None:
                count = 0
            else:
                inside = kr.between(start, end, False)
                count = len(self._reporter_groups(
                    [r for r in inside if r.label == VICTIM and r.repost_of is None], neighbours))
            mu = model.expected(b, cfg)
            if key in self._episodes:  # do not learn from a bucket the alert flags as anomalous
                model.release(cfg, clip=True)
                model.learn(b, model.clip(count, mu, cfg), mu, cfg)
            elif key in pending:  # maybe the start of a slow build: learn it once it proves normal
                model.hold(b, count, mu)
                model.release(cfg, before=b - longest + 1)  # what left every window was normal
            else:
                model.release(cfg)
                model.learn(b, count, mu, cfg)
            if model.held:
                self._holding.add(key)
            else:
                self._holding.discard(key)

    def _signals(
        self, now: datetime, b_now: int, keyed: dict[KeyId, _KeyReports], neighbours: dict[str, list[str]]
    ) -> list[Signal]:
        cfg = self.config
        horizon = now - self.lookback + self.bucket
        active = {k for k, kr in keyed.items() if kr.between(horizon, now, True)}
        out = []
        for key in sorted(active | set(self._episodes), key=lambda k: (_KIND_ORDER[k[0]], k[1])):
            stats, cluster = self._assess(key, keyed.get(key), now, b_now, neighbours, True)
            firing, shown, rule = self._decide(key, stats, cluster, b_now)
            if key in self._episodes:
                first_seen: datetime | None = self._episodes[key]
            else:
                first_seen = shown.groups[0][0].created_at if shown.groups else None
            explanation = (
                f"{shown.count} distinct reporter{'' if shown.count == 1 else 's'} in {format_window(shown.window)} "
                f"vs {shown.expected:.2g} expected (score {shown.score:.1f})"
            )
            if rule == "sparse":
                explanation += (
                    f"; sparse rule: {shown.count} distinct reporters within {format_window(shown.window)} "
                    f"where at most {cfg.sparse_max_expected:g} are expected"
                )
            if rule == "cluster":
                explanation += (
                    f"; ticker named by {shown.count} distinct reporters within "
                    f"{format_window(shown.window)} (cluster rule: suspected target of unauthorized buying)"
                )
            names_t = [t for r in shown.reports for t in dict.fromkeys(r.tickers) if (key[0], t) != key]
            names_b = (
                [b for r in shown.reports for b in dict.fromkeys(r.brokers)] if key[0] != "broker" else []
            )
            out.append(
                Signal(
                    kind=key[0],
                    key=key[1],
                    at=now,
                    window=shown.window,
                    window_start=now - shown.window,
                    count=shown.count,
                    expected=shown.expected,
                    score=shown.score,
                    firing=firing,
                    tickers=top_values(names_t),
                    brokers=top_values(names_b),
                    sample_post_ids=_samples(shown.groups, cfg.max_samples),
                    discussion_count=shown.discussion,
                    first_seen=first_seen,
                    explanation=explanation,
                )
            )
        return out


def _samples(groups: Sequence[Sequence[Report]], limit: int) -> tuple[str, ...]:
    """The first reporter (how it started) and the newest ones (what an update adds), in time order.

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 19, tzinfo=UTC)
    >>> gs = [[Report(f"x:{i}", "x", f"x:u{i}", t, "victim_report", "t")] for i in range(7)]
    >>> _samples(gs, 4), _samples(gs[:2], 4), _samples(gs, 1)
    (('x:0', 'x:4', 'x:5', 'x:6'), ('x:0', 'x:1'), ('x:6',))
    """
    if limit <= 0 or not groups:
        return ()
    if limit == 1:
        return (groups[-1][0].post_key,)
    chosen = [groups[0], *groups[1:][-(limit - 1) :]]
    return tuple(g[0].post_key for g in chosen)


def run_detector(
    reports: list[Report], times: list[datetime], detector: Detector | None = None
) -> list[list[Signal]]:
    """Drive a detector over a recorded stream: at each time, pass the reports of its lookback (a helper
    for replays, benchmarks and tests; the live pipeline queries its store instead)."""
    det = detector or Detector()
    ordered = sorted(reports, key=lambda r: r.created_at)
    stamps = [r.created_at for r in ordered]
    out = []
    for now in times:
        lo = bisect.bisect_left(stamps, now - det.lookback)
        hi = bisect.bisect_right(stamps, now)
        out.append(det.evaluate(now, ordered[lo:hi]))
    return out
