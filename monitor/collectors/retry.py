"""The one retry and rate-limit policy of every collector.

* A rate-limit answer (HTTP 429, or 503 with Retry-After) waits until the service says it may be asked
  again: ``Retry-After`` (seconds or an HTTP date), ``x-rate-limit-reset`` (X: epoch seconds) or
  ``x-ratelimit-reset`` (Reddit: seconds from now). A wait longer than ``max_wait`` is not slept through:
  :class:`~monitor.errors.RateLimited` ends the pass, and the scheduler's next run picks it up.
* 5xx answers, timeouts, connection resets and bodies cut off mid-JSON are retried with exponential
  backoff (with jitter) up to ``attempts`` tries, then raised as :class:`~monitor.errors.SourceError`.
* 401/403 are credential problems and never retried (:class:`~monitor.errors.CredentialsError`).
* Every wait logs the likely cause, and every wait sleeps on a :class:`threading.Event`, so a shutdown
  request ends it at once (:class:`Shutdown`).

The policy only reads ``exc.response.status_code`` / ``exc.response.headers`` (tweepy, requests and httpx
errors all carry the response that way), so no client library is imported here.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from monitor.errors import CredentialsError, MonitorError, RateLimited, SourceError

log = logging.getLogger(__name__)
T = TypeVar("T")


RESET_GRACE_SECONDS = 0.5


class Shutdown(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised out of a wait when the stop event is set; collectors end the pass with ``stopped=True``."""


