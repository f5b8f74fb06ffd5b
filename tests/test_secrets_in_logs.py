"""Secrets never reach the log, at -vv, for each source against its loopback server (real clients:
tweepy, praw, httpx/websockets). Before the filter, one `collect x --once -vv` logged the X bearer token
102 times (tweepy's request-header debug line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.bsky_api import FakeBsky
from servers.jetstream import FakeJetstream
from servers.reddit_api import FakeReddit, make_things
from servers.x_api import FakeX

from monitor.redact import RedactingFilter, redact_text, secret_values

REPO = Path(__file__).resolve().parents[1]
X_TOKEN = "AAAAAAAAAAAAAAAAAAAAAXtok3n%2Fsecret%3Dvalue"
REDDIT_ID, REDDIT_SECRET = "redd1t-client-id-77", "redd1t-s3cret-value-99"
BSKY_PASSWORD = "bsky-app-pass-4242"
SLACK_TOKEN = "xoxb-1111-2222-s3cretslack"


def _collect(source: str, env_extra: dict[str, str], tmp_path: Path, config: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_", "JETSTREAM",
                                                                      "DATABASE_URL"))}
    env.update(PYTHONPATH=str(REPO), SLACK_BOT_TOKEN=SLACK_TOKEN, SLACK_CHANNEL="C1", **env_extra)
    (tmp_path / "incident-monitor.toml").write_text(config, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "monitor", "collect", source, "--once", "-vv", "--db",
                           f"sqlite:///{tmp_path / 'store.sqlite'}", "--config", str(tmp_path / "incident-monitor.toml")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    return proc.stdout + proc.stderr


def _assert_clean(output: str, *secrets: str) -> None:
    assert "DEBUG" in output  # -vv really logged at debug level
    for secret in (*secrets, SLACK_TOKEN):
        assert secret not in output, f"{secret[:6]}... leaked"


def test_x_at_debug_level(tmp_path: Path) -> None:
    with FakeX([], good_token=X_TOKEN) as x:
        out = _collect("x", {"X_BEARER_TOKEN": X_TOKEN, "X_API_BASE_URL": x.url}, tmp_path,
                       "[x]\nbrokers = [\"楽天証券\"]\nsearch_floor_seconds = 0\n")
        assert x.calls  # the token was used against the server
    _assert_clean(out, X_TOKEN, "Xtok3n")
    assert "Authorization" in out and "***" in out  # tweepy's header line is there, masked


def test_reddit_at_debug_level(tmp_path: Path) -> None:
    with FakeReddit(client_id=REDDIT_ID, secret=REDDIT_SECRET) as server:
        server.listings["/r/JapanFinance/new"] = make_things("JapanFinance", 5)
        out = _collect("reddit", {"REDDIT_CLIENT_ID": REDDIT_ID, "REDDIT_CLIENT_SECRET": REDDIT_SECRET,
                                  "REDDIT_USER_AGENT": "incident-monitor-tests/0.1", "REDDIT_OAUTH_URL": server.url,
                                  "REDDIT_WWW_URL": server.url}, tmp_path,
                       "[reddit]\nsubreddits = [\"JapanFinance\"]\nsearch_queries = []\ninclude_comments = false\n")
    _assert_clean(out, REDDIT_ID, REDDIT_SECRET)


def test_bluesky_at_debug_level(tmp_path: Path) -> None:
    with FakeBsky([], password=BSKY_PASSWORD) as api, FakeJetstream() as js:
        out = _collect("bluesky", {"BLUESKY_HANDLE": "alice.test", "BLUESKY_APP_PASSWORD": BSKY_PASSWORD,
                                   "BLUESKY_API_URL": api.url + "/xrpc", "JETSTREAM_URL": js.url}, tmp_path,
                       "[bluesky]\nsearch_queries = [\"楽天証券 不正\"]\nlisten_seconds = 1\n")
    _assert_clean(out, BSKY_PASSWORD)


def test_the_filter_masks_headers_tokens_and_known_values() -> None:
    import logging

    env = {"X_BEARER_TOKEN": "tok-abcdef", "DATABASE_URL": "postgresql://u:pw-secret@db/x",
           "MONITOR_API_TOKENS": "alpha-token, beta-token", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/zzz"}
    secrets = secret_values(env)
    assert {"tok-abcdef", "pw-secret", "alpha-token", "beta-token"} <= set(secrets)
    record = logging.LogRecord("t", logging.DEBUG, __file__, 1, "headers %s url %s", (
        {"Authorization": "Bearer other-token-123"}, "https://hooks.slack.com/services/T0/B0/abc"), None)
    RedactingFilter(secrets).filter(record)
    line = record.getMessage()
    assert "other-token-123" not in line and "B0/abc" not in line and "***" in line
    assert redact_text("db postgresql://u:pw-secret@db/x beta-token", secrets) == "db postgresql://u:***@db/x ***"


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-inf"])
def test_a_budget_that_is_not_a_finite_non_negative_number_is_an_error(value: str, tmp_path: Path) -> None:
    """`daily_budget_usd = nan` silently removed the spend cap."""
    from monitor.errors import ConfigError
    from monitor.settings import load_settings

    path = tmp_path / "incident-monitor.toml"
    path.write_text(f"[x]\ndaily_budget_usd = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "daily_budget_usd" in str(info.value)
