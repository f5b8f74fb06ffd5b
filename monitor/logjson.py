"""JSON log lines (``--log-format json``): one JSON object per line, for a log shipper.

Each line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the fields a caller passed
with ``extra=`` and, for an exception, ``exc_info`` (the traceback as text). The redacting filter
(:mod:`monitor.redact`) runs on the handler before this formatter, so messages, extra text fields and
tracebacks are already masked here.

The few lines the CLI writes itself to stderr (`run`'s "running: ...", "standing by", an ``error:`` line)
go through :func:`say`, which writes them as the same JSON objects in this mode, so that stderr is JSON
throughout. Alert events that `run` writes to stderr are already one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
FORMATS = ("text", "json")
_active = {"json": False}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD and not k.startswith("_")}


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """
    >>> record = logging.LogRecord("monitor.x", logging.WARNING, __file__, 1, "pass failed: %s", ("503",), None)
    >>> record.source = "x"
    >>> line = json.loads(JsonFormatter().format(record))
    >>> {k: line[k] for k in ("level", "logger", "message", "source")}
    {'level': 'WARNING', 'logger': 'monitor.x', 'message': 'pass failed: 503', 'source': 'x'}
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": _time(record.created), "level": record.levelname, "logger": record.name,
                                "message": record.getMessage()}
        for key, value in extra_fields(record).items():
            data.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def use_json(enabled: bool) -> None:
    _active["json"] = enabled


def say(message: str, *, level: str = "INFO", stream: TextIO | None = None) -> None:
    """A line the CLI writes to stderr itself: plain text, or a JSON log object in JSON mode."""
    stream = stream or sys.stderr
    if _active["json"]:
        from monitor.redact import redact_text, secret_values

        line = json.dumps({"time": _time(datetime.now(UTC).timestamp()), "level": level, "logger": "incident-monitor",
                           "message": redact_text(message, secret_values())}, ensure_ascii=False)
        print(line, file=stream, flush=True)
    else:
        print(message, file=stream, flush=True)
