"""NAB-style scoring of binary detections against labelled anomaly windows (Lavin & Ahmad, ICMLA 2015).

Written from the paper's description: rows in the probationary period (the first 15% of a file) are not
scored; in each window only the earliest detection counts, worth ``A_TP`` times a scaled sigmoid of its
position (nearly 1 at the window's start, 0 at its end); a detection outside every window costs ``A_FP``,
in full when no window precedes it and scaled by the same sigmoid of its distance past the last window's
end otherwise (a late detection just after a window costs little); each missed window costs ``A_FN``. The
corpus score is normalised so that a detector that never fires scores 0 and a perfect one 100.

Detections here are alert *onsets* (a row whose alert is 1 and the previous row's 0): an alert that stays
open is one page, and NAB counts one detection per flagged row, which would charge hysteresis as many
false positives as it has rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from monitor.detect.series import read_series_csv
from monitor.errors import InputError


@dataclass(frozen=True)
class Profile:
    tp: float = 1.0
    fp: float = 0.11  # a cost: subtracted
    fn: float = 1.0  # a cost: subtracted


STANDARD = Profile()


@dataclass(frozen=True)
class NabFile:
    name: str
    timestamps: list[datetime]
    values: list[float]
    windows: list[tuple[datetime, datetime]]


@dataclass
class FileScore:
    raw: float = 0.0
    windows: int = 0
    detected: int = 0
    false_positives: int = 0
    scored_days: float = 0.0
    delays_h: list[float] = field(default_factory=list)  # first detection minus the window's centre
    perfect: float = 0.0
    null: float = 0.0


def scaled_sigmoid(position: float) -> float:
    """Weight of a detection at ``position``: -1 at the window's start, 0 at its end, >0 past it.

    Returns about 0.987 at the start, 0 at the end, and -1 from three window lengths past the end on.

    >>> round(scaled_sigmoid(-1.0), 3), scaled_sigmoid(0.0), scaled_sigmoid(5.0)
    (0.987, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def onsets(alerts: Sequence[int]) -> list[bool]:
    """Rows where an alert opens.

    >>> onsets([0, 1, 1, 0, 1])
    [False, True, False, False, True]
    """
    return [bool(a) and (i == 0 or not alerts[i - 1]) for i, a in enumerate(alerts)]


def probation_rows(n: int, percent: float = 0.15) -> int:
    return int(math.floor(percent * n))


def score_file(
    timestamps: Sequence[datetime],
    detections: Sequence[bool],
    windows: Sequence[tuple[datetime, datetime]],
    profile: Profile = STANDARD,
    probation_percent: float = 0.15,
) -> FileScore:
    """Score one file's detections (one bool per row).

    >>> from datetime import timedelta
    >>> ts = [datetime(2015, 1, 1) + timedelta(hours=i) for i in range(100)]
    >>> win = [(ts[50], ts[59])]
    >>> det = [False] * 100
    >>> score_file(ts, det, win).raw  # never fires: the one window is missed
    -1.0
    >>> det[50] = True
    >>> round(score_file(ts, det, win).raw, 3)  # perfect: at the window's first row
    0.987
    >>> det[5] = True  # inside the probationary period: ignored
    >>> det[90] = True  # three window lengths past the window: a full false positive
    >>> round(score_file(ts, det, win).raw, 3)
    0.877
    """
    n = len(timestamps)
    probation = probation_rows(n, probation_percent)
    spans = []
    for start, end in sorted(windows):
        lo = next((i for i, t in enumerate(timestamps) if t >= start), n)
        hi = max((i for i, t in enumerate(timestamps) if t <= end), default=-1)
        if lo <= hi:
            spans.append((lo, hi))
    result = FileScore(windows=len(spans))
    if n > probation:
        result.scored_days = (timestamps[-1] - timestamps[probation]).total_seconds() / 86400
    result.null = -profile.fn * len(spans)
    result.perfect = sum(profile.tp * scaled_sigmoid(-1.0) for _ in spans)
    detected = [False] * len(spans)
    for i in range(probation, n):
        if not detections[i]:
            continue
        inside = next((k for k, (lo, hi) in enumerate(spans) if lo <= i <= hi), None)
        if inside is not None:
            if not detected[inside]:
                lo, hi = spans[inside]
                width = hi - lo + 1
                result.raw += profile.tp * scaled_sigmoid(-(hi - i + 1) / width)
                detected[inside] = True
                centre = timestamps[lo] + (timestamps[hi] - timestamps[lo]) / 2
                result.delays_h.append((timestamps[i] - centre).total_seconds() / 3600)
            continue
        result.false_positives += 1
        before = [(lo, hi) for lo, hi in spans if hi < i]
        if not before:
            result.raw -= profile.fp
        else:
            lo, hi = before[-1]
            width = hi - lo + 1
            result.raw += profile.fp * scaled_sigmoid((i - hi) / max(1, width - 1))
    result.detected = sum(detected)
    result.raw -= profile.fn * (len(spans) - result.detected)
    return result


def normalised(scores: Sequence[FileScore]) -> float:
    """Corpus score: 0 for a detector that never fires, 100 for a perfect one."""
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def load_corpus(
    root: Path, subdir: str = "realTweets", labels: str = "labels/realTweets_windows.json"
) -> list[NabFile]:
    """Read NAB files and their windows in place (``root`` is ``../shared/nab``)."""
    label_path = root / labels
    try:
        windows = json.loads(label_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the NAB labels ({exc})", path=str(label_path)) from exc
    out = []
    for name in sorted(windows):
        if not name.startswith(subdir + "/"):
            continue
        ts, vs, _ = read_series_csv(root / name)
        wins = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in windows[name]]
        out.append(NabFile(name.split("/", 1)[1], ts, vs, wins))
    return out
