"""`incident-monitor spikes detect FILE.csv`: the spike detector over a plain count series.

Reads ``timestamp,value`` rows and writes ``timestamp,score,alert`` to stdout, one row per input row
(the contract in DESIGN.md). The detector is the same core the report pipeline uses, in series mode.
"""

from __future__ import annotations

import argparse
import csv
import sys
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.detect.config import DetectConfig

DETECT_EXAMPLE = "Example: incident-monitor spikes detect counts.csv --threshold 6 > scores.csv"


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one window of 1 or more rows")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    spikes = subparsers.add_parser(
        "spikes",
        help="spike detection over count series. Example: incident-monitor spikes detect counts.csv",
        description="Spike detection over count series. Example: incident-monitor spikes detect counts.csv",
    )
    sub = spikes.add_subparsers(dest="spikes_command", metavar="COMMAND", required=True)
    detect = sub.add_parser(
        "detect",
        help=f"score a timestamp,value CSV; write timestamp,score,alert to stdout. {DETECT_EXAMPLE}",
        description=(
            "Run the spike detector over a count series (header `timestamp,value`, regular buckets). "
            "Writes `timestamp,score,alert` to stdout: score is -log10 of the chance of the window count "
            "given the learned baseline; alert is 1 while the detector would raise or keep an alert open. "
            "Causal: a row's output depends only on rows before it. " + DETECT_EXAMPLE
        ),
    )
    detect.add_argument("file", metavar="FILE.csv", help="input CSV with header timestamp,value")
    detect.add_argument(
        "--bucket",
        type=int,
        default=None,
        metavar="MINUTES",
        help="row spacing in minutes, for hour-of-day seasonality (default: the median spacing of the file)",
    )
    detect.add_argument(
        "--windows",
        type=_positive_ints,
        default=(3, 12, 72),
        metavar="ROWS",
        help="window lengths in rows, comma-separated (default 3,12,72: 15 min, 1 h, 6 h at 5-minute rows)",
    )
    detect.add_argument(
        "--threshold", type=float, default=None, help="score that opens an alert (default 4; 5 with --sparse)"
    )
    detect.add_argument(
        "--release",
        type=float,
        default=None,
        help="an open alert holds while the score is at least this (default 2)",
    )
    detect.add_argument(
        "--min-count", type=int, default=None, help="least window total that may open an alert (default 3)"
    )
    detect.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="ROWS",
        help="rows during which nothing fires (default 288)",
    )
    detect.add_argument(
        "--half-life-days", type=float, default=None, help="how fast the baseline forgets (default 3 days)"
    )
    detect.add_argument(
        "--seasonal", action="store_true", help="learn hour-of-day / day-of-week factors after a week of rows"
    )
    detect.add_argument(
        "--sparse",
        action="store_true",
        help="use the report-stream settings (Poisson, long memory) meant for mostly-zero counts",
    )
    # A plain CSV in, CSV out: no store and no config file ([detect] is tuned for report streams; the
    # flags above set this command's detector), so neither --db nor --config.
    detect.set_defaults(handler=run_detect, shared_options=())


def build_config(args: argparse.Namespace, bucket_minutes: int) -> DetectConfig:
    # Imported here, not at the top: monitor.detect loads scipy and datasketch, and every command's parser
    # imports this module (`export` should not pay a second for them).
    from monitor.detect.config import SERIES_DEFAULTS, DetectConfig

    base: dict[str, Any] = {} if args.sparse else dict(SERIES_DEFAULTS)
    base["bucket_minutes"] = bucket_minutes
    base["windows_minutes"] = tuple(n * bucket_minutes for n in args.windows)
    base["ticker_window_minutes"] = max(base["windows_minutes"])
    if args.seasonal:
        base["seasonal"] = True
    for option, name in (
        ("threshold", "threshold"),
        ("release", "release_threshold"),
        ("min_count", "min_reporters"),
        ("warmup", "warmup_buckets"),
        ("half_life_days", "half_life_days"),
    ):
        value = getattr(args, option)
        if value is not None:
            base[name] = value
    if args.release is None:  # a low --threshold alone must not leave release above it
        base["release_threshold"] = min(
            DetectConfig.release_threshold, base.get("threshold", DetectConfig.threshold)
        )
    return DetectConfig(**base)


def run_detect(args: argparse.Namespace) -> int:
    from monitor.detect.series import detect_series, median_spacing_minutes, read_series_csv

    timestamps, values, texts = read_series_csv(args.file)
    bucket = args.bucket if args.bucket is not None else median_spacing_minutes(timestamps)
    if bucket <= 0:
        raise ConfigError("--bucket must be a positive number of minutes")
    config = build_config(args, bucket)
    results = detect_series(timestamps, values, config)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["timestamp", "score", "alert"])
    for text, (score, alert) in zip(texts, results, strict=True):
        out.writerow([text, f"{score:.4f}", alert])
    return 0
