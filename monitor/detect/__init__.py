"""Counting distinct reporters and spotting surges: pure, with ``now`` passed in and JSON state.

The pipeline keeps one :class:`Detector` (restored with :meth:`Detector.from_state`) and calls
``detector.evaluate(now, reports)`` each cycle with the reports of the last ``detector.lookback``;
``spikes detect`` runs the same core over a plain series through :func:`detect_series`.
"""

from monitor.detect.config import SERIES_DEFAULTS, DetectConfig
from monitor.detect.counting import bucket_counts, distinct_reporters, reporter_groups
from monitor.detect.detector import Detector, run_detector
from monitor.detect.series import SeriesDetector, detect_series, series_config

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
