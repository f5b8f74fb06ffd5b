"""X collector against a loopback X API v2 (real sockets, real response shapes, Japanese posts).

Covers: query building at the 512-character limit, pagination with includes.users kept across pages,
since_id polling gated by the counts endpoint, the daily budget, a restart mid-pagination, faults
(429 with reset headers, 500/503, timeouts, resets, truncated and cut bodies, a repeated page, posts
missing fields), rejected and missing credentials, and real recorded X pages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import shared_path
from servers import Fault
from servers.x_api import COUNTS, SEARCH, FakeX, cassette_body, make_tweets, twarc_page

from monitor.collectors import health
from monitor.collectors.base import read_cursor
from monitor.collectors.config import DEFAULT_BROKER_TERMS, DEFAULT_INCIDENT_TERMS, XConfig
from monitor.collectors.retry import RetryPolicy
from monitor.collectors.x import XCollector, build_queries, cursor_name
from monitor.errors import CredentialsError
from monitor.settings import Secret
from storage.database import open_store
from storage.models import Post, RawPage

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_wait=5.0)
QUERY_BROKERS = ("楽天証券", "SBI証券")


def config(server: FakeX, **overrides: Any) -> XConfig:
    base = XConfig(
        bearer_token=Secret("good-token"),
        api_base_url=server.url,
        brokers=QUERY_BROKERS,
        incident_terms=("不正ログイン", "乗っ取り"),
        max_results=10,
        timeout_seconds=0.5,
        daily_budget_usd=100.0,
    )
    return dataclasses.replace(base, **overrides)


def stored(engine: sa.Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(Post.post_id, Post.author_handle).order_by(Post.post_id))]


def the_cursor(collector: XCollector, engine: sa.Engine):
    (query,) = collector.queries
    return read_cursor(engine, "x", cursor_name(query))


@pytest.fixture
def sqlite_engine(sqlite_url: str):
    eng = open_store(sqlite_url)
    yield eng
    eng.dispose()


# --- queries ---------------------------------------------------------------------------------------------


def test_default_queries_split_at_512_characters_and_cover_every_word() -> None:
    queries = build_queries(DEFAULT_BROKER_TERMS, DEFAULT_INCIDENT_TERMS, "lang:ja -is:retweet", 512)
    assert all(len(q) <= 512 for q in queries)
    assert all(q.endswith("lang:ja -is:retweet") for q in queries)
    for word in DEFAULT_BROKER_TERMS + DEFAULT_INCIDENT_TERMS:
        assert any(word in q for q in queries), word
    small = build_queries(DEFAULT_BROKER_TERMS, DEFAULT_INCIDENT_TERMS, "lang:ja", 120)
    assert len(small) > 1 and all(len(q) <= 120 for q in small)
    # every broker still meets every incident term in some query
    pairs = set()
    for q in small:
        brokers_group, terms_group = re.findall(r"\(([^)]*)\)", q)
        # a term of several words ("sbi securities") is one quoted phrase in X's query syntax
        pairs |= {(b.strip('"'), t.strip('"')) for b in brokers_group.split(" OR ") for t in terms_group.split(" OR ")}
    assert pairs == {(b, t) for b in DEFAULT_BROKER_TERMS for t in DEFAULT_INCIDENT_TERMS}


# --- the happy path and polling --------------------------------------------------------------------------


def test_paginates_keeps_users_across_pages_and_polls_with_counts(engine: sa.Engine) -> None:
    with FakeX(make_tweets(25)) as server:
        collector = XCollector(config(server), FAST)
        result = collector.collect(engine, threading.Event())
        assert (result.pages, result.new, result.duplicate, result.skipped) == (3, 25, 0, 0)
        rows = stored(engine)
        assert len(rows) == 25
        # pages 2 and 3 carry no includes.users (their authors came on page 1), yet every handle is known
        assert server.calls(SEARCH)[1].params.get("next_token")
        assert all(handle and handle.startswith("toushi_") for _, handle in rows)
        cur = the_cursor(collector, engine)
        assert cur.value == max((t["id"] for t in server.tweets), key=int)
        assert "next_token" not in cur.extra
        params = server.calls(SEARCH)[0].params
        assert set(params["tweet.fields"].split(",")) >= {"created_at", "lang", "author_id", "referenced_tweets",
                                                           "public_metrics", "note_tweet"}
        assert params["expansions"] == "author_id" and "lang:ja" in params["query"]

        # Nothing new: one cheap counts request, no search.
        searches = len(server.calls(SEARCH))
        again = XCollector(config(server), FAST).collect(engine, threading.Event())
        assert again.new == 0 and len(server.calls(SEARCH)) == searches
        assert server.calls(COUNTS)[-1].params["since_id"] == cur.value

        # New posts arrive: counts move, the search asks only for what is newer than since_id.
        server.add(make_tweets(4, start=25))
        third = XCollector(config(server), FAST).collect(engine, threading.Event())
        assert third.new == 4 and third.duplicate == 0
        assert server.calls(SEARCH)[-1].params["since_id"] == cur.value
        assert len(stored(engine)) == 29
        assert the_cursor(collector, engine).value == server.tweets[-1]["id"]


def test_search_floor_interval_searches_without_asking_counts(sqlite_engine: sa.Engine) -> None:
    with FakeX(make_tweets(3)) as server:
        cfg = config(server, search_floor_seconds=0)
        XCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        XCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        assert len(server.calls(COUNTS)) == 0 and len(server.calls(SEARCH)) == 2


def test_restart_in_the_middle_of_pagination_resumes_there(engine: sa.Engine) -> None:
    with FakeX(make_tweets(25)) as server:
        cfg = config(server, max_pages_per_pass=1)
        first = XCollector(cfg, FAST).collect(engine, threading.Event())
        assert first.new == 10
        collector = XCollector(cfg, FAST)  # a new process: nothing in memory, only the stored cursor
        cur = the_cursor(collector, engine)
        assert cur.value is None and cur.extra["next_token"] and cur.extra["pending_newest_id"] == server.tweets[-1]["id"]
        # New posts arriving mid-pagination must not be skipped either.
        server.add(make_tweets(2, start=25))
        second = collector.collect(engine, threading.Event())
        assert server.calls(SEARCH)[-1].params["next_token"] == cur.extra["next_token"]
        assert second.new == 10 and second.duplicate == 0
        third = XCollector(cfg, FAST).collect(engine, threading.Event())
        assert third.new == 5
        cur = the_cursor(collector, engine)
        assert "next_token" not in cur.extra and cur.value == server.tweets[24]["id"]
        fourth = XCollector(cfg, FAST).collect(engine, threading.Event())  # the two late arrivals
        assert fourth.new == 2
        assert len(stored(engine)) == 27


# --- faults ------------------------------------------------------------------------------------------------


def test_faults_lose_nothing_and_duplicate_nothing(engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with FakeX(make_tweets(40)) as server:
        now = str(int(time.time()))
        # Consumed one per request, in order; retries ride through them, "none" lets a page through.
        server.fault(
            SEARCH,
            Fault("status", 429, {"x-rate-limit-reset": now, "x-rate-limit-remaining": "0"},
                  b'{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}'),
            Fault("status", 503, body=b'{"title":"Service Unavailable"}'),
            Fault("none"),  # page 1
            Fault("repeat"),  # page 1 again, with the same next_token
            Fault("delay", seconds=0.8),  # over the 0.5 s client timeout
            Fault("reset"),
            Fault("none"),  # page 2
            Fault("truncate"),
            Fault("cut"),
            Fault("none"),  # page 3
            Fault("status", 500, body=b'{"title":"Internal Error"}'),
        )
        collector = XCollector(config(server), FAST)
        result = collector.collect(engine, threading.Event())
        assert result.new == 40 and len(stored(engine)) == 40
        assert result.requests > result.pages
        assert the_cursor(collector, engine).value == server.tweets[-1]["id"]
        log_text = caplog.text
        for cause in ("rate limit reached", "overloaded or in maintenance", "no answer in time",
                      "connection reset", "truncated", "cut off", "server error"):
            assert cause in log_text, cause


def test_posts_missing_fields_are_skipped_and_the_rest_kept(sqlite_engine: sa.Engine, caplog) -> None:
    tweets = make_tweets(6)
    del tweets[2]["created_at"]
    del tweets[4]["author_id"]
    with FakeX(tweets) as server:
        collector = XCollector(config(server), FAST)
        result = collector.collect(sqlite_engine, threading.Event())
    assert (result.new, result.skipped) == (4, 2)
    assert "lacks 'created_at'" in caplog.text and "lacks 'author_id'" in caplog.text
    assert the_cursor(collector, sqlite_engine).value == tweets[-1]["id"]


def test_a_page_repeated_forever_ends_the_pass_but_keeps_the_token(sqlite_engine: sa.Engine) -> None:
    with FakeX(make_tweets(25)) as server:
        collector = XCollector(config(server), FAST)
        original = server.search
        first: dict[str, Any] = {}

        def stuck(params):
            if params.get("next_token"):
                return first["answer"]
            first["answer"] = original(params)
            return first["answer"]

        server.search = stuck
        from monitor.errors import SourceError

        with pytest.raises(SourceError, match="same page"):
            collector.collect(sqlite_engine, threading.Event())
        assert the_cursor(collector, sqlite_engine).extra["next_token"]
        assert len(stored(sqlite_engine)) == 10
        server.search = original
        XCollector(config(server), FAST).collect(sqlite_engine, threading.Event())
        assert len(stored(sqlite_engine)) == 25


def test_shutdown_during_a_rate_limit_wait_returns_promptly(sqlite_engine: sa.Engine) -> None:
    with FakeX(make_tweets(25)) as server:
        collector = XCollector(config(server), RetryPolicy(max_wait=300))
        stop = threading.Event()
        calls = {"n": 0}
        original = server.search

        def limited(params):
            calls["n"] += 1
            if calls["n"] == 2:
                server.fault(SEARCH, Fault("status", 429, {"retry-after": "120"}))
            return original(params)

        server.search = limited
        threading.Timer(0.5, stop.set).start()
        start = time.monotonic()
        result = collector.collect(sqlite_engine, stop)
        assert time.monotonic() - start < 5
        assert result.stopped and result.new == 20
        assert the_cursor(collector, sqlite_engine).extra["next_token"]


# --- budget and credentials ----------------------------------------------------------------------------------


def test_daily_budget_stops_searching_and_status_sees_the_spend(sqlite_engine: sa.Engine) -> None:
    with FakeX(make_tweets(25)) as server:
        cfg = config(server, daily_budget_usd=0.12, cost_per_post_usd=0.005)
        result = XCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        assert result.pages == 2 and result.new == 20
        assert any("daily budget" in n for n in result.notes)
        assert health.spent_today(sqlite_engine, "x") == pytest.approx(0.10)
        again = XCollector(cfg, FAST).collect(sqlite_engine, threading.Event())
        assert again.pages == 0 and len(server.calls(SEARCH)) == 2


def test_missing_and_rejected_credentials_are_one_line_naming_the_variable(sqlite_engine: sa.Engine) -> None:
    with FakeX(make_tweets(3)) as server:
        with pytest.raises(CredentialsError, match="^X_BEARER_TOKEN: set X_BEARER_TOKEN"):
            XCollector(config(server, bearer_token=None), FAST)
        with pytest.raises(CredentialsError) as info:
            XCollector(config(server, bearer_token=Secret("revoked")), FAST).collect(sqlite_engine, threading.Event())
        message = str(info.value)
        assert message.startswith("X_BEARER_TOKEN:") and "401" in message and "Unauthorized" in message
        assert "\n" not in message and "revoked" not in message
        assert len(server.calls(SEARCH)) == 1  # never retried


# --- real recorded X pages ---------------------------------------------------------------------------------


def test_real_recorded_pages_then_japanese_pages(engine: sa.Engine) -> None:
    brexit = shared_path("real", "x", "twarc2_jsonl", "brexit.jsonl")
    kpop = shared_path("real", "x", "twarc2_jsonl", "kpop.jsonl")
    recorded = [twarc_page(brexit), twarc_page(kpop)]
    expected_real = sum(len(json.loads(p)["data"]) for p in recorded)
    with FakeX(make_tweets(15)) as server:
        server.recorded_pages = list(recorded)
        collector = XCollector(config(server), FAST)
        result = collector.collect(engine, threading.Event())
    assert result.new == expected_real + 15 and result.skipped == 0
    with engine.connect() as conn:
        handles = conn.execute(sa.select(sa.func.count()).select_from(Post).where(Post.author_handle.is_not(None))).scalar()
        raw = conn.execute(sa.select(RawPage.endpoint, RawPage.payload).order_by(RawPage.id)).all()
    assert handles == expected_real + 15  # the real pages' includes.users resolved every author
    assert raw[0].payload == recorded[0].decode() and raw[0].endpoint.startswith(server.url + SEARCH)
    assert "good-token" not in " ".join(r.endpoint for r in raw)


def test_real_tweepy_cassette_pages_with_default_fields_are_skipped_not_fatal(sqlite_engine: sa.Engine) -> None:
    search = cassette_body(shared_path("real", "x", "tweepy_cassettes", "test_client_search_recent_tweets.yaml"))
    counts = cassette_body(shared_path("real", "x", "tweepy_cassettes", "test_client_get_recent_tweets_count.yaml"))
    with FakeX(make_tweets(5)) as server:
        server.recorded_pages = [search]
        collector = XCollector(config(server), FAST)
        result = collector.collect(sqlite_engine, threading.Event())
        # tweepy's recording asked for default fields only: no created_at/author_id, so nothing is storable
        assert result.skipped == 10 and result.new == 5
        # The real counts answer (411 posts) says "moved", so the next poll searches.
        server.counts = lambda params: (200, {"content-type": "application/json"}, counts)
        server.add(make_tweets(1, start=5))
        later = XCollector(config(server), FAST).collect(sqlite_engine, threading.Event())
        assert later.new == 1 and len(server.calls(COUNTS)) == 1


def test_a_refused_pagination_token_restarts_the_query_by_status_not_by_message(engine: sa.Engine, caplog) -> None:
    """X answers 400 to an expired next_token; the collector restarts the query (re-reads are stored once).
    The decision reads the HTTP status the error carries, never the words of its message."""
    with FakeX(make_tweets(25)) as server:
        server.fault(SEARCH, Fault("none"), Fault("status", 400, body=b'{"title":"Invalid Request"}'))
        result = XCollector(config(server), FAST).collect(engine, threading.Event())
    assert len(stored(engine)) == 25 and result.new == 25
    assert "pagination token refused" in caplog.text
