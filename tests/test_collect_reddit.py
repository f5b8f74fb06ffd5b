"""Reddit collector (plain HTTP on the collectors' transport seam) against a loopback Reddit (token endpoint + listings, Japanese posts),
real praw/prawcore cassette bodies, and the faults of the issue."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import shared_path
from servers import Fault
from servers.reddit_api import TOKEN, FakeReddit, cassette_response, make_things

from monitor.collectors import reddit as reddit_module
from monitor.collectors.base import read_cursor
from monitor.collectors.config import RedditConfig
from monitor.collectors.reddit import RedditCollector, thing_to_record
from monitor.collectors.retry import RetryPolicy
from monitor.errors import CredentialsError, InputError
from monitor.settings import Secret
from storage.database import open_store
from storage.models import Post

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_wait=5.0)
NEW = "/r/JapanFinance/new"
COMMENTS = "/r/JapanFinance/comments"
SEARCH = "/r/JapanFinance/search"


def config(server: FakeReddit, **overrides: Any) -> RedditConfig:
    base = RedditConfig(
        client_id=Secret("app-id"), client_secret=Secret("app-secret"), user_agent="incident-monitor-tests/0.1",
        oauth_url=server.url, www_url=server.url, subreddits=("JapanFinance",), search_queries=("楽天証券 不正",),
        limit=10, timeout_seconds=0.5,
    )
    return dataclasses.replace(base, **overrides)


def populated(server: FakeReddit) -> FakeReddit:
    server.listings[NEW] = make_things("JapanFinance", 25)
    server.listings[COMMENTS] = make_things("JapanFinance", 12, kind="t1")
    server.listings[SEARCH] = make_things("JapanFinance", 4, start=100)
    return server


def stored_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(Post.post_id).where(Post.source == "reddit")).scalars())


@pytest.fixture
def sqlite_engine(sqlite_url: str):
    eng = open_store(sqlite_url)
    yield eng
    eng.dispose()


def test_new_comments_and_search_then_only_what_is_newer(engine: sa.Engine) -> None:
    with populated(FakeReddit()) as server:
        result = RedditCollector(config(server), FAST).collect(engine, threading.Event())
        assert result.new == 41 and result.duplicate == 0 and result.skipped == 0
        ids = stored_ids(engine)
        assert len(ids) == len(set(ids)) == 41
        newest = max(server.listings[NEW], key=lambda t: t["data"]["created_utc"])["data"]
        assert read_cursor(engine, "reddit", "new:JapanFinance").value == f"{newest['created_utc']}:{newest['name']}"
        assert len(server.calls(TOKEN)) == 1

        before = len(server.calls(NEW))
        quiet = RedditCollector(config(server), FAST).collect(engine, threading.Event())
        assert quiet.new == 0 and len(server.calls(NEW)) == before + 1  # one page shows nothing is newer
        server.listings[NEW] += make_things("JapanFinance", 3, start=25)
        later = RedditCollector(config(server), FAST).collect(engine, threading.Event())
        assert later.new == 3 and later.duplicate == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(Post).where(Post.post_id == newest["name"])).one()
    assert row.text.startswith("楽天証券") or "証券" in row.text
    assert row.url == f"https://www.reddit.com{newest['permalink']}" and row.author_id.startswith("t2_")


def test_restart_mid_walk_resumes_with_after(sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reddit_module, "MAX_PAGES", 1)
    with populated(FakeReddit()) as server:
        cfg = config(server, include_comments=False, search_queries=())
        RedditCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        cursor = read_cursor(sqlite_engine, "reddit", "new:JapanFinance")
        assert cursor.value is None and cursor.extra["after"]
        RedditCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        assert server.calls(NEW)[-1].params["after"] == cursor.extra["after"]
        RedditCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        assert sorted(stored_ids(sqlite_engine)) == sorted(t["data"]["name"] for t in server.listings[NEW])
        assert "after" not in read_cursor(sqlite_engine, "reddit", "new:JapanFinance").extra


def test_faults_lose_nothing_and_duplicate_nothing(sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with populated(FakeReddit()) as server:
        server.listings[NEW] = make_things("JapanFinance", 65)
        server.listings[NEW][3]["data"].pop("created_utc")  # an object missing a field
        server.fault(
            NEW,
            Fault("status", 429, {"retry-after": "0"}, b"<html>Too Many Requests</html>"),
            Fault("none"),
            Fault("repeat"),  # page 1 again (same 'after')
            Fault("status", 503, body=b"{}"), Fault("status", 503, body=b"{}"),
            Fault("none"),
            Fault("truncate"), Fault("truncate"),
            Fault("none"),
            Fault("reset"), Fault("reset"),
            Fault("delay", seconds=0.8), Fault("delay", seconds=0.8),
        )
        cfg = config(server, include_comments=False, search_queries=())
        # Every fault reaches the one retry policy (no client library retries on its own): the last page
        # meets two resets and two timeouts in a row, so this policy allows five tries.
        patient = dataclasses.replace(FAST, attempts=5)
        result = RedditCollector(cfg, patient).collect(sqlite_engine, threading.Event())
        assert any("page limit" in n for n in result.notes)  # 5 pages per pass; the walk goes on next pass
        second = RedditCollector(cfg, patient).collect(sqlite_engine, threading.Event())
    ids = stored_ids(sqlite_engine)
    assert len(ids) == len(set(ids)) == 64 and result.skipped + second.skipped == 1
    for cause in ("rate limit reached", "overloaded or in maintenance", "truncated", "connection reset", "no answer in time"):
        assert cause in caplog.text, cause


def test_missing_and_rejected_credentials(sqlite_engine: sa.Engine) -> None:
    with populated(FakeReddit()) as server:
        with pytest.raises(CredentialsError, match="^REDDIT_CLIENT_ID: set REDDIT_CLIENT_ID"):
            RedditCollector(config(server, client_id=None), FAST)
        with pytest.raises(CredentialsError, match="^REDDIT_USER_AGENT"):
            RedditCollector(config(server, user_agent=""), FAST)
        with pytest.raises(CredentialsError) as info:
            RedditCollector(config(server, client_secret=Secret("wrong")), FAST).collect(sqlite_engine, threading.Event())
        assert "REDDIT_CLIENT_SECRET" in str(info.value) and "401" in str(info.value) and "wrong" not in str(info.value)


def test_a_missing_subreddit_does_not_stop_the_others(sqlite_engine: sa.Engine) -> None:
    with populated(FakeReddit()) as server:
        cfg = config(server, subreddits=("JapanFinance", "no_such_sub"), search_queries=(), include_comments=False)
        result = RedditCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
    assert result.new == 25 and any("404" in n for n in result.notes)


def test_real_praw_listings_new_and_comments(sqlite_engine: sa.Engine) -> None:
    new_body = cassette_response(shared_path("real", "reddit", "praw_cassettes", "TestSubredditListings.test_new.json"), "/new")
    comments_body = cassette_response(
        shared_path("real", "reddit", "praw_cassettes", "TestSubredditListings.test_comments.json"), "/comments")
    with FakeReddit() as server:
        server.recorded["/r/askreddit/new"] = [new_body]
        server.recorded["/r/askreddit/comments"] = [comments_body]
        server.listings["/r/askreddit/new"] = []
        server.listings["/r/askreddit/comments"] = []
        cfg = config(server, subreddits=("askreddit",), search_queries=(), limit=100)
        result = RedditCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
    assert result.new == 200 and result.skipped == 0
    assert len(set(stored_ids(sqlite_engine))) == 200


def test_real_prawcore_429_on_the_token_endpoint_backs_off(sqlite_engine: sa.Engine, caplog) -> None:
    path = shared_path("real", "reddit", "prawcore_cassettes",
                       "TestSession.test_request__too__many_requests__without_retry_headers.json")
    body = cassette_response(path, "/api/v1/access_token")  # Reddit's own 429 answer, no Retry-After
    with populated(FakeReddit()) as server:
        server.fault(TOKEN, Fault("status", 429, {"content-type": "application/json; charset=UTF-8"}, body))
        result = RedditCollector(config(server, include_comments=False, search_queries=()), FAST).collect(
            sqlite_engine, threading.Event())
    assert result.new == 25 and "rate limit reached" in caplog.text
    assert len(server.calls(TOKEN)) == 2


def test_thing_to_record_rejects_other_kinds() -> None:
    with pytest.raises(InputError, match="not a submission or comment"):
        thing_to_record({"kind": "t5", "data": {}})
    record = thing_to_record(make_things("JapanFinance", 1, kind="t1")[0])
    assert record.reply_to and record.text.startswith("うちも")
