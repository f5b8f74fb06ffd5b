"""A loopback Bluesky XRPC service: ``com.atproto.server.createSession`` and ``app.bsky.feed.searchPosts``.

Answers follow the lexicons in ``../shared/real/bluesky/lexicons``: a session carries ``accessJwt`` (a JWT
whose ``exp`` the atproto SDK reads to decide when to refresh), ``refreshJwt``, ``handle``, ``did``;
search answers ``{"posts": [postView...], "cursor"?}``, newest first, ``cursor`` an opaque offset, the
last page without one. ``q`` matches when every space-separated term occurs in the text; ``lang`` and
``since`` filter like the real service. Errors are XRPC error documents (``{"error", "message"}``):
a wrong password gets 401 ``AuthenticationRequired``, a missing or unknown token 401 too.
Queue 429/500 answers with :meth:`LoopbackHTTP.fault`.
"""

from __future__ import annotations

import base64
import json
import time
import unicodedata
from typing import Any

from servers import Answer, LoopbackHTTP, Request, json_answer

CREATE_SESSION = "/xrpc/com.atproto.server.createSession"
SEARCH_POSTS = "/xrpc/app.bsky.feed.searchPosts"


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def fake_jwt(did: str, scope: str, lifetime: int = 7200) -> str:
    now = int(time.time())
    header = _b64({"typ": "at+jwt", "alg": "ES256K"})
    payload = _b64({"scope": scope, "sub": did, "iat": now, "exp": now + lifetime, "aud": "did:web:127.0.0.1"})
    return f"{header}.{payload}.c2lnbmF0dXJl"


def post_view(
    did: str,
    handle: str,
    rkey: str,
    text: str,
    created_at: str,
    *,
    langs: list[str] | None = None,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``app.bsky.feed.defs#postView``; ``template`` is a real one whose other fields are kept."""
    view: dict[str, Any] = json.loads(json.dumps(template)) if template else {}
    author = dict(view.get("author") or {})
    author.update({"did": did, "handle": handle, "displayName": f"投資家 {handle.split('.')[0]}"})
    record = dict(view.get("record") or {})
    record.update({"$type": "app.bsky.feed.post", "text": text, "createdAt": created_at, "langs": langs or ["ja"]})
    record.pop("embed", None)
    view.pop("embed", None)  # the embed view would describe a record we no longer carry
    view.update({
        "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
        "cid": f"bafyrei{rkey}",
        "author": author,
        "record": record,
        "indexedAt": created_at,
        "likeCount": len(text) % 7,
        "replyCount": 0,
        "repostCount": len(text) % 3,
        "quoteCount": 0,
        "labels": [],
    })
    return view


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class FakeBsky(LoopbackHTTP):
    def __init__(self, posts: list[dict[str, Any]] | None = None, *, identifier: str = "alice.test",
                 password: str = "app-pass-1234", did: str = "did:plc:alicealicealice") -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = list(posts or [])
        self.identifier = identifier
        self.password = password
        self.did = did
        self.tokens: set[str] = set()

    def route(self, request: Request) -> Answer:
        if request.path == CREATE_SESSION and request.method == "POST":
            return self.create_session(request)
        if request.path == SEARCH_POSTS:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                return json_answer({"error": "AuthenticationRequired", "message": "Authentication Required"}, 401)
            return self.search(request.params)
        return json_answer({"error": "MethodNotImplemented", "message": "Method Not Implemented"}, 501)

    def create_session(self, request: Request) -> Answer:
        try:
            body = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return json_answer({"error": "InvalidRequest", "message": "Request body is not JSON"}, 400)
        if body.get("identifier") != self.identifier or body.get("password") != self.password:
            return json_answer({"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, 401)
        access = fake_jwt(self.did, "com.atproto.appPass")
        self.tokens.add(access)
        return json_answer({
            "accessJwt": access,
            "refreshJwt": fake_jwt(self.did, "com.atproto.refresh", 86400),
            "handle": self.identifier,
            "did": self.did,
            "active": True,
        })

    def search(self, params: dict[str, str]) -> Answer:
        if not params.get("q"):
            return json_answer({"error": "InvalidRequest", "message": 'Error: Params must have the property "q"'}, 400)
        terms = [_fold(t) for t in params["q"].split() if t]
        lang = params.get("lang")
        since = params.get("since")
        hits = [
            p for p in self.posts
            if all(t in _fold(p["record"]["text"]) for t in terms)
            and (not lang or lang in (p["record"].get("langs") or []))
            and (not since or p["indexedAt"] >= since)
        ]
        hits.sort(key=lambda p: (p["indexedAt"], p["uri"]), reverse=True)
        limit = max(1, min(100, int(params.get("limit", 25))))
        offset = int(params["cursor"]) if params.get("cursor", "").isdigit() else 0
        page = hits[offset:offset + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            body["cursor"] = str(offset + limit)
        return json_answer(body)
