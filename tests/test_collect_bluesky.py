"""Bluesky collector against real loopback servers (a WebSocket Jetstream, an XRPC service), on both DBs.

Payloads start from the real post record and getPostThread answer in ../shared/real/bluesky.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import shared_path
from servers import Fault, wait_until
from servers.bsky_api import SEARCH_POSTS, FakeBsky, post_view
from servers.jetstream import T0_US, FakeJetstream, account_event, identity_event, like_event, post_event
from sqlmodel import select

from monitor.collectors.base import Collector, read_cursor, save_cursor_only
from monitor.collectors.bluesky import (
    JETSTREAM_CURSOR,
    SOURCE,
    BlueskyCollector,
    JetstreamCollector,
    SearchBackfill,
    search_cursor_name,
)
from monitor.collectors.config import BlueskyConfig
from monitor.collectors.retry import RetryPolicy
from monitor.errors import CredentialsError, SourceError
from monitor.settings import Secret
from storage.database import session_scope
from storage.models import Post, RawPage

FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.1, max_wait=30.0)
KEYWORDS = ("楽天証券", "SBI証券", "不正ログイン", "乗っ取り")
DIDS = [f"did:plc:user{i:020d}" for i in range(6)]
STEP = 1_000  # time_us between consecutive events


def real_record() -> dict[str, Any]:
    return json.loads(shared_path("real", "bluesky", "responses", "post_record.json").read_text())["value"]


def real_thread_post() -> dict[str, Any]:
    path = shared_path("real", "bluesky", "responses", "thread_view_post_with_embed_media.json")
    return json.loads(path.read_text())["thread"]["post"]


def stored(engine: sa.Engine) -> dict[str, Post]:
    with session_scope(engine) as session:
        rows = session.exec(select(Post).where(Post.source == SOURCE)).all()
        for row in rows:
            session.expunge(row)
    assert len({r.post_id for r in rows}) == len(rows)
    return {r.post_id: r for r in rows}


def uri(i: int) -> str:
    return f"at://{DIDS[i % len(DIDS)]}/app.bsky.feed.post/3lk{i:010d}"


def stream(n: int, start: int = 0) -> tuple[list[dict[str, Any]], set[str]]:
    """``n`` events, one in three a Japanese keyword post; returns them and the at-uris that must be kept."""
    template = real_record()
    events, keep = [], set()
    for i in range(start, start + n):
        did, rkey, t = DIDS[i % len(DIDS)], f"3lk{i:010d}", T0_US + i * STEP
        if i % 3 == 0:
            events.append(post_event(did, rkey, f"楽天証券の口座に不正ログインされて中国株を買われた ({i})", t,
                                     langs=["ja"], template=template))
            keep.add(uri(i))
        elif i % 3 == 1:
            events.append(post_event(did, rkey, f"今日のランチはカレー ({i})", t, langs=["ja"], template=template))
        else:
            events.append(post_event(did, rkey, f"SBI証券 account hacked? ({i})", t, langs=["en"], template=template))
    return events, keep


def jet_config(server: FakeJetstream, listen: float = 1.0) -> BlueskyConfig:
    return BlueskyConfig(jetstream_url=server.url, keywords=KEYWORDS, listen_seconds=listen)


def jetstream(config: BlueskyConfig, **options: Any) -> JetstreamCollector:
    options = {"page_seconds": 0.1, "rewind_us": 2 * STEP, "recv_timeout": 0.05, **options}
    return JetstreamCollector(config, FAST, **options)


def run_until(collector: Any, engine: sa.Engine, done: Any, timeout: float = 10.0) -> Any:
    """Run a pass in a thread and set ``stop`` once ``done()`` holds, so tests wait no longer than needed."""
    stop = threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = collector.collect(engine, stop)
        except Exception as exc:  # noqa: BLE001 - handed to the test below
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive() and not done():
        time.sleep(0.02)
    time.sleep(0.15)  # let the last page be flushed by time
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the pass did not end after stop was set"
    if "error" in out:
        raise out["error"]
    return out["result"]


# --- Jetstream ---------------------------------------------------------------------------------------


def test_jetstream_keeps_only_japanese_keyword_posts_and_maps_them(engine: sa.Engine) -> None:
    template = real_record()
    thread = real_thread_post()
    quote_embed = thread["record"]["embed"]  # a real recordWithMedia embed quoting another post
    quoted = quote_embed["record"]["record"]["uri"]
    t = T0_US
    with FakeJetstream() as server:
        config = jet_config(server, listen=10)
        collector = jetstream(config)
        events = [
            identity_event(DIDS[0], "taro.bsky.social", t + 1),
            post_event(DIDS[0], "3lkaaa", "楽天証券で勝手に売られた…", t + 2, langs=["ja"], template=template),
            post_event(DIDS[1], "3lkbbb", "ＳＢＩ証券もやられたらしい", t + 3, langs=["ja-JP"],
                       reply_parent="at://did:plc:x/app.bsky.feed.post/3lkaaa"),
            post_event(DIDS[2], "3lkccc", "これ見て、口座の乗っ取りだって", t + 4, langs=["ja"], embed=quote_embed),
            post_event(DIDS[3], "3lkddd", "不正ログインの通知が来た", t + 5, langs=None, created_at="not a date"),
            post_event(DIDS[4], "3lkeee", "SBI証券 was hacked", t + 6, langs=["en"]),
            post_event(DIDS[4], "3lkfff", "楽天証券账户被盗了", t + 7, langs=None),
            post_event(DIDS[5], "3lkggg", "今日は天気がいい", t + 8, langs=["ja"]),
            like_event(DIDS[5], "3lkhhh", t + 9),
            account_event(DIDS[5], t + 10),
        ]
        server.add(*events)
        # Without a cursor a pass starts at the live tail; a saved cursor makes these events replay.
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(t))
        result = run_until(collector, engine, lambda: server.sent and server.sent[-1] >= 9)
        params = server.connections[-1]
        assert params["wantedCollections"] == ["app.bsky.feed.post"]
        assert params["cursor"] == [str(t - 2 * STEP)]
    posts = stored(engine)
    assert set(posts) == {
        f"at://{DIDS[0]}/app.bsky.feed.post/3lkaaa", f"at://{DIDS[1]}/app.bsky.feed.post/3lkbbb",
        f"at://{DIDS[2]}/app.bsky.feed.post/3lkccc", f"at://{DIDS[3]}/app.bsky.feed.post/3lkddd",
    }
    first = posts[f"at://{DIDS[0]}/app.bsky.feed.post/3lkaaa"]
    assert first.author_id == DIDS[0] and first.author_handle == "taro.bsky.social"
    assert first.url == f"https://bsky.app/profile/{DIDS[0]}/post/3lkaaa" and first.lang == "ja"
    assert posts[f"at://{DIDS[1]}/app.bsky.feed.post/3lkbbb"].author_handle is None
    assert posts[f"at://{DIDS[1]}/app.bsky.feed.post/3lkbbb"].reply_to == "at://did:plc:x/app.bsky.feed.post/3lkaaa"
    assert posts[f"at://{DIDS[2]}/app.bsky.feed.post/3lkccc"].quote_of == quoted
    no_date = posts[f"at://{DIDS[3]}/app.bsky.feed.post/3lkddd"]
    assert int(no_date.created_at.timestamp() * 1_000_000) == t + 5  # time_us stands in for a bad createdAt
    assert result.new == 4 and result.skipped == 0
    # The cursor is the last event processed (an account event), not the last post kept.
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(t + 10)
    with session_scope(engine) as session:
        pages = session.exec(select(RawPage).where(RawPage.source == SOURCE)).all()
        assert pages and all("wantedCollections=app.bsky.feed.post" in p.endpoint for p in pages)
        assert sum(len(p.payload.splitlines()) for p in pages) == 4  # matched frames, verbatim


def test_dropped_connections_resume_from_cursor_without_loss_or_duplicates(engine: sa.Engine) -> None:
    events, keep = stream(60)
    with FakeJetstream() as server:
        config = jet_config(server, listen=10)
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        server.add(*events)
        server.drop_after(17, 25, None)  # two crashes mid-stream, then a healthy connection
        result = run_until(jetstream(config), engine, lambda: len(server.sent) >= 3 and server.sent[2] >= 24)
        cursors = [int(c["cursor"][0]) for c in server.connections]
    # Each reconnect asks from the last event read minus the rewind: events 0-16, then 14-38, then 36-59.
    assert cursors == [T0_US - 2 * STEP, T0_US + 16 * STEP - 2 * STEP, T0_US + 38 * STEP - 2 * STEP]
    assert set(stored(engine)) == keep
    assert result.new == len(keep) and result.duplicate >= 1  # replayed overlap stored once
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 59 * STEP)

    # A later pass (a restart) resumes from the saved cursor and stores only what is new.
    more, more_keep = stream(15, start=60)
    with FakeJetstream() as server:
        server.add(*events, *more)
        again = run_until(jetstream(jet_config(server, listen=10)), engine,
                          lambda: bool(server.sent) and server.sent[0] >= 18)
        assert server.connections[0]["cursor"] == [str(T0_US + 57 * STEP)]
    assert set(stored(engine)) == keep | more_keep
    assert again.new == len(more_keep)
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 74 * STEP)


def test_bad_frames_are_skipped_and_the_loop_keeps_running(engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    events, keep = stream(12)
    good = json.dumps(events[0], ensure_ascii=False)
    broken_record = post_event(DIDS[0], "3lkbad", "楽天証券", T0_US + 100 * STEP, langs=["ja"])
    del broken_record["commit"]["record"]["text"]
    no_rkey = post_event(DIDS[0], "3lkbad2", "楽天証券で不正ログイン", T0_US + 101 * STEP, langs=["ja"])
    del no_rkey["commit"]["rkey"]
    with FakeJetstream() as server:
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        server.add(*events[:6])
        server.add_raw(T0_US + 6 * STEP - 1, good[: len(good) // 2])  # truncated JSON
        server.add_raw(T0_US + 6 * STEP - 2, json.dumps({"did": DIDS[1], "kind": "commit"}))  # no time_us
        server.add_raw(T0_US + 6 * STEP - 3, "[1, 2, 3]")
        server.add(broken_record, no_rkey, {"did": DIDS[2], "time_us": T0_US + 102 * STEP, "kind": "commit"})
        server.add(*events[6:])
        total = len(server.entries)
        result = run_until(jetstream(jet_config(server, listen=10)), engine,
                           lambda: bool(server.sent) and server.sent[0] >= total)
    assert result.skipped == 6
    assert set(stored(engine)) == keep
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 102 * STEP)
    assert "not complete JSON" in caplog.text and "lacks 'rkey'" in caplog.text


def test_stop_ends_a_pass_within_a_second_and_keeps_what_was_read(engine: sa.Engine) -> None:
    events, keep = stream(9)
    with FakeJetstream() as server:
        collector = jetstream(jet_config(server, listen=60), page_seconds=30)
        stop = threading.Event()
        out: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: out.setdefault("r", collector.collect(engine, stop)))
        thread.start()
        assert wait_until(lambda: bool(server.connections))
        server.add(*events)  # live tail
        assert wait_until(lambda: server.sent[0] >= 9)
        time.sleep(0.1)
        began = time.monotonic()
        stop.set()
        thread.join(timeout=5)
        took = time.monotonic() - began
    assert not thread.is_alive() and took < 2.0, f"stop took {took:.2f}s"
    assert out["r"].stopped
    assert set(stored(engine)) == keep  # the unflushed page was saved on the way out
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 8 * STEP)


def test_unreachable_jetstream_gives_up_with_one_line(engine: sa.Engine) -> None:
    config = BlueskyConfig(jetstream_url="ws://127.0.0.1:9/subscribe", keywords=KEYWORDS, listen_seconds=5)
    with pytest.raises(SourceError) as info:
        jetstream(config).collect(engine, threading.Event())
    assert "Jetstream connect" in str(info.value) and "\n" not in str(info.value)




# --- searchPosts backfill ----------------------------------------------------------------------------


def search_posts(n: int, start: int = 0) -> list[dict[str, Any]]:
    template = real_thread_post()
    views = []
    for i in range(start, start + n):
        created = f"2025-03-19T06:{i // 60:02d}:{i % 60:02d}.000Z"
        text = f"楽天証券 不正ログインで保有株を売られた ({i})" if i % 4 else f"楽天証券で不正に中国株を買われた ({i})"
        views.append(post_view(DIDS[i % len(DIDS)], f"user{i % len(DIDS)}.bsky.social", f"3ls{i:010d}",
                               text, created, template=template))
    return views


def search_config(server: FakeBsky, **changes: Any) -> BlueskyConfig:
    base = BlueskyConfig(
        handle="alice.test", app_password=Secret("app-pass-1234"), api_url=server.url + "/xrpc",
        search_queries=("楽天証券 不正",), search_limit=3, max_search_pages=10, keywords=KEYWORDS,
    )
    return dataclasses.replace(base, **changes)


def test_fake_search_answers_follow_the_real_lexicon() -> None:
    """Guards the fake itself: every field the lexicons require is present in what it serves."""
    lexicons = shared_path("real", "bluesky", "lexicons")
    defs = json.loads((lexicons / "app.bsky.feed.defs.json").read_text())["defs"]
    actor = json.loads((lexicons / "app.bsky.actor.defs.json").read_text())["defs"]
    post_lex = json.loads((lexicons / "app.bsky.feed.post.json").read_text())["defs"]["main"]["record"]
    view = search_posts(1, start=1)[0]
    assert set(defs["postView"]["required"]) <= set(view)
    assert set(actor["profileViewBasic"]["required"]) <= set(view["author"])
    assert set(post_lex["required"]) <= set(view["record"])


def test_search_paginates_resumes_and_polls_since(engine: sa.Engine) -> None:
    views = search_posts(8)
    english = post_view(DIDS[0], "bob.test", "3lsenglish", "楽天証券 不正 news in English", "2025-03-19T07:00:00.000Z",
                        langs=["en"])
    with FakeBsky(views + [english]) as server:
        # A pass limited to 2 pages stops mid-pagination; the next one resumes at the saved cursor.
        first = SearchBackfill(search_config(server, max_search_pages=2), FAST).collect(engine, threading.Event())
        assert first.new == 6 and any("page limit" in n for n in first.notes)
        saved = read_cursor(engine, SOURCE, search_cursor_name("楽天証券 不正"))
        assert saved.extra["cursor"] == "6" and saved.value is None
        second = SearchBackfill(search_config(server), FAST).collect(engine, threading.Event())
        assert second.new == 2
        calls = server.calls(SEARCH_POSTS)
        assert [c.params.get("cursor") for c in calls] == [None, "3", "6"]
        assert all(c.params["lang"] == "ja" and c.params["q"] == "楽天証券 不正" for c in calls)
        newest = "2025-03-19T06:00:07Z"
        assert read_cursor(engine, SOURCE, search_cursor_name("楽天証券 不正")).value == newest
        # The next sweep asks only for posts since the newest one seen, less the overlap for late indexing.
        server.posts.extend(search_posts(2, start=8))
        third = SearchBackfill(search_config(server), FAST).collect(engine, threading.Event())
        assert server.calls(SEARCH_POSTS)[-1].params["since"] == "2025-03-19T05:50:07Z"
        assert third.new == 2 and third.duplicate == 8
    posts = stored(engine)
    assert set(posts) == {f"at://{DIDS[i % 6]}/app.bsky.feed.post/3ls{i:010d}" for i in range(10)}
    sample = posts[f"at://{DIDS[1]}/app.bsky.feed.post/3ls{1:010d}"]
    assert sample.author_handle == "user1.bsky.social" and sample.lang == "ja"
    assert sample.metrics["likeCount"] == views[1]["likeCount"]


def test_search_waits_for_ratelimit_reset_and_retries_5xx(engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    """The retry after a 429 arrives after the ratelimit-reset time, and not long after it.

    Regression: this test timed the whole pass (login, pages, storing) and flaked both ways on a busy
    machine: too fast when the whole-second reset had already passed (a 0.0 s wait got no grace period),
    too slow when storing was slow. It now measures the wait itself, at the server."""
    error = json.dumps({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}).encode()
    reset = int(time.time()) + 1
    with FakeBsky(search_posts(5)) as server:
        server.fault(
            SEARCH_POSTS,
            Fault("status", 429, {"ratelimit-limit": "3000", "ratelimit-remaining": "0",
                                  "ratelimit-reset": str(reset), "ratelimit-policy": "3000;w=300"}, error),
            Fault("status", 500, body=json.dumps({"error": "InternalServerError", "message": "Internal Server Error"}).encode()),
        )
        result = SearchBackfill(search_config(server), FAST).collect(engine, threading.Event())
        limited, retried = server.calls(SEARCH_POSTS)[:2]
    assert result.new == 5 and len(stored(engine)) == 5
    assert retried.at >= max(reset, limited.at), "the retry came before the rate limit reset"
    assert retried.at - max(reset, limited.at) < 3, "the 429 wait should follow ratelimit-reset, not exceed it"
    assert "rate limit reached (HTTP 429" in caplog.text and "HTTP 500" in caplog.text


def test_long_rate_limit_ends_the_backfill_but_jetstream_still_runs(engine: sa.Engine) -> None:
    error = json.dumps({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}).encode()
    events, keep = stream(6)
    with FakeBsky(search_posts(3)) as api, FakeJetstream() as js:
        api.fault(SEARCH_POSTS, Fault("status", 429, {"ratelimit-reset": str(int(time.time()) + 3600)}, error))
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        js.add(*events)
        config = dataclasses.replace(search_config(api), jetstream_url=js.url, listen_seconds=10)
        collector = BlueskyCollector(config, FAST, page_seconds=0.1, recv_timeout=0.05)
        assert isinstance(collector, Collector)
        result = run_until(collector, engine, lambda: bool(js.sent) and js.sent[0] >= 6)
    assert any(n.startswith("searchPosts:") and "over the 30s limit" in n for n in result.notes), result.notes
    assert set(stored(engine)) == keep


def test_missing_credentials_disable_only_the_backfill(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CredentialsError) as info:
        SearchBackfill(BlueskyConfig(handle="alice.test"), FAST)
    assert str(info.value).startswith("BLUESKY_APP_PASSWORD:") and "\n" not in str(info.value)
    with pytest.raises(CredentialsError) as info:
        SearchBackfill(BlueskyConfig(app_password=Secret("x")), FAST)
    assert str(info.value).startswith("BLUESKY_HANDLE:")

    events, keep = stream(6)
    with FakeJetstream() as server:
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        server.add(*events)
        collector = BlueskyCollector(jet_config(server, listen=10), FAST, page_seconds=0.1, recv_timeout=0.05)
        result = run_until(collector, engine, lambda: bool(server.sent) and server.sent[0] >= 6)
    assert any("BLUESKY_HANDLE" in n for n in result.notes)
    assert set(stored(engine)) == keep


def test_rejected_credentials_give_the_apis_answer_in_one_line(engine: sa.Engine) -> None:
    with FakeBsky(search_posts(3)) as server:
        config = search_config(server, app_password=Secret("wrong-password-9"))
        with pytest.raises(CredentialsError) as info:
            SearchBackfill(config, FAST).collect(engine, threading.Event())
        assert len(server.calls("/xrpc/com.atproto.server.createSession")) == 1  # a refusal is not retried
    message = str(info.value)
    assert "AuthenticationRequired: Invalid identifier or password" in message
    assert "BLUESKY_APP_PASSWORD" in message and "wrong-password-9" not in message and "\n" not in message


def test_a_service_that_keeps_dropping_ends_the_pass_with_one_line(engine: sa.Engine) -> None:
    events, _ = stream(3)
    with FakeJetstream() as server:
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        server.add(*events)
        server.drop_after(*[0] * FAST.attempts)  # every connection is cut before its first event
        with pytest.raises(SourceError) as info:
            jetstream(jet_config(server, listen=10)).collect(engine, threading.Event())
        assert len(server.connections) == FAST.attempts
    assert f"dropped the connection {FAST.attempts} times" in str(info.value) and "JETSTREAM_URL" in str(info.value)
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US)  # nothing read, nothing moved


def test_a_late_event_inside_the_rewind_window_is_kept_without_moving_the_cursor_back(engine: sa.Engine) -> None:
    """Jetstream orders only roughly by time_us: a replay may bring an older event never seen before."""
    events, keep = stream(10)
    with FakeJetstream() as server:
        save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(T0_US))
        server.add(*events)
        run_until(jetstream(jet_config(server, listen=10)), engine, lambda: bool(server.sent) and server.sent[0] >= 10)
        assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 9 * STEP)
        late = post_event(DIDS[1], "3lklate", "楽天証券 乗っ取りの続報", T0_US + 9 * STEP - STEP // 2, langs=["ja"])
        server.add(late)
        again = run_until(jetstream(jet_config(server, listen=10)), engine, lambda: len(server.sent) >= 2 and server.sent[1] >= 3)
    assert set(stored(engine)) == keep | {f"at://{DIDS[1]}/app.bsky.feed.post/3lklate"}
    assert again.new == 1
    assert read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value == str(T0_US + 9 * STEP)
