"""Human durations on the command line and in config: 90s, 5m, 2h, 1d, 1h30m."""

from __future__ import annotations

import re
from datetime import timedelta

from monitor.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m``.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    monitor.errors.ConfigError: duration 'soon' not understood: write e.g. 90s, 5m, 2h, 1d or 1h30m
    """
    cleaned = text.strip().lower().replace(" ", "")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned) or seconds <= 0:
        raise ConfigError(f"duration {text!r} not understood: write e.g. 90s, 5m, 2h, 1d or 1h30m")
    return timedelta(seconds=seconds)
