"""Series mode: the same detector core over one plain count series (``spikes detect FILE.csv``).

Each row is one bucket. At row i the windows are the sums of the last n rows (n from the configured window
lengths), scored against the sum of what the baseline expected for those rows; then row i is learned.
Row i's result depends only on rows 0..i (causal), and feeding rows one at a time equals a batch run.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.detect.baseline import KeyModel, next_firing, tail_score
from monitor.detect.config import SERIES_DEFAULTS, DetectConfig
from monitor.detect.counting import EPOCH
from monitor.errors import ConfigError, InputError

_STATE_VERSION = 1


def series_config(**overrides: Any) -> DetectConfig:
    """The detector settings for dense count series: :data:`SERIES_DEFAULTS` plus ``overrides``."""
    return DetectConfig(**{**SERIES_DEFAULTS, **overrides})


class SeriesDetector:
    """Incremental series detector; :meth:`update` takes one row and returns ``(score, alert)``.

    >>> from datetime import timedelta
    >>> det = SeriesDetector(series_config(warmup_buckets=12))
    >>> t0 = datetime(2025, 3, 19)
    >>> rows = [det.update(t0 + timedelta(minutes=5 * i), v) for i, v in enumerate([2, 3, 1, 2] * 30 + [40, 2])]
    >>> [alert for _, alert in rows[-3:]]
    [0, 1, 1]
    """

    def __init__(self, config: DetectConfig | None = None) -> None:
        self.config = config or series_config()
        self._model = KeyModel()
        longest = max(self.config.window_buckets)
        self._values: deque[float] = deque(maxlen=longest)
        self._expected: deque[float] = deque(maxlen=longest)
        self._rows = 0
        self._firing = False

    def update(self, timestamp: datetime, value: float) -> tuple[float, int]:
        cfg = self.config
        if not math.isfinite(value) or value < 0:
            raise InputError(f"value {value!r} is not a finite count >= 0; counts cannot be negative")
        b = _bucket_of(timestamp, cfg)
        mu = self._model.expected(b, cfg)
        self._values.append(float(value))
        self._expected.append(mu)
        dispersion = self._model.dispersion(cfg)
        vals = list(self._values)
        exps = list(self._expected)
        best = 0.0
        can_open = False
        for n in cfg.window_buckets:
            count = sum(vals[-n:])
            score = tail_score(count, sum(exps[-n:]), dispersion)
            best = max(best, score)
            if score >= cfg.threshold and count >= cfg.min_reporters:
                can_open = True
        warm = self._rows >= cfg.warmup_buckets
        self._firing = next_firing(self._firing, warm and can_open, best >= cfg.release_threshold)
        learned = self._model.clip(value, mu, cfg) if self._firing else float(value)
        self._model.learn(b, learned, mu, cfg)
        self._rows += 1
        # Before the warm-up ends there is no baseline to be surprised by: report no anomaly rather than
        # the huge tail score a first count gets against the prior.
        return (best if warm else 0.0), int(self._firing)

    def to_state(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "config": self.config.to_dict(),
            "model": self._model.to_state(),
            "values": list(self._values),
            "expected": list(self._expected),
            "rows": self._rows,
            "firing": self._firing,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesDetector:
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ConfigError("series detector state: unknown format or version; start from an empty state")
        det = cls(DetectConfig.from_dict(state["config"]))
        det._model = KeyModel.from_state(state["model"])
        det._values.extend(state["values"])
        det._expected.extend(state["expected"])
        det._rows = state["rows"]
        det._firing = state["firing"]
        return det


def _bucket_of(timestamp: datetime, config: DetectConfig) -> int:
    t = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
    return int((t - EPOCH).total_seconds() // (config.bucket_minutes * 60))


def detect_series(
    timestamps: Sequence[datetime], values: Sequence[float], config: DetectConfig | None = None
) -> list[tuple[float, int]]:
    """Batch run over a whole series: one ``(score, alert)`` per row, equal to feeding rows one by one.

    >>> from datetime import timedelta
    >>> ts = [datetime(2015, 3, 1) + timedelta(minutes=5 * i) for i in range(400)]
    >>> vs = [10 + (i % 3) for i in range(400)]
    >>> vs[350] = 90
    >>> out = detect_series(ts, vs)
    >>> [i for i, (_, alert) in enumerate(out) if alert][:1]
    [350]
    """
    if len(timestamps) != len(values):
        raise InputError(
            f"{len(timestamps)} timestamps but {len(values)} values; give one value per timestamp"
        )
    det = SeriesDetector(config)
    return [det.update(t, v) for t, v in zip(timestamps, values, strict=True)]


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 or ``YYYY-MM-DD HH:MM:SS`` (both handled by ``fromisoformat``).

    >>> parse_timestamp("2015-02-26 21:42:53"), parse_timestamp("2025-03-19T15:00:00+09:00").utcoffset()
    (datetime.datetime(2015, 2, 26, 21, 42, 53), datetime.timedelta(seconds=32400))
    """
    return datetime.fromisoformat(text.strip())


def read_series_csv(path: str | Path) -> tuple[list[datetime], list[float], list[str]]:
    """Read a ``timestamp,value`` CSV into (timestamps, values, the timestamp texts as written).

    A bad row raises :class:`InputError` naming ``file:line``."""
    p = Path(path)
    try:
        handle = p.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read the series ({exc.strerror}); check the path", path=str(p)) from exc
    timestamps: list[datetime] = []
    values: list[float] = []
    texts: list[str] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV file ({exc})", path=str(p), line=1) from exc
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise InputError("the header must be `timestamp,value`", path=str(p), line=1)
        line = 1
        try:
            for line, row in enumerate(reader, start=2):  # noqa: B007 - line is used after the loop on error
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < 2:
                    raise InputError("expected `timestamp,value`", path=str(p), line=line)
                try:
                    ts = parse_timestamp(row[0])
                except ValueError:
                    raise InputError(
                        f"timestamp {row[0]!r} is not ISO 8601 or YYYY-MM-DD HH:MM:SS", path=str(p), line=line
                    ) from None
                try:
                    value = float(row[1])
                except ValueError:
                    raise InputError(f"value {row[1]!r} is not a number", path=str(p), line=line) from None
                if not math.isfinite(value) or value < 0:
                    raise InputError(f"value {row[1]!r} must be a finite count >= 0", path=str(p), line=line)
                if timestamps and _comparable(ts, timestamps[-1]) and ts <= timestamps[-1]:
                    raise InputError(
                        f"timestamp {row[0]!r} is not after the previous row; sort the file by time",
                        path=str(p),
                        line=line,
                    )
                if timestamps and (ts.tzinfo is None) != (timestamps[-1].tzinfo is None):
                    raise InputError("mixes timestamps with and without a UTC offset", path=str(p), line=line)
                timestamps.append(ts)
                values.append(value)
                texts.append(row[0].strip())
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"not a readable CSV row ({exc})", path=str(p), line=line + 1) from exc
    return timestamps, values, texts


def median_spacing_minutes(timestamps: Sequence[datetime]) -> int:
    """The typical row spacing in whole minutes (at least 1); 5 when there are too few rows to tell.

    >>> median_spacing_minutes([datetime(2015, 1, 1, 0, m) for m in (0, 5, 10, 20)])
    5
    """
    if len(timestamps) < 2:
        return 5
    gaps = sorted((b - a).total_seconds() for a, b in zip(timestamps, timestamps[1:], strict=False))
    return max(1, round(gaps[len(gaps) // 2] / 60))


def _comparable(a: datetime, b: datetime) -> bool:
    return (a.tzinfo is None) == (b.tzinfo is None)
