"""The one retry / rate-limit policy: header waits, backoff, bounded waits, prompt shutdown."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from monitor.collectors import retry
from monitor.collectors.retry import RetryPolicy, Shutdown
from monitor.errors import CredentialsError, RateLimited, SourceError

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_wait=5.0)


class HTTPFailure(Exception):
    """Shaped like tweepy's / prawcore's errors: the response rides on ``.response``."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = SimpleNamespace(status_code=status, headers=headers or {})


def flaky(failures: list[BaseException], value: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return value

    return fn, calls


def test_retries_5xx_timeouts_resets_and_truncated_json_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    fn, calls = flaky([HTTPFailure(503), TimeoutError("read timed out")])
    assert retry.call(fn, policy=FAST, stop=threading.Event(), what="X search") == "ok"
    assert calls["n"] == 3
    fn, calls = flaky([ConnectionResetError(104, "Connection reset by peer"), json.JSONDecodeError("x", "{", 1)])
    assert retry.call(fn, policy=FAST, stop=threading.Event(), what="X search") == "ok"
    text = caplog.text
    assert "overloaded or in maintenance" in text and "no answer in time" in text
    assert "connection reset" in text and "truncated" in text


def test_gives_up_after_attempts_with_one_line() -> None:
    fn, calls = flaky([HTTPFailure(500)] * 10)
    with pytest.raises(SourceError) as info:
        retry.call(fn, policy=FAST, stop=threading.Event(), what="Reddit new")
    assert calls["n"] == FAST.attempts
    assert "\n" not in str(info.value) and "HTTP 500" in str(info.value)


def test_rate_limit_waits_for_reset_header() -> None:
    reset = str(int(time.time()))  # already reached: wait is zero (plus a safety margin only when positive)
    fn, calls = flaky([HTTPFailure(429, {"x-rate-limit-reset": reset}), HTTPFailure(429, {"Retry-After": "0.05"})])
    start = time.monotonic()
    assert retry.call(fn, policy=FAST, stop=threading.Event(), what="X counts") == "ok"
    assert calls["n"] == 3
    assert time.monotonic() - start >= 0.05


def test_rate_limit_longer_than_max_wait_ends_the_pass() -> None:
    fn, _ = flaky([HTTPFailure(429, {"x-rate-limit-reset": str(int(time.time()) + 3600)})])
    with pytest.raises(RateLimited) as info:
        retry.call(fn, policy=FAST, stop=threading.Event(), what="X search")
    assert info.value.wait_seconds > 3000


def test_credentials_are_not_retried_and_name_the_variable() -> None:
    fn, calls = flaky([HTTPFailure(401)])
    with pytest.raises(CredentialsError) as info:
        retry.call(fn, policy=FAST, stop=threading.Event(), what="X search", credential_hint="X_BEARER_TOKEN")
    assert calls["n"] == 1 and str(info.value).startswith("X_BEARER_TOKEN:")


def test_unknown_errors_are_not_retried() -> None:
    fn, calls = flaky([HTTPFailure(400)])
    with pytest.raises(SourceError):
        retry.call(fn, policy=FAST, stop=threading.Event(), what="X search")
    assert calls["n"] == 1


def test_shutdown_interrupts_a_long_wait_promptly() -> None:
    stop = threading.Event()
    fn, _ = flaky([HTTPFailure(429, {"Retry-After": "60"})] * 3)
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    start = time.monotonic()
    with pytest.raises(Shutdown):
        retry.call(fn, policy=RetryPolicy(max_wait=120), stop=stop, what="X search")
    assert time.monotonic() - start < 5


def test_http_date_retry_after() -> None:
    import email.utils

    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = retry.wait_from_headers({"Retry-After": date})
    assert wait is not None and 25 <= wait <= 31


def test_a_reset_already_past_still_waits_the_grace_period() -> None:
    """Regression (#8 item 7): a reset in the past gave a 0.0 s wait, which was taken as 'no wait', so the
    Bluesky rate-limit test flaked whenever the request landed after the (whole-second) reset."""
    fn, calls = flaky([HTTPFailure(429, {"ratelimit-reset": str(int(time.time()) - 5)})])
    start = time.monotonic()
    assert retry.call(fn, policy=FAST, stop=threading.Event(), what="Bluesky search") == "ok"
    assert calls["n"] == 2 and time.monotonic() - start >= retry.RESET_GRACE_SECONDS


@pytest.mark.parametrize("exc", [KeyError("x-rate-limit-reset"), AttributeError("connection reset"),
                                 ValueError("Connection timed out")])
def test_bugs_are_not_retried_whatever_their_message_says(exc: Exception) -> None:
    fn, calls = flaky([exc])
    with pytest.raises(SourceError, match=type(exc).__name__):
        retry.call(fn, policy=FAST, stop=threading.Event(), what="X search")
    assert calls["n"] == 1


def test_library_errors_are_retried_by_type() -> None:
    import httpx
    import requests

    fn, calls = flaky([requests.exceptions.ConnectionError("x"), httpx.ReadTimeout("x"),
                       httpx.RemoteProtocolError("x")])
    assert retry.call(fn, policy=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02), stop=threading.Event(),
                      what="X search") == "ok"
    assert calls["n"] == 4
