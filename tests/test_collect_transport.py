"""The collectors' one HTTP seam (monitor/collectors/transport.py) and public client-library APIs only.

* Every request of the X, Reddit and Bluesky-search collectors goes through the ``transport`` they are
  given: a recording wrapper around the real ``httpx`` transport sees exactly what the loopback servers
  received, and an ``httpx.MockTransport`` alone (no socket) is enough to collect.
* No module in monitor/collectors/ touches a client library's private names (``._x`` on anything but
  ``self``/``cls``, private imports, private methods overridden in a library subclass).
"""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from servers.bsky_api import CREATE_SESSION, SEARCH_POSTS, FakeBsky, post_view
from servers.reddit_api import TOKEN, FakeReddit, make_things
from servers.x_api import SEARCH, FakeX, make_tweets

from monitor.collectors.bluesky import SearchBackfill
from monitor.collectors.config import BlueskyConfig, RedditConfig, XConfig
from monitor.collectors.reddit import RedditCollector
from monitor.collectors.retry import RetryPolicy
from monitor.collectors.x import XCollector
from monitor.settings import Secret
from storage.models import Post, RawPage

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_wait=5.0)
COLLECTORS = Path(__file__).resolve().parents[1] / "monitor" / "collectors"
SDK_MODULES = ("tweepy", "praw", "prawcore", "atproto", "atproto_client", "requests", "httpx", "urllib3")


class Recording(httpx.BaseTransport):
    """The real network transport, noting every request that passes the seam."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return self.inner.handle_request(request)


def server_paths(server) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests]


def sources(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Post.source, sa.func.count()).group_by(Post.source)).all()
    return {source: n for source, n in rows}


def test_x_requests_go_through_the_transport(engine: sa.Engine) -> None:
    seam = Recording()
    with FakeX(make_tweets(25)) as server:
        config = XConfig(bearer_token=Secret("good-token"), api_base_url=server.url, brokers=("楽天証券",),
                         incident_terms=("不正ログイン",), max_results=10, timeout_seconds=2.0, daily_budget_usd=100.0)
        result = XCollector(config, FAST, transport=seam).collect(engine, threading.Event())
        assert result.pages == 3 and result.new > 0
        assert seam.seen == server_paths(server) and seam.seen[0] == ("GET", SEARCH)


def test_reddit_requests_go_through_the_transport(engine: sa.Engine) -> None:
    seam = Recording()
    with FakeReddit() as server:
        server.listings["/r/JapanFinance/new"] = make_things("JapanFinance", 15)
        config = RedditConfig(client_id=Secret("app-id"), client_secret=Secret("app-secret"),
                              user_agent="incident-monitor-tests/0.1", oauth_url=server.url, www_url=server.url,
                              subreddits=("JapanFinance",), search_queries=(), include_comments=False, limit=10,
                              timeout_seconds=2.0)
        result = RedditCollector(config, FAST, transport=seam).collect(engine, threading.Event())
        assert result.new == 15
        assert seam.seen == server_paths(server) and seam.seen[0] == ("POST", TOKEN)


def test_bluesky_search_requests_go_through_the_transport(engine: sa.Engine) -> None:
    seam = Recording()
    views = [post_view("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "user.test", f"3ls{i:010d}", f"楽天証券 不正ログイン ({i})",
                       f"2025-03-19T06:00:0{i}.000Z") for i in range(4)]
    with FakeBsky(views) as server:
        config = BlueskyConfig(handle="alice.test", app_password=Secret("app-pass-1234"), api_url=server.url + "/xrpc",
                               search_queries=("楽天証券 不正",), search_limit=3)
        result = SearchBackfill(config, FAST, transport=seam).collect(engine, threading.Event())
        assert result.new == 4 and result.pages == 2
        assert seam.seen == server_paths(server)
        assert seam.seen[0] == ("POST", CREATE_SESSION) and seam.seen[1:] == [("GET", SEARCH_POSTS)] * 2


def test_a_mock_transport_alone_is_enough(engine: sa.Engine) -> None:
    """No server, no socket: the seam is the only way out."""
    listing = {"kind": "Listing", "data": {"after": None, "children": make_things("JapanFinance", 2)}}
    body = json.dumps(listing, ensure_ascii=False)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN:
            return httpx.Response(200, json={"access_token": "t", "token_type": "bearer", "expires_in": 3600})
        assert request.headers["authorization"] == "bearer t"
        return httpx.Response(200, text=body, headers={"content-type": "application/json"})

    config = RedditConfig(client_id=Secret("id"), client_secret=Secret("secret"), user_agent="incident-monitor-tests/0.1",
                          oauth_url="https://oauth.example", www_url="https://www.example", subreddits=("JapanFinance",),
                          search_queries=(), include_comments=False)
    result = RedditCollector(config, FAST, transport=httpx.MockTransport(answer)).collect(engine, threading.Event())
    assert result.new == 2 and sources(engine) == {"reddit": 2}
    with engine.connect() as conn:
        stored = conn.execute(sa.select(RawPage.payload, RawPage.endpoint)).one()
    assert stored.payload == body and stored.endpoint.startswith("https://oauth.example/r/JapanFinance/new?")


# --- public client-library APIs only -----------------------------------------------------------------------


def private_uses(source: str) -> list[str]:
    """Private names of other objects or libraries used in ``source``: ``x._name`` on anything but
    ``self``/``cls``, private names imported from a client library, private methods defined in a class
    that derives from one."""
    tree = ast.parse(source)
    found: list[str] = []
    library_names: set[str] = set()

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for alias in node.names:
                full = f"{module}.{alias.name}" if module else alias.name
                if full.split(".")[0] in SDK_MODULES:
                    library_names.add((alias.asname or alias.name).split(".")[0])
                    if any(private(part) for part in full.split(".")):
                        found.append(f"line {node.lineno}: imports {full}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(base).split(".")[0] for base in node.bases}
            if bases & library_names:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and private(item.name):
                        found.append(f"line {item.lineno}: {node.name} overrides {item.name}")
    return found


def test_the_check_finds_the_private_uses_it_is_for() -> None:
    old = (
        "from prawcore.sessions import FiniteRetryStrategy\n"
        "from atproto_client.request import Request\n"
        "import tweepy\n"
        "for core in (reddit._core, reddit._read_only_core):\n"
        "    core._retry_strategy_class = None\n"
        "class RecordingRequest(Request):\n"
        "    def _send_request(self, method, url):\n"
        "        return super()._send_request(method, url)\n"
        "class Client(tweepy.Client):\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
    )
    uses = private_uses(old)
    assert len(uses) == 5, uses
    assert any("overrides _send_request" in u for u in uses) and any("reddit._core" in u for u in uses)
    assert private_uses("from monitor.collectors.x import _private\nself._fine = obj.public\n") == []


@pytest.mark.parametrize("path", sorted(COLLECTORS.rglob("*.py")), ids=lambda p: str(p.relative_to(COLLECTORS)))
def test_collectors_use_only_public_client_library_apis(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8")) == []