class TransientError(SourceError):
    """A failure worth retrying that a collector detected itself (truncated JSON, a dropped stream)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 120.0
    max_wait: float = 900.0
    jitter: float = 0.25  # fraction of the delay added at random, so restarted bots do not retry in step

    @classmethod
    def from_config(cls, cfg: Any) -> RetryPolicy:
        return cls(
            attempts=cfg.retry_attempts,
            base_delay=cfg.retry_base_seconds,
            max_delay=cfg.retry_max_seconds,
            max_wait=cfg.max_rate_limit_wait_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """Delay before try ``attempt + 1`` (attempt counts from 1), without jitter.

        >>> [RetryPolicy(base_delay=1, max_delay=5).backoff(n) for n in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5.0]
        """
        return float(min(self.max_delay, self.base_delay * (2 ** min(attempt - 1, 60))))


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def wait_from_headers(headers: Mapping[str, Any] | None, now: float | None = None) -> float | None:
    """Seconds the service asked us to wait, from the standard and the X/Reddit/Bluesky headers.

    >>> wait_from_headers({"Retry-After": "7"})
    7.0
    >>> wait_from_headers({"x-rate-limit-reset": "1000"}, now=990.0)
    10.0
    >>> wait_from_headers({"x-ratelimit-reset": "42"}, now=990.0)
    42.0
    >>> wait_from_headers({"x-rate-limit-reset": "900"}, now=990.0)
    0.0
    >>> wait_from_headers({"RateLimit-Reset": "1030"}, now=990.0)
    40.0
    >>> wait_from_headers({}) is None
    True
    """
    now = time.time() if now is None else now
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
                return max(0.0, when.timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = _header(headers, "x-rate-limit-reset")  # X: epoch seconds when the window resets
    if reset is not None:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    bluesky_reset = _header(headers, "ratelimit-reset")  # Bluesky (atproto): epoch seconds
    if bluesky_reset is not None:
        try:
            return max(0.0, float(bluesky_reset) - now)
        except ValueError:
            pass
    reddit_reset = _header(headers, "x-ratelimit-reset")  # Reddit: seconds until the window resets
    if reddit_reset is not None:
        try:
            return max(0.0, float(reddit_reset))
        except ValueError:
            pass
    return None


@dataclass(frozen=True)
class Verdict:
    kind: str  # rate_limit | transient | credentials | fatal
    cause: str
    wait: float | None = None
    status: int | None = None


def _response_of(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    return response if getattr(response, "status_code", None) is not None else None


# Client-library exception classes by name (in the class hierarchy, so subclasses count too): the policy
# imports no client library. Only types decide; message text never does (a KeyError('x-rate-limit-reset')
# is a bug to report, not a "connection reset" to retry).
_TIMEOUT_TYPES = frozenset({"Timeout", "TimeoutException", "ReadTimeout", "ConnectTimeout", "TimeoutError"})
_CUT_OFF_TYPES = frozenset({"ChunkedEncodingError", "IncompleteRead", "ProtocolError", "RemoteProtocolError",
                            "RemoteDisconnected", "ConnectionClosed", "ConnectionClosedError"})
_CONNECT_TYPES = frozenset({"ConnectionError", "ConnectError", "NetworkError", "TransportError", "ProxyError",
                            "InvalidStatus", "InvalidHandshake"})


def _type_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _chain(exc: BaseException, limit: int = 12) -> list[BaseException]:
    """``exc`` and what it wraps (its cause, prawcore's ``original_exception``, exceptions carried in
    ``args`` as requests/urllib3 do), breadth first."""
    found: list[BaseException] = []
    todo = [exc]
    while todo and len(found) < limit:
        item = todo.pop(0)
        if any(item is seen for seen in found):
            continue
        found.append(item)
        wrapped = [item.__cause__, getattr(item, "original_exception", None),
                   *(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))]
        todo += [w for w in wrapped if isinstance(w, BaseException)]
    return found


def _is_network_error(exc: BaseException) -> str | None:
    """The likely cause when ``exc`` (or what it wraps) is a timeout, a reset, a cut-off or no connection."""
    chain = _chain(exc)
    names = set().union(*(_type_names(item) for item in chain))
    if any(isinstance(item, TimeoutError | socket.timeout) for item in chain) or names & _TIMEOUT_TYPES:
        return "no answer in time: network slow or the service overloaded"
    if any(isinstance(item, ConnectionResetError | ConnectionAbortedError | BrokenPipeError) for item in chain):
        return "connection reset: a proxy or the service dropped it mid-request"
    if names & _CUT_OFF_TYPES:
        return "response cut off mid-transfer: the connection dropped"
    if any(isinstance(item, ConnectionError | socket.gaierror) for item in chain) or names & _CONNECT_TYPES:
        return "cannot connect: network down, DNS, or the service unreachable"
    return None


def classify(exc: BaseException, now: float | None = None) -> Verdict:
    """Decide what an exception from a client library means for the policy."""
    if isinstance(exc, CredentialsError):
        return Verdict("credentials", str(exc))
    if isinstance(exc, RateLimited):
        return Verdict("rate_limit", str(exc), exc.wait_seconds)
    if isinstance(exc, TransientError):
        return Verdict("transient", str(exc))
    if isinstance(exc, MonitorError):  # already explained by the caller (a DeliveryError, an InputError)
        return Verdict("passthrough", str(exc))
    if isinstance(exc, json.JSONDecodeError) or type(exc).__name__ == "JSONDecodeError":
        return Verdict("transient", "body is not complete JSON (truncated by a proxy or a dropped connection)")
    response = _response_of(exc)
    if response is not None:
        status = int(response.status_code)
        headers = getattr(response, "headers", None)
        if 200 <= status < 300:  # a client library choked on a 2xx body (prawcore's BadJSON)
            return Verdict("transient", "body is not complete JSON (truncated by a proxy or a dropped connection)", status=status)
        if status == 429:
            wait = wait_from_headers(headers, now)
            return Verdict("rate_limit", "rate limit reached (HTTP 429)", wait, status)
        if status in (401, 403):
            answer = " ".join(str(exc).split())[:200]
            return Verdict("credentials", f"HTTP {status}, the service answered: {answer}", status=status)
        if status == 503 and wait_from_headers(headers, now) is not None:
            return Verdict("rate_limit", "service unavailable with Retry-After (HTTP 503)", wait_from_headers(headers, now), status)
        if status >= 500:
            cause = {
                500: "server error at the service",
                502: "bad gateway: a proxy in front of the service failed",
                503: "service unavailable: overloaded or in maintenance",
                504: "gateway timeout: the service answered too slowly",
            }.get(status, "server error at the service")
            return Verdict("transient", f"HTTP {status}: {cause}", status=status)
        return Verdict("fatal", f"HTTP {status}", status=status)
    network = _is_network_error(exc)
    if network is not None:
        return Verdict("transient", network)
    return Verdict("fatal", f"{type(exc).__name__}: {exc}")


def sleep(stop: threading.Event, seconds: float) -> None:
    """Wait, but wake at once on shutdown."""
    if stop.wait(max(0.0, seconds)):
        raise Shutdown()


def call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    stop: threading.Event,
    what: str,
    credential_hint: str = "",
    on_attempt: Callable[[], None] | None = None,
) -> T:
    """Call ``fn`` under the policy; ``what`` names the request in logs ("X search 'query'").

    ``credential_hint`` names the variable to fix when the service rejects the credentials.
    ``on_attempt`` is called before every try (request counting for status and spend).
    """
    failures = 0
    while True:
        if stop.is_set():
            raise Shutdown()
        if on_attempt is not None:
            on_attempt()
        try:
            return fn()
        except Shutdown:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; unknown kinds are re-raised
            verdict = classify(exc)
            if verdict.kind == "passthrough":
                raise
        if verdict.kind == "credentials":
            variable = credential_hint or "the credentials"
            raise CredentialsError(variable, f"{what} was refused ({verdict.cause}); check {variable}") from None
        if verdict.kind == "fatal":
            raise SourceError(f"{what} failed: {verdict.cause}", verdict.status) from None
        if verdict.kind == "rate_limit":
            wait = verdict.wait if verdict.wait is not None else policy.backoff(failures + 1)
            if wait > policy.max_wait:
                raise RateLimited(
                    f"{what}: {verdict.cause}; the service asks to wait {wait:.0f}s, over the "
                    f"{policy.max_wait:.0f}s limit, so this pass ends and the next run resumes",
                    wait,
                )
            failures += 1
            if failures > policy.attempts * 2:  # a service that keeps answering 429 after its own reset time
                raise RateLimited(f"{what}: still rate-limited after {failures} waits", wait)
            log.warning("%s: %s; waiting %.1fs as the service asks", what, verdict.cause, wait)
            # A reset time the service gave, even one already past (a 0.0 s wait), gets a grace period:
            # clocks differ, and asking again at the very second of the reset earns another 429.
            sleep(stop, wait + RESET_GRACE_SECONDS if verdict.wait is not None else wait)
            continue
        failures += 1
        if failures >= policy.attempts:
            raise SourceError(f"{what} failed {failures} times: {verdict.cause}", verdict.status) from None
        delay = policy.backoff(failures)
        delay += random.uniform(0, delay * policy.jitter)
        log.warning("%s: %s (try %d of %d); retrying in %.1fs", what, verdict.cause, failures, policy.attempts, delay)
        sleep(stop, delay)
