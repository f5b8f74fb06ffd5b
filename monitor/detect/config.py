"""Detector settings: one frozen dataclass, every field with a default and help (the lead wires it into TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any

from pydantic import Field

from monitor.errors import ConfigError
from monitor.settings import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UtcOffsetHours,
)


@dataclass(frozen=True)
class DetectConfig:
    """Settings of the spike detector, shared by the report pipeline and ``spikes detect``."""

    bucket_minutes: Annotated[int, Field(gt=0, le=1440)] = field(default=5, metadata={"help": "length of one counting bucket in minutes"})
    windows_minutes: tuple[PositiveInt, ...] = field(
        default=(15, 60, 360),
        metadata={"help": "window lengths in minutes; short ones catch sudden surges, long ones slow builds"},
    )
    threshold: PositiveFloat = field(
        default=5.0,
        metadata={"help": "score (-log10 of the tail probability of the window count) that opens an alert"},
    )
    sparse_window_minutes: PositiveInt = field(
        default=45,
        metadata={"help": "window of the sparse rule: a near-zero key opens on a few distinct reporters in it"},
    )
    sparse_min_reporters: PositiveInt = field(
        default=3,
        metadata={"help": "distinct reporters inside sparse_window_minutes that open a near-zero key"},
    )
    sparse_max_expected: NonNegativeFloat = field(
        default=0.05,
        metadata={
            "help": "a key is near-zero when at most this many reporters are expected in the sparse window "
            "(0.05 in 45 min ~ 1.6 a day); 0 turns the sparse rule off"
        },
    )
    release_threshold: NonNegativeFloat = field(
        default=2.0,
        metadata={"help": "an open alert stays firing while the best window still scores at least this"},
    )
    min_reporters: PositiveInt = field(
        default=3,
        metadata={"help": "distinct reporters (or counts, for a series) a window needs to open an alert"},
    )
    warmup_buckets: NonNegativeInt = field(
        default=12,
        metadata={"help": "buckets after the first one seen during which nothing fires (grace period)"},
    )
    prior_rate: PositiveFloat = field(
        default=0.002,
        metadata={
            "help": "reporters per bucket assumed for a key with no history (0.002 per 5 min ~ 0.6 a day)"
        },
    )
    prior_buckets: PositiveFloat = field(
        default=288.0, metadata={"help": "weight of prior_rate, in buckets of history it is worth"}
    )
    half_life_days: NonNegativeFloat = field(
        default=28.0,
        metadata={"help": "history older than this counts half in the baseline (0 = never forget)"},
    )
    seasonal: bool = field(
        default=True, metadata={"help": "use hour-of-day / day-of-week factors once enough history exists"}
    )
    seasonal_min_days: NonNegativeFloat = field(
        default=7.0,
        metadata={"help": "days of history a key needs before hour-of-day / day-of-week factors are used"},
    )
    seasonal_shrink: NonNegativeFloat = field(
        default=12.0,
        metadata={"help": "pseudo-buckets pulling each seasonal factor towards 1 (more = smoother)"},
    )
    seasonal_shrink_reports: NonNegativeFloat = field(
        default=3.0,
        metadata={
            "help": "and at least this many reports' worth of pseudo-buckets, so a sparse key's factors stay "
            "near 1 until its hour and day slots hold real counts"
        },
    )
    utc_offset_hours: UtcOffsetHours = field(
        default=9.0, metadata={"help": "offset of the local day used for hour-of-day seasonality (JST = 9)"}
    )
    dispersion: NonNegativeFloat = field(
        default=0.0,
        metadata={
            "help": "least extra-Poisson variance phi (var = mu + phi*mu^2); 0 = Poisson for sparse counts"
        },
    )
    learn_dispersion: bool = field(
        default=False,
        metadata={"help": "estimate phi from past residuals (for dense series; sparse counts keep Poisson)"},
    )
    pending_max_expected: NonNegativeFloat = field(
        default=1.0,
        metadata={
            "help": "a sparse key (at most this many reporters expected in its longest window) with a window of "
            "min_reporters scoring at least release_threshold is pending: its buckets are held back from the "
            "baseline until it calms down, so a slow build is not learned as normal; 0 = never hold"
        },
    )
    clip_sd: PositiveFloat = field(
        default=2.0,
        metadata={"help": "a bucket is learned at most this many standard deviations above expected"},
    )
    ticker_window_minutes: PositiveInt = field(
        default=360, metadata={"help": "window of the ticker-cluster rule (same ticker, several reporters)"}
    )
    ticker_min_reporters: PositiveInt = field(
        default=3, metadata={"help": "distinct reporters naming one ticker within the window that fire it"}
    )
    minhash_threshold: Annotated[float, Field(gt=0, le=1)] = field(
        default=0.7, metadata={"help": "Jaccard similarity above which two texts count as one (copypasta)"}
    )
    minhash_perm: Annotated[int, Field(ge=16, le=1024)] = field(default=64, metadata={"help": "MinHash permutations (more = exact but slower)"})
    shingle_chars: Annotated[int, Field(ge=1, le=20)] = field(default=3, metadata={"help": "character n-gram length of the text shingles"})
    max_samples: Annotated[int, Field(ge=1, le=100)] = field(default=5, metadata={"help": "sample post ids carried by a signal"})

    def __post_init__(self) -> None:
        problems = []
        if self.bucket_minutes <= 0:
            problems.append("bucket_minutes must be > 0")
        if not self.windows_minutes:
            problems.append("windows_minutes must name at least one window")
        for w in (*self.windows_minutes, self.ticker_window_minutes):
            if w <= 0 or w % self.bucket_minutes:
                problems.append(f"window {w} min must be a positive multiple of bucket_minutes")
        if self.release_threshold > self.threshold:
            problems.append("release_threshold must not exceed threshold")
        if self.min_reporters < 1 or self.ticker_min_reporters < 1 or self.sparse_min_reporters < 1:
            problems.append("min_reporters, ticker_min_reporters and sparse_min_reporters must be >= 1")
        if self.sparse_window_minutes <= 0 or self.sparse_window_minutes % self.bucket_minutes:
            problems.append(
                f"sparse_window_minutes {self.sparse_window_minutes} must be a positive multiple of bucket_minutes"
            )
        if self.sparse_max_expected < 0 or self.pending_max_expected < 0 or self.seasonal_shrink < 0 or self.seasonal_shrink_reports < 0:
            problems.append(
                "sparse_max_expected, pending_max_expected, seasonal_shrink and seasonal_shrink_reports must be >= 0"
            )
        if self.prior_rate <= 0 or self.prior_buckets <= 0:
            problems.append("prior_rate and prior_buckets must be > 0")
        if self.half_life_days < 0 or self.dispersion < 0 or self.warmup_buckets < 0:
            problems.append("half_life_days, dispersion and warmup_buckets must be >= 0")
        if not 0 < self.minhash_threshold <= 1:
            problems.append("minhash_threshold must be in (0, 1]")
        if problems:
            raise ConfigError("detector settings: " + "; ".join(problems))

    @property
    def window_buckets(self) -> tuple[int, ...]:
        return tuple(w // self.bucket_minutes for w in self.windows_minutes)

    @property
    def scored_windows_minutes(self) -> tuple[int, ...]:
        """The windows a key is scored on: ``windows_minutes`` plus the sparse rule's window (each once)."""
        extra = () if self.sparse_window_minutes in self.windows_minutes else (self.sparse_window_minutes,)
        return tuple(sorted((*self.windows_minutes, *extra)))

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"detector settings: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {k: (tuple(v) if k == "windows_minutes" else v) for k, v in data.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> DetectConfig:
        return replace(self, **changes)


# Dense count series (e.g. tweets per 5 minutes about a ticker) vary far more than Poisson and drift in level:
# learn the overdispersion and forget faster. Tuned on the five NAB realTweets dev series only.
SERIES_DEFAULTS: dict[str, Any] = {
    "learn_dispersion": True,
    "dispersion": 0.02,
    "half_life_days": 3.0,
    "warmup_buckets": 288,
    "prior_buckets": 1.0,  # a dense series shows its own level within a few rows
    "utc_offset_hours": 0.0,
    # on the dev series, hour-of-day factors learned after a week raised false alerts and missed windows
    "seasonal": False,
    "threshold": 4.0,
    "pending_max_expected": 0.0,
    "sparse_max_expected": 0.0,  # dense series are never near-zero; the sparse rule is for report keys
}
