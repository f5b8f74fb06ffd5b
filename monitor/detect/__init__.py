"""Counting distinct reporters and spotting surges: pure, with ``now`` passed in and JSON state.

The pipeline keeps one :class:`Detector` (restored with :meth:`Detector.from_state`) and calls
``detector.evaluate(now, reports)`` each cycle with the reports of the last ``detector.lookback``;
``spikes detect`` runs the same core over a plain series through :func:`detect_series`.

The names below are imported on first use: loading settings imports ``monitor.detect.config``, which runs
this file first, and the detector modules bring scipy and datasketch (most of a second) that commands
such as ``export`` never use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.detect.config import SERIES_DEFAULTS, DetectConfig
    from monitor.detect.counting import bucket_counts, distinct_reporters, reporter_groups
    from monitor.detect.detector import Detector, run_detector
    from monitor.detect.series import SeriesDetector, detect_series, series_config

_HOME = {
    "SERIES_DEFAULTS": "config", "DetectConfig": "config",
    "bucket_counts": "counting", "distinct_reporters": "counting", "reporter_groups": "counting",
    "Detector": "detector", "run_detector": "detector",
    "SeriesDetector": "series", "detect_series": "series", "series_config": "series",
}

__all__ = [
    "SERIES_DEFAULTS",
    "DetectConfig",
    "Detector",
    "SeriesDetector",
    "bucket_counts",
    "detect_series",
    "distinct_reporters",
    "reporter_groups",
    "run_detector",
    "series_config",
]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"monitor.detect.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
