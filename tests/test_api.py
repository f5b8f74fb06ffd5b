"""The HTTP API contract of DESIGN.md on SQLite and PostgreSQL: routes, shapes, bearer tokens, paging,
422s that name the field, hostile search text, and one real uvicorn server on loopback."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from monitor.api.app import create_app  # noqa: E402
from monitor.api.config import ApiConfig  # noqa: E402
from storage.database import open_existing_store, open_store  # noqa: E402
from storage.export import Pseudonymizer  # noqa: E402
from tests.research_fixtures import POSTS, T0, add_detector_state_and_alert, build_store  # noqa: E402

TOKEN = "tok-" + "x" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PSEUDONYMS = Pseudonymizer(b"api-test-pseudonym-key")


@pytest.fixture
def store_url(db_url):
    engine = open_store(db_url)
    build_store(engine)
    add_detector_state_and_alert(engine)
    engine.dispose()
    return db_url


@pytest.fixture
def client(store_url):
    engine = open_existing_store(store_url)
    app = create_app(engine, ApiConfig(tokens=f"other-token, {TOKEN}", max_page_size=5, page_size=3),
                     pseudonymizer=PSEUDONYMS)
    with TestClient(app) as c:
        yield c
    engine.dispose()


def test_healthz_is_open_and_every_api_route_needs_a_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    for path in ("/api/posts", "/api/posts/x:1", "/api/counts?key=overall", "/api/alerts"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": TOKEN}).status_code == 401  # no scheme
        assert client.get(path, headers={"Authorization": "Bearer other-token"}).status_code != 401
        assert client.get(path, headers=AUTH).status_code == 200


def test_posts_search_filters_and_shape(client):
    body = client.get("/api/posts", params={"q": "約定", "broker": "楽天証券", "limit": 5, "order": "relevance"}, headers=AUTH).json()
    assert set(body) == {"items", "next_cursor"}
    items = body["items"]
    assert [i["id"] for i in items][0] == "6" and sorted(i["id"] for i in items) == ["2", "6", "8"]
    first = items[0]
    for field in ("source", "id", "created_at", "author_id", "text", "label", "brokers", "tickers"):
        assert field in first
    assert first["label"] == "victim_report" and first["brokers"] == ["楽天証券"]
    assert [first["text"][a:b] for a, b in first["highlights"]] == ["約定", "約定", "約定"]
    one = client.get("/api/posts", params={"q": "株"}, headers=AUTH).json()["items"]
    assert sorted(i["id"] for i in one) == ["1", "3", "5"]
    since = client.get("/api/posts", params={"since": (T0 + timedelta(minutes=30)).isoformat()}, headers=AUTH)
    assert [i["id"] for i in since.json()["items"]] == ["8", "7"]


def test_cursor_paging_walks_every_post_once(client):
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = client.get("/api/posts", params=params, headers=AUTH).json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(p[0] for p in POSTS) and len(seen) == len(set(seen))


def test_one_post(client):
    body = client.get("/api/posts/x:4", headers=AUTH).json()
    assert body["id"] == "4" and body["tickers"] == ["0700.HK"]
    assert {m["value"] for m in body["mentions"]} == {"SBI証券", "0700.HK"}
    assert client.get("/api/posts/x:404", headers=AUTH).status_code == 404
    assert client.get("/api/posts/nocolon", headers=AUTH).status_code == 422


def test_counts_series(client):
    params = {"key": "broker:楽天証券", "bucket": "1h", "since": T0.isoformat(),
              "until": (T0 + timedelta(hours=2)).isoformat()}
    body = client.get("/api/counts", params=params, headers=AUTH).json()
    assert body["key"] == "broker:楽天証券" and body["bucket"] == "1h"
    assert [p["count"] for p in body["series"]] == [3, 0]
    assert body["series"][0]["t"].startswith("2025-03-19T06:00:00")
    assert body["series"][0]["expected"] > 0


def test_alerts_with_events_and_samples(client):
    items = client.get("/api/alerts", params={"status": "all"}, headers=AUTH).json()["items"]
    assert len(items) == 1
    alert = items[0]
    assert (alert["kind"], alert["key"], alert["status"]) == ("broker", "楽天証券", "open")
    assert [e["event"] for e in alert["events"]] == ["open", "update"]
    assert alert["events"][1]["count"] == 4
    assert [s["key"] for s in alert["sample_posts"]] == ["x:1", "x:2", "x:6"]
    assert client.get("/api/alerts", params={"status": "resolved"}, headers=AUTH).json() == {"items": []}


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "6"}, "limit"), ({"limit": "lots"}, "limit"),
    ({"since": "yesterday"}, "since"), ({"since": "2025-03-19T15:00:00"}, "since"),
    ({"label": "spam"}, "label"), ({"cursor": "not-a-cursor"}, "cursor"), ({"q": "株" * 3_400}, "q"),
    ({"q": '"*"'}, "q"), ({"order": "random"}, "order"),
])
def test_malformed_parameters_are_422_naming_the_field(client, params, field):
    response = client.get("/api/posts", params=params, headers=AUTH)
    assert response.status_code == 422
    assert any(d["loc"][-1] == field for d in response.json()["detail"])


@pytest.mark.parametrize(("params", "field"), [
    ({"key": "楽天証券"}, "key"), ({"key": "overall", "bucket": "soon"}, "bucket"), ({}, "key"),
    ({"key": "overall", "bucket": "1s", "since": "2020-01-01T00:00:00Z"}, "since"),
])
def test_counts_422s(client, params, field):
    response = client.get("/api/counts", params=params, headers=AUTH)
    assert response.status_code == 422
    assert any(d["loc"][-1] == field for d in response.json()["detail"])


HOSTILE = ['"', "*", "株 OR 1=1", "NEAR(株 約定)", "'; DROP TABLE posts; --", "%", "_", "\\", "株\x00",
           "a" * 10_000, "株" * 3_400, "(((((", "col:株", "\u202e株", "🍣株"]  # 10 kB of text, twice


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_search_text_never_fails_the_server(client, q):
    response = client.get("/api/posts", params={"q": q}, headers=AUTH)
    assert response.status_code in (200, 422), response.text
    assert client.get("/api/posts", headers=AUTH).status_code == 200  # the store is intact


def test_lone_surrogates_in_the_raw_query_string(client):
    for raw in ("%ED%A0%80%E6%A0%AA", "%F0%28%8C%28", "%FF"):
        response = client.get(f"/api/posts?q={raw}", headers=AUTH)
        assert response.status_code in (200, 422), response.text
        response = client.get(f"/api/posts?limit={raw}", headers=AUTH)
        assert response.status_code == 422


def test_authors_are_pseudonymised_as_in_exports_and_filtered_by_pseudonym(client):
    """No raw author id, handle or handle-bearing link leaves the API; the author filter takes what it shows."""
    items = client.get("/api/posts", params={"limit": 5, "order": "oldest"}, headers=AUTH).json()["items"]
    items += client.get("/api/posts", params={"limit": 5, "order": "oldest", "since": (T0 + timedelta(minutes=21)).isoformat()},
                        headers=AUTH).json()["items"]
    raw = {pid: author for pid, _m, author, *_ in POSTS}
    assert {i["id"] for i in items} == set(raw)
    for item in items:
        assert item["author_id"] == PSEUDONYMS.pseudonym(item["source"], raw[item["id"]])  # the exports' hash
        assert item["author_handle"] is None
        assert item["url"] in (None, f"https://x.com/i/web/status/{item['id']}")
    one = client.get("/api/posts/x:1", headers=AUTH).json()
    assert one["author_id"] == PSEUDONYMS.pseudonym("x", "u1") and one["url"] == "https://x.com/i/web/status/1"
    u1 = PSEUDONYMS.pseudonym("x", "u1")
    by_author = client.get("/api/posts", params={"author": u1}, headers=AUTH).json()["items"]
    assert sorted(i["id"] for i in by_author) == ["1", "6"]
    assert client.get("/api/posts", params={"author": u1, "source": "bluesky"}, headers=AUTH).json()["items"] == []
    assert client.get("/api/posts", params={"author": "a_" + "0" * 20}, headers=AUTH).json()["items"] == []
    refused = client.get("/api/posts", params={"author": "u1"}, headers=AUTH)  # a raw id would reveal who posted
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "author"]
    alert = client.get("/api/alerts", params={"status": "all"}, headers=AUTH).json()["items"][0]
    assert [s["url"] for s in alert["sample_posts"]] == [f"https://x.com/i/web/status/{k[2:]}" for k in ("x:1", "x:2", "x:6")]
    assert "h_u1" not in client.get("/api/alerts", params={"status": "all"}, headers=AUTH).text


def test_raw_authors_only_when_asked_for(store_url):
    engine = open_existing_store(store_url)
    with pytest.raises(ValueError, match="raw_authors"):
        create_app(engine, ApiConfig(tokens=TOKEN))  # neither a key nor an explicit choice
    with TestClient(create_app(engine, ApiConfig(tokens=TOKEN), raw_authors=True)) as raw:
        items = raw.get("/api/posts", params={"author": "u1"}, headers=AUTH).json()["items"]
        assert sorted(i["id"] for i in items) == ["1", "6"] and {i["author_handle"] for i in items} == {"h_u1"}
    engine.dispose()


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/api/posts", "/api/counts", "/api/alerts"} <= set(paths)


def test_the_api_cannot_write(store_url):
    """Every connection of the app is read-only, whatever a route might try."""
    import sqlalchemy as sa

    engine = open_existing_store(store_url)
    create_app(engine, ApiConfig(tokens=TOKEN), pseudonymizer=PSEUDONYMS)
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM posts"))
    engine.dispose()


def test_a_real_server_on_loopback(store_url):
    from servers import serving

    engine = open_existing_store(store_url)
    app = create_app(engine, ApiConfig(tokens=TOKEN), pseudonymizer=PSEUDONYMS)
    try:
        with serving(app) as base:
            assert httpx.get(f"{base}/healthz").status_code == 200
            assert httpx.get(f"{base}/api/posts").status_code == 401
            body = httpx.get(f"{base}/api/posts?q={quote('中国株')}", headers=AUTH).json()
            assert [i["id"] for i in body["items"]] == ["1"]
            assert httpx.get(f"{base}/api/posts?q=%ED%A0%80", headers=AUTH).status_code in (200, 422)
            page = httpx.get(f"{base}/").text
            assert '<svg id="chart"' in page
            assert httpx.get(f"{base}/static/dashboard.js").status_code == 200
    finally:
        engine.dispose()


def test_the_dashboard_loads_nothing_from_elsewhere():
    """No build step, nothing fetched from the internet: every script, style and image is ours, relative."""
    import re

    from monitor.api.app import STATIC

    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", text) + re.findall(r"""url\(([^)]+)\)""", text)
        refs += re.findall(r"""(?:fetch|import)\(\s*["']([^"']+)""", text)
        assert all(r.startswith("/") and not r.startswith("//") for r in refs), (path.name, refs)
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text  # store text only as textContent


def test_serve_refuses_to_start_without_tokens_or_store(store_url, tmp_path, monkeypatch, capsys):
    from monitor.cli import main

    monkeypatch.delenv("MONITOR_API_TOKENS", raising=False)
    monkeypatch.delenv("MONITOR_API_TOKENS_FILE", raising=False)
    assert main(["serve", "--db", store_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MONITOR_API_TOKENS is not set" in err
    monkeypatch.setenv("MONITOR_API_TOKENS", "t")
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY_FILE", raising=False)
    assert main(["serve", "--db", store_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MONITOR_PSEUDONYM_KEY is not set" in err and "--raw-authors" in err
    missing = tmp_path / "none" / "x.sqlite"
    assert main(["serve", "--db", f"sqlite:///{missing}"]) == 1
    assert "no store at" in capsys.readouterr().err and not missing.parent.exists()


def test_a_request_over_the_query_time_limit_is_stopped_with_503(db_url):
    """A ranked, filtered one-character search over 30,000 posts (every match scored) takes longer than 10 ms;
    the limit cuts it off."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    from query import generate  # the benchmark's generator: bulk rows indexed by storage.search

    engine = open_store(db_url)
    generate(engine, 30_000)
    engine.dispose()
    engine = open_existing_store(db_url)
    with TestClient(create_app(engine, ApiConfig(tokens=TOKEN, query_timeout_ms=10), raw_authors=True)) as strict:
        response = strict.get("/api/posts", params={"q": "株", "source": "x", "order": "relevance"}, headers=AUTH)
        assert response.status_code == 503
        assert "longer than 10 ms" in response.json()["detail"]
        assert strict.get("/healthz").status_code == 200  # the connection is usable again
    engine.dispose()
    engine = open_existing_store(db_url)
    with TestClient(create_app(engine, ApiConfig(tokens=TOKEN, query_timeout_ms=60_000), raw_authors=True)) as patient:
        assert patient.get("/api/posts", params={"q": "株", "source": "x", "order": "relevance"},
                           headers=AUTH).status_code == 200
    engine.dispose()
