"""The one exception tree of the monitor.

Every error a user can cause or meet derives from :class:`MonitorError`. Its message is one line that
says what failed, where, and what to try; the CLI prints exactly that line and exits non-zero.

    MonitorError
     +-- ConfigError          bad or missing configuration (TOML, environment)
     |    +-- CredentialsError  a secret is missing or the service rejected it
     +-- InputError           a bad record in a file or stream (carries path and line number)
     +-- StorageError         the database is unreachable or its schema is wrong (also a
     |                        storage.errors.StorageError, which storage/ raises: see USER_ERRORS)
     +-- SourceError          a collector's service failed (HTTP status, timeout, bad payload)
     |    +-- RateLimited       the service asked us to wait longer than we are willing to block
     +-- DeliveryError        a notification could not be delivered (Slack, file)
     +-- ModelError           the classifier or dictionary could not be loaded
"""

from __future__ import annotations

from storage import errors as _storage_errors


class MonitorError(Exception):
    """Base class: the message is shown to the user as one line."""

    def __str__(self) -> str:  # keep the one-line promise even if a caller passes newlines
        return " ".join(super().__str__().split())


class ConfigError(MonitorError):
    """A setting is missing, malformed or contradictory."""


class CredentialsError(ConfigError):
    """A secret is missing from the environment or was rejected by the service."""

    def __init__(self, variable: str, detail: str = "") -> None:
        self.variable = variable
        hint = detail or f"set {variable} in the environment (or {variable}_FILE to a file holding it)"
        super().__init__(f"{variable}: {hint}")


class InputError(MonitorError):
    """A record in an input file or stream cannot be used."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 record: str | None = None) -> None:
        self.path = path
        self.line = line
        self.record = record  # the bad item as received (one post of a page), when narrower than the line
        where = ""
        if path is not None and line is not None:
            where = f"{path}:{line}: "
        elif path is not None:
            where = f"{path}: "
        elif line is not None:
            where = f"line {line}: "
        self.reason = message
        super().__init__(where + message)


class StorageError(MonitorError, _storage_errors.StorageError):
    """The store cannot be reached or used (catchable as either package's StorageError)."""


#: What a user can cause or meet: printed as one line (CLI) or logged as one line (scheduler), never a
#: traceback. storage/ imports nothing from monitor/, so its own StorageError is named here beside ours.
USER_ERRORS: tuple[type[Exception], ...] = (MonitorError, _storage_errors.StorageError)


class SourceError(MonitorError):
    """A collector's upstream service failed; ``status`` is the HTTP status it answered, where it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RateLimited(SourceError):
    """The service asked us to wait; ``wait_seconds`` says how long."""

    def __init__(self, message: str, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        super().__init__(message)


class DeliveryError(MonitorError):
    """A notification could not be delivered."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class ModelError(MonitorError):
    """The classifier, tokenizer or dictionary could not be loaded."""
