"""The detector core shared by report streams and plain count series.

* :class:`KeyModel` - what one key (a broker, a ticker, overall, a CSV series) usually sees per bucket: a
  decayed mean rate, hour-of-day and day-of-week factors once enough history exists, and an optional
  overdispersion learned from past residuals. Buckets that belong to an open alert are learned only up to
  ``clip_sd`` standard deviations above expectation, so a spike does not teach the baseline that spikes
  are normal.
* :func:`tail_score` - how surprising a window count is: ``-log10 P(X >= observed)`` for X negative
  binomial with the expected mean (Poisson when the dispersion is 0).
* :func:`next_firing` - open / hold / release with hysteresis (hold while the score stays above release).

Everything is a pure function of its arguments and the JSON-serializable state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import betainc, gammainc

from monitor.detect.config import DetectConfig

MAX_SCORE = 300.0
_RESCALE_AT = 400.0
_SETTLE_BUCKETS = 24  # exponent (in half-lives) after which the growing weights are renormalised


def tail_score(observed: float, expected: float, dispersion: float = 0.0) -> float:
    """``-log10 P(X >= observed)`` with X ~ NegBin(mean=expected, var=expected + dispersion*expected^2).

    >>> round(tail_score(7, 0.4), 1)  # 7 reporters where 0.4 were expected
    6.6
    >>> tail_score(0, 0.4)
    0.0
    >>> tail_score(300, 100, 0.1) < tail_score(300, 100, 0.0)  # overdispersion makes a spike less surprising
    True
    """
    if observed <= 0:
        return 0.0
    expected = max(float(expected), 1e-12)
    if dispersion <= 0:
        p = float(gammainc(observed, expected))  # P(Poisson(expected) >= observed) for observed > 0
    else:
        r = 1.0 / dispersion
        p = float(betainc(observed, r, expected / (r + expected)))
    if p > 0:
        return min(MAX_SCORE, max(0.0, -math.log10(p)))
    # below double precision: the point probability is a close lower bound of the tail
    return min(MAX_SCORE, -_log_pmf(observed, expected, dispersion) / math.log(10))


def _log_pmf(k: float, mean: float, dispersion: float) -> float:
    if dispersion <= 0:
        return k * math.log(mean) - mean - math.lgamma(k + 1)
    r = 1.0 / dispersion
    return (
        math.lgamma(k + r)
        - math.lgamma(r)
        - math.lgamma(k + 1)
        + r * math.log(r / (r + mean))
        + k * math.log(mean / (r + mean))
    )


def slot_of(bucket: int, config: DetectConfig) -> tuple[int, int]:
    """(hour of day, day of week with Monday = 0) of a bucket index, in the configured local offset.

    >>> slot_of(0, DetectConfig(utc_offset_hours=0))  # 1970-01-01 00:00 UTC was a Thursday
    (0, 3)
    """
    local = bucket * config.bucket_minutes * 60 + int(config.utc_offset_hours * 3600)
    return (local // 3600) % 24, (local // 86400 + 3) % 7


class KeyModel:
    """Baseline of one key. Weights grow by 2 per half-life instead of old sums shrinking: O(1) per bucket.

    >>> cfg = DetectConfig(prior_rate=0.01, prior_buckets=100, half_life_days=0)
    >>> m = KeyModel()
    >>> m.expected(0, cfg)
    0.01
    >>> for b in range(100):
    ...     m.learn(b, 1 if b % 10 == 0 else 0, m.expected(b, cfg), cfg)
    >>> round(m.expected(100, cfg), 3)  # (100 * 0.01 + 10) / (100 + 100)
    0.055
    """

    __slots__ = ("ref", "s", "n", "sh", "nh", "sd", "nd", "ra", "rb", "learned", "held", "last")

    def __init__(self) -> None:
        self.ref: int | None = None  # bucket whose weight is 1
        self.s = 0.0  # weighted sum of counts
        self.n = 0.0  # weighted number of buckets
        self.sh = [0.0] * 24
        self.nh = [0.0] * 24
        self.sd = [0.0] * 7
        self.nd = [0.0] * 7
        self.ra = 0.0  # weighted sum of (x - mu)^2 - mu: excess variance
        self.rb = 0.0  # weighted sum of mu^2
        self.learned = 0  # buckets learned, unweighted (decides when seasonality starts)
        self.held: list[list[float]] = []  # [bucket, count, mu] closed while the key was pending, not learned yet
        self.last: int | None = None  # the newest bucket learned or held; quiet buckets after it are owed

    def _weight(self, bucket: int, config: DetectConfig) -> float:
        if config.half_life_days <= 0 or self.ref is None:
            return 1.0
        hl = config.half_life_days * 1440 / config.bucket_minutes
        # Capped: after a gap of years (2 ** 1200 overflows) the old history weighs ~0 either way, and
        # learn() rescales as soon as the weight passes _RESCALE_AT.
        return 2.0 ** min((bucket - self.ref) / hl, 900.0)

    def expected(self, bucket: int, config: DetectConfig) -> float:
        """Expected count in ``bucket`` (per bucket, not per window)."""
        w = self._weight(bucket, config)
        prior_n = config.prior_buckets * w
        rate = (self.s + config.prior_rate * prior_n) / (self.n + prior_n)
        if not config.seasonal or self.learned < config.seasonal_min_days * 1440 / config.bucket_minutes:
            return rate
        h, d = slot_of(bucket, config)
        # pseudo-buckets worth at least seasonal_shrink_reports reports: at 0.001 reports a bucket, one
        # report in an hour slot must not make that hour look seven times busier than the others
        k = max(config.seasonal_shrink, config.seasonal_shrink_reports / max(rate, 1e-12)) * w
        fh = (self.sh[h] + k * rate) / ((self.nh[h] + k) * rate)
        # a day-of-week slot holds 24x the buckets of an hour slot: shrink it as strongly per bucket
        fd = (self.sd[d] + 24 * k * rate) / ((self.nd[d] + 24 * k) * rate)
        return rate * fh * fd

    def expected_windows(self, last_bucket: int, lengths: list[int], config: DetectConfig) -> list[float]:
        """Expected totals of windows of ``lengths`` buckets ending with ``last_bucket`` (one rate, today's
        estimate, spread over the buckets by their seasonal factors): the fast path of summing
        :meth:`expected` over each window.

        >>> cfg = DetectConfig(prior_rate=0.01)
        >>> KeyModel().expected_windows(1000, [3, 12], cfg)
        [0.03, 0.12]
        """
        longest = max(lengths)
        if not config.seasonal or self.learned < config.seasonal_min_days * 1440 / config.bucket_minutes:
            rate = self.expected(last_bucket, config)
            return [rate * n for n in lengths]
        factors: dict[tuple[int, int], float] = {}
        cum = [0.0]
        for j in range(longest):
            slot = slot_of(last_bucket - j, config)
            if slot not in factors:
                factors[slot] = self.expected(last_bucket - j, config)
            cum.append(cum[-1] + factors[slot])
        return [cum[n] for n in lengths]

    def dispersion(self, config: DetectConfig) -> float:
        if not config.learn_dispersion or self.rb <= 0:
            return config.dispersion
        return min(4.0, max(config.dispersion, self.ra / self.rb))

    def clip(self, count: float, mu: float, config: DetectConfig) -> float:
        """The most of ``count`` a flagged bucket may teach: ``mu + clip_sd * sd``."""
        sd = math.sqrt(mu + self.dispersion(config) * mu * mu)
        return min(count, mu + config.clip_sd * sd)

    def learn(self, bucket: int, count: float, mu: float, config: DetectConfig) -> None:
        """Add one closed bucket (``mu``: what was expected of it before learning)."""
        if self.ref is None:
            self.ref = bucket
        w = self._weight(bucket, config)
        if config.half_life_days > 0 and math.log2(w) > _RESCALE_AT:
            self._rescale(1.0 / w)
            self.ref = bucket
            w = 1.0
        h, d = slot_of(bucket, config)
        self.s += w * count
        self.n += w
        self.sh[h] += w * count
        self.nh[h] += w
        self.sd[d] += w * count
        self.nd[d] += w
        if self.learned >= _SETTLE_BUCKETS:  # the first predictions are mostly prior: their residuals mislead
            self.ra += w * ((count - mu) ** 2 - mu)
            self.rb += w * mu * mu
        self.learned += 1
        self.last = bucket if self.last is None else max(self.last, bucket)

    def catch_up(self, bucket: int, config: DetectConfig) -> None:
        """Learn the quiet buckets owed since :attr:`last`, up to ``bucket`` (exclusive).

        A detector steps only the keys that saw reports (or are firing or pending); every other key owes
        one empty bucket per close, learned here in one step when the key is next read. Zeros add nothing
        to the sums, only to the weights, so a run of them is a sum of weights per hour and day slot - the
        same baseline as learning them one by one (up to float rounding), in O(1) Python calls instead of
        one per bucket per idle key. The excess-variance sums need each bucket's expectation, so with
        ``learn_dispersion`` the buckets are learned one at a time; without it they are not read (a quiet
        run leaves them as they were).

        >>> cfg = DetectConfig(prior_rate=0.01, prior_buckets=100)
        >>> stepped, lazy = KeyModel(), KeyModel()
        >>> for m in (stepped, lazy):
        ...     m.learn(0, 2, m.expected(0, cfg), cfg)
        >>> for b in range(1, 5000):
        ...     stepped.learn(b, 0, stepped.expected(b, cfg), cfg)
        >>> lazy.catch_up(5000, cfg)
        >>> lazy.last, abs(lazy.expected(5000, cfg) / stepped.expected(5000, cfg) - 1) < 1e-9
        (4999, True)
        """
        if self.last is None or bucket - 1 <= self.last:
            return
        first, count = self.last + 1, bucket - 1 - self.last
        hl = config.half_life_days * 1440 / config.bucket_minutes if config.half_life_days > 0 else 0.0
        if config.learn_dispersion or count <= 4 or (hl and (bucket - (self.ref or first)) / hl > _RESCALE_AT):
            for b in range(first, bucket):  # one at a time: the dispersion sums need each mu; or a rescale
                self.learn(b, 0.0, self.expected(b, config) if config.learn_dispersion else 0.0, config)
            return
        if self.ref is None:
            self.ref = first
        buckets = np.arange(first, bucket, dtype=np.int64)
        weights = np.exp2(np.minimum((buckets - self.ref) / hl, 900.0)) if hl else np.ones(count)
        local = buckets * (config.bucket_minutes * 60) + int(config.utc_offset_hours * 3600)
        by_hour = np.bincount((local // 3600) % 24, weights, minlength=24)
        by_day = np.bincount((local // 86400 + 3) % 7, weights, minlength=7)
        self.n += float(weights.sum())
        for i in range(24):
            self.nh[i] += float(by_hour[i])
        for i in range(7):
            self.nd[i] += float(by_day[i])
        self.learned += count
        self.last = bucket - 1

    @classmethod
    def quiet_since(cls, first: int, bucket: int, config: DetectConfig) -> KeyModel:
        """A model for a key first seen at ``bucket`` by a detector running since ``first``: every bucket
        before it held zero reports for this key, so a new broker does not start from the prior alone (it
        would learn its own first incident as normal within hours).

        >>> cfg = DetectConfig(prior_rate=0.002, prior_buckets=288, half_life_days=0)
        >>> round(KeyModel.quiet_since(0, 288 * 11, cfg).expected(288 * 11, cfg), 6)  # 0.576 / (11 + 1) days
        0.000167
        """
        m = cls()
        m.last = bucket - 1
        quiet = max(0, bucket - first)
        if quiet:
            m.ref = bucket
            if config.half_life_days > 0:
                r = 2.0 ** (-config.bucket_minutes / (config.half_life_days * 1440))
                m.n = r * (1 - r**quiet) / (1 - r)
            else:
                m.n = float(quiet)
        return m

    def hold(self, bucket: int, count: float, mu: float) -> None:
        """Keep a bucket closed while the key is pending (it may be the start of an incident) unlearned."""
        self.held.append([bucket, count, mu])
        self.last = bucket if self.last is None else max(self.last, bucket)

    def release(self, config: DetectConfig, *, clip: bool = False, before: int | None = None) -> None:
        """Learn the held buckets (those before bucket ``before`` only, when given): in full when the key
        calmed down or they left every scored window, clipped when the key turned into an alert.

        >>> cfg = DetectConfig(prior_rate=0.01, prior_buckets=100, half_life_days=0)
        >>> m = KeyModel()
        >>> m.hold(0, 3, 0.01); m.hold(1, 0, 0.01)
        >>> m.expected(2, cfg), len(m.held)  # held buckets do not move the baseline
        (0.01, 2)
        >>> m.release(cfg, clip=True)  # an alert: 3 is learned as 0.01 + 2 sd = 0.21
        >>> round(m.expected(2, cfg), 4), m.held  # (100 * 0.01 + 0.21 + 0) / 102
        (0.0119, [])
        """
        keep = []
        for bucket, count, mu in self.held:
            if before is not None and bucket >= before:
                keep.append([bucket, count, mu])
                continue
            self.learn(int(bucket), self.clip(count, mu, config) if clip else count, mu, config)
        self.held = keep

    def _rescale(self, f: float) -> None:
        self.s *= f
        self.n *= f
        self.ra *= f
        self.rb *= f
        for arr in (self.sh, self.nh, self.sd, self.nd):
            for i in range(len(arr)):
                arr[i] *= f

    def to_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KeyModel:
        m = cls()
        for name in cls.__slots__:
            # states from before `held` and `last` lack them (a missing `last`: the detector says)
            value = state.get(name, []) if name == "held" else state.get(name) if name == "last" else state[name]
            setattr(m, name, [list(v) if isinstance(v, list) else v for v in value] if isinstance(value, list) else value)
        return m


def next_firing(was_firing: bool, can_open: bool, can_hold: bool) -> bool:
    """Hysteresis: an alert opens on ``can_open`` and, once open, holds while ``can_hold``.

    >>> next_firing(False, False, True), next_firing(True, False, True), next_firing(True, False, False)
    (False, True, False)
    """
    return can_open or (was_firing and can_hold)
