"""A loopback X API v2: recent search and recent counts in the real response shapes.

Search pages carry ``data``, ``includes.users`` (authors already sent earlier in the same pagination are
left out, as a gateway may do) and ``meta`` with ``newest_id``, ``oldest_id``, ``result_count`` and
``next_token``; ``since_id`` and ``next_token`` behave like X's: newest first, down to since_id.
A bearer token other than ``good_token`` gets X's 401 problem document.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from servers import Answer, LoopbackHTTP, Request, json_answer

SEARCH = "/2/tweets/search/recent"
COUNTS = "/2/tweets/counts/recent"
BROKERS = ["楽天証券", "SBI証券", "マネックス証券", "松井証券", "SMBC日興証券"]
PHRASES = [
    "{b}の口座に不正ログインされて保有株を全部売られた。身に覚えのない中国株を買われている",
    "{b}で勝手に取引されてた…パスワード変えたのに乗っ取りとか怖すぎる",
    "{b}から不審なメール来たけどフィッシングだよね？みんな気をつけて",
    "家族の{b}口座が乗っ取られて、知らない香港株00700を大量に買われた",
]
BASE_ID = 1902345678901234000
START = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)


def make_tweets(n: int, start: int = 0, authors: int = 7) -> list[dict[str, Any]]:
    """``n`` Japanese posts with increasing ids (newer = bigger), like X's snowflakes."""
    tweets = []
    for i in range(start, start + n):
        author = str(8800 + i % authors)
        tweet: dict[str, Any] = {
            "id": str(BASE_ID + i * 1000),
            "text": PHRASES[i % len(PHRASES)].format(b=BROKERS[i % len(BROKERS)]) + f" ({i})",
            "author_id": author,
            "created_at": (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "lang": "ja",
            "edit_history_tweet_ids": [str(BASE_ID + i * 1000)],
            "public_metrics": {"retweet_count": i % 3, "reply_count": 0, "like_count": i % 5, "quote_count": 0},
        }
        if i % 11 == 5:
            tweet["referenced_tweets"] = [{"type": "quoted", "id": str(BASE_ID + (i - 1) * 1000)}]
        if i % 13 == 7:
            tweet["note_tweet"] = {"text": tweet["text"] + "。長文の続き：証券会社に電話したが繋がらない。"}
        tweets.append(tweet)
    return tweets


def user(author_id: str) -> dict[str, Any]:
    return {"id": author_id, "name": f"投資家{author_id}", "username": f"toushi_{author_id}"}


def _token(since: str | None, until: str) -> str:
    return base64.urlsafe_b64encode(f"{since or ''}|{until}".encode()).decode().rstrip("=")


def _untoken(token: str) -> tuple[str | None, str | None]:
    """A token this fake issued, or (None, None) for a foreign one (a recorded page's) - start over."""
    try:
        since, sep, until = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition("|")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not sep or not until.isdigit():
        return None, None
    return since or None, until


class FakeX(LoopbackHTTP):
    def __init__(self, tweets: list[dict[str, Any]] | None = None, good_token: str = "good-token") -> None:
        super().__init__()
        self.tweets: list[dict[str, Any]] = list(tweets or [])
        self.good_token = good_token
        self.recorded_pages: list[bytes] = []  # served verbatim, one per search request, before the corpus

    def add(self, tweets: list[dict[str, Any]]) -> None:
        self.tweets.extend(tweets)

    def route(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.good_token}":
            return json_answer(
                {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, 401
            )
        if request.path == SEARCH:
            if self.recorded_pages:
                return 200, {"content-type": "application/json"}, self.recorded_pages.pop(0)
            return self.search(request.params)
        if request.path == COUNTS:
            return self.counts(request.params)
        return json_answer({"title": "Not Found Error", "status": 404, "detail": request.path}, 404)

    def search(self, params: dict[str, str]) -> Answer:
        since = params.get("since_id")
        until: str | None = None
        if params.get("next_token"):
            token_since, until = _untoken(params["next_token"])
            since = token_since if until else since
        size = int(params.get("max_results", 10))
        pool = sorted(
            (t for t in self.tweets if (not since or int(t["id"]) > int(since)) and (not until or int(t["id"]) < int(until))),
            key=lambda t: int(t["id"]),
            reverse=True,
        )
        page = pool[:size]
        if not page:
            return json_answer({"meta": {"result_count": 0}})
        # Authors of newer tweets in this pagination were sent on earlier pages already.
        earlier = {t["author_id"] for t in self.tweets if until and int(t["id"]) >= int(until)}
        authors = dict.fromkeys(t["author_id"] for t in page if "author_id" in t)
        meta: dict[str, Any] = {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"], "result_count": len(page)}
        if len(pool) > size:
            meta["next_token"] = _token(since, page[-1]["id"])
        body: dict[str, Any] = {"data": page, "meta": meta}
        users = [user(a) for a in authors if a not in earlier]
        if users:
            body["includes"] = {"users": users}
        return json_answer(body, headers={"x-rate-limit-limit": "450", "x-rate-limit-remaining": "449"})

    def counts(self, params: dict[str, str]) -> Answer:
        since = params.get("since_id")
        fresh = [t for t in self.tweets if not since or int(t["id"]) > int(since)]
        data = [
            {"end": t["created_at"], "start": t["created_at"], "tweet_count": 1} for t in fresh
        ]
        return json_answer({"data": data, "meta": {"total_tweet_count": len(fresh)}})


def cassette_body(path: Path, index: int = 0) -> bytes:
    """The response body of one tweepy cassette interaction, un-gzipped (they are stored as recorded)."""
    import yaml

    interactions = yaml.safe_load(path.read_text(encoding="utf-8"))["interactions"]
    body = interactions[index]["response"]["body"]["string"]
    if isinstance(body, str):
        body = base64.b64decode(body)
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def twarc_page(path: Path, line: int = 1) -> bytes:
    """One twarc2 JSONL line as the API sent it (without twarc's ``__twarc`` envelope)."""
    obj = json.loads(path.read_text(encoding="utf-8").splitlines()[line - 1])
    obj.pop("__twarc", None)
    return json.dumps(obj).encode("utf-8")
