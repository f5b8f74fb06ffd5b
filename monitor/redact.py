"""A logging filter that keeps secrets out of every log line, at any verbosity.

Libraries log what they send: at ``-vv`` tweepy logs each request's headers, bearer token included. The
filter sits on the handlers the CLI installs, so it sees every record that is written, whichever library
logged it, and rewrites the message before it is formatted:

* the value of every secret environment variable DESIGN.md lists (and of the file a ``NAME_FILE``
  variable points to) becomes ``***``;
* any ``Authorization`` header value and any ``Bearer <token>`` becomes ``***``;
* Slack webhook URLs lose their secret path.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping

from monitor.logjson import extra_fields

SECRET_ENV = (
    "DATABASE_URL", "X_BEARER_TOKEN", "REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET", "BLUESKY_APP_PASSWORD",
    "SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "MONITOR_API_TOKENS", "MONITOR_PSEUDONYM_KEY",
)
MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words

PATTERNS = (
    # "Authorization: Bearer abc", "'Authorization': 'Basic abc'", authorization=abc
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token)\s+)?[^'\"\s,}\]]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/%=]{4,}"),
    re.compile(r"(hooks\.slack\.com/services/)[A-Za-z0-9/_\-]+"),
    re.compile(r"(\bxox[abposr]-)[A-Za-z0-9\-]+"),
)


def secret_values(env: Mapping[str, str] | None = None, names: Iterable[str] = SECRET_ENV) -> list[str]:
    """The secret values to mask: each variable's value (each item of a comma-separated token list) and
    the contents of ``NAME_FILE``; a database URL contributes its password only."""
    env = os.environ if env is None else env
    found: list[str] = []
    for name in names:
        values = [env.get(name) or ""]
        path = env.get(f"{name}_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    values.append(handle.read().strip())
            except OSError:
                pass
        for value in values:
            if name == "DATABASE_URL":
                match = re.match(r"^[^:]+://[^:/@]*:([^@]+)@", value)
                value = match.group(1) if match else ""
            parts = value.split(",") if name == "MONITOR_API_TOKENS" else [value]
            found.extend(p.strip() for p in parts if len(p.strip()) >= MIN_SECRET_CHARS)
    return sorted(set(found), key=len, reverse=True)  # longest first: a secret containing another


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """
    >>> redact_text("GET /2/tweets Headers: {'Authorization': 'Bearer AAAA-secret'} token=s3cr3t", ["s3cr3t"])
    "GET /2/tweets Headers: {'Authorization': '***'} token=***"
    """
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) with secrets masked; never drops a record."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = list(secrets) if secrets is not None else secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave the record for logging to report
            return True
        record.msg, record.args = redact_text(message, self.secrets), None
        for key, value in extra_fields(record).items():  # extra= fields reach JSON log lines too
            if isinstance(value, str):
                setattr(record, key, redact_text(value, self.secrets))
            elif not isinstance(value, int | float | bool | type(None)):
                text = redact_text(json.dumps(value, ensure_ascii=False, default=str), self.secrets)
                try:
                    setattr(record, key, json.loads(text))
                except ValueError:
                    setattr(record, key, text)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        return True


def install(handlers: Iterable[logging.Handler] | None = None) -> RedactingFilter:
    """Put one filter on ``handlers`` (default: the root logger's)."""
    redactor = RedactingFilter()
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redactor)
    return redactor
