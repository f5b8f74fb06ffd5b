"""A loopback Reddit API: the token endpoint and subreddit listings (new, comments, search).

Listings have Reddit's shape (``{"kind": "Listing", "data": {"after", "children": [{"kind": "t3"|"t1",
"data": {...}}]}}``), newest first, paged with ``after``. Wrong client credentials get Reddit's 401.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from servers import Answer, LoopbackHTTP, Request, json_answer

TOKEN = "/api/v1/access_token"
BASE_CREATED = 1742364000  # 2025-03-19T06:00:00Z
TITLES = [
    "楽天証券で不正ログイン、勝手に中国株を買われました",
    "SBI証券の口座が乗っ取られた件、補償はどうなる？",
    "証券口座のフィッシングメールが増えているので注意",
    "マネックス証券から身に覚えのない約定通知が来た",
]


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
        if not number:
            return out


def make_things(sub: str, n: int, *, kind: str = "t3", start: int = 0) -> list[dict[str, Any]]:
    """``n`` Japanese submissions (t3) or comments (t1) of ``sub``; bigger index = newer."""
    things = []
    for i in range(start, start + n):
        ident = _b36(1_000_000 + i * 7 + (0 if kind == "t3" else 3))
        data: dict[str, Any] = {
            "id": ident, "name": f"{kind}_{ident}", "subreddit": sub, "created_utc": float(BASE_CREATED + i * 60),
            "author": f"tokyo_investor{i % 5}", "author_fullname": f"t2_{_b36(9000 + i % 5)}", "score": i % 7,
            "permalink": f"/r/{sub}/comments/{ident}/", "over_18": False,
        }
        if kind == "t3":
            data.update(title=TITLES[i % len(TITLES)] + f" ({i})", selftext="ログイン履歴に海外IPがありました。" if i % 2 else "",
                        num_comments=i % 4)
        else:
            data.update(body=f"うちも{TITLES[i % len(TITLES)]}。サポートに電話中です ({i})", parent_id=f"t3_{_b36(1_000_000)}")
        things.append({"kind": kind, "data": data})
    return things


class FakeReddit(LoopbackHTTP):
    def __init__(self, client_id: str = "app-id", secret: str = "app-secret") -> None:
        super().__init__()
        self.credentials = (client_id, secret)
        self.listings: dict[str, list[dict[str, Any]]] = {}  # path -> things, any order
        self.recorded: dict[str, list[bytes]] = {}  # path -> bodies served verbatim first

    def route(self, request: Request) -> Answer:
        if request.path == TOKEN:
            auth = request.headers.get("authorization", "")
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if auth != expected:
                return json_answer({"message": "Unauthorized", "error": 401}, 401)
            return json_answer({"access_token": "loopback-token", "token_type": "bearer", "expires_in": 3600, "scope": "*"})
        if request.headers.get("authorization", "").lower() != "bearer loopback-token":
            return json_answer({"message": "Unauthorized", "error": 401}, 401)
        path = request.path.rstrip("/")
        if self.recorded.get(path):
            return 200, {"content-type": "application/json; charset=UTF-8"}, self.recorded[path].pop(0)
        if path not in self.listings:
            return json_answer({"message": "Not Found", "error": 404}, 404)
        things = sorted(self.listings[path], key=lambda t: (t["data"].get("created_utc", 0), t["data"]["name"]), reverse=True)
        after = request.params.get("after")
        if after:
            names = [t["data"]["name"] for t in things]
            things = things[names.index(after) + 1:] if after in names else []
        limit = int(request.params.get("limit", 25))
        page = things[:limit]
        next_after = page[-1]["data"]["name"] if len(things) > limit else None
        return json_answer({"kind": "Listing", "data": {"after": next_after, "dist": len(page), "modhash": "",
                                                        "geo_filter": "", "children": page, "before": None}},
                           headers={"x-ratelimit-remaining": "99", "x-ratelimit-used": "1", "x-ratelimit-reset": "300"})


def cassette_response(path: Path, uri_part: str) -> bytes:
    """The body of the first interaction of a praw/prawcore cassette whose URI contains ``uri_part``."""
    for interaction in json.loads(path.read_text(encoding="utf-8"))["interactions"]:
        if uri_part in interaction["request"]["uri"]:
            return interaction["response"]["body"]["string"].encode("utf-8")
    raise LookupError(uri_part)
