"""Bluesky's pure parts: language and keyword filters, post records, at-uris and Jetstream frames."""


from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.errors import InputError
from monitor.records import MAX_TEXT_CHARS, RECORD_ERRORS, PostRecord, new_post, parse_timestamp, record_error
from storage.records import LATEST, LIMITS, in_range, loads

log = logging.getLogger(__name__)

SOURCE = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
JETSTREAM_CURSOR = "jetstream"
# Jetstream only roughly orders by time_us, so a reconnect starts this far behind the last event read.
DEFAULT_REWIND_US = 3_000_000
MAX_HANDLES = 100_000
MAX_URI_CHARS = LIMITS["id"]  # posts.post_id / reply_to / quote_of column width (storage.records.LIMITS)
MAX_TIME_US = int(LATEST.timestamp() * 1_000_000)
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\uff66-\uff9f]")





def fold(text: str) -> str:
    """Width- and case-folded text, so ＳＢＩ, sbi and SBI, or ﾛｸﾞｲﾝ and ログイン, compare equal.

    >>> fold("ＳＢＩ証券でﾛｸﾞｲﾝ")
    'sbi証券でログイン'
    """
    return unicodedata.normalize("NFKC", text).casefold()


def is_japanese(record: dict[str, Any]) -> bool:
    """``langs`` holds Japanese; without ``langs``, the text has hiragana or katakana.

    Kanji alone are not enough: Chinese posts share them.

    >>> is_japanese({"langs": ["en", "ja"], "text": "hello"})
    True
    >>> is_japanese({"langs": ["ja-JP"], "text": ""})
    True
    >>> is_japanese({"langs": ["zh"], "text": "乗っ取り"})
    False
    >>> is_japanese({"text": "口座を乗っ取られた"}), is_japanese({"text": "账户被盗"})
    (True, False)
    """
    langs = record.get("langs")
    if isinstance(langs, list) and langs:
        return any(isinstance(lang, str) and lang.lower().split("-")[0] == "ja" for lang in langs)
    text = record.get("text")
    return isinstance(text, str) and _KANA.search(text) is not None


@dataclass(frozen=True)
class KeywordFilter:
    """Any of the keywords, compared after :func:`fold`.

    >>> KeywordFilter.of(["SBI証券", "乗っ取り"]).matches("ｓｂｉ証券の口座が")
    True
    >>> KeywordFilter.of(["SBI証券"]).matches("楽天で買い物")
    False
    """

    folded: tuple[str, ...]

    @classmethod
    def of(cls, keywords: Iterable[str]) -> KeywordFilter:
        return cls(tuple(dict.fromkeys(fold(k).strip() for k in keywords if k and k.strip())))

    def matches(self, text: str) -> bool:
        folded = fold(text)
        return any(k in folded for k in self.folded)


def post_url(did: str, rkey: str) -> str:
    """The bsky.app address of a post (a DID works in place of the handle and never goes stale).

    >>> post_url("did:plc:abc", "3k2yihcrp6f2c")
    'https://bsky.app/profile/did:plc:abc/post/3k2yihcrp6f2c'
    """
    return f"https://bsky.app/profile/{did}/post/{rkey}"


def _uri_of(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("uri"), str):
        return obj["uri"]
    return None


def quoted_uri(embed: Any) -> str | None:
    """The at-uri a post quotes: ``app.bsky.embed.record``, or the record half of ``recordWithMedia``.

    >>> quoted_uri({"$type": "app.bsky.embed.record", "record": {"uri": "at://a/app.bsky.feed.post/1", "cid": "c"}})
    'at://a/app.bsky.feed.post/1'
    >>> quoted_uri({"$type": "app.bsky.embed.images", "images": []}) is None
    True
    """
    if not isinstance(embed, dict):
        return None
    kind = embed.get("$type")
    if kind == "app.bsky.embed.record":
        return _uri_of(embed.get("record"))
    if kind == "app.bsky.embed.recordWithMedia":
        inner = embed.get("record")
        return _uri_of(inner.get("record")) if isinstance(inner, dict) else None
    return None


def record_to_post(
    *,
    did: str,
    rkey: str,
    record: Any,
    handle: str | None = None,
    fallback_time: datetime | None = None,
    metrics: dict[str, Any] | None = None,
) -> PostRecord:
    """An ``app.bsky.feed.post`` record as a PostRecord; ``fallback_time`` stands in for a bad createdAt.

    >>> p = record_to_post(did="did:plc:abc", rkey="3k2", record={"$type": "app.bsky.feed.post",
    ...     "text": "楽天証券が乗っ取られた", "langs": ["ja"], "createdAt": "2025-03-19T06:02:11.000Z",
    ...     "reply": {"root": {"uri": "at://r", "cid": "c"}, "parent": {"uri": "at://p", "cid": "c"}}})
    >>> p.id, p.created_at.isoformat(), p.reply_to, p.lang
    ('at://did:plc:abc/app.bsky.feed.post/3k2', '2025-03-19T06:02:11+00:00', 'at://p', 'ja')
    """
    if not isinstance(record, dict):
        raise InputError(f"post {did}/{rkey}: record must be an object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise InputError(f"post {did}/{rkey}: record has no 'text' string")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"post {did}/{rkey}: text is {len(text):,} characters, over the {MAX_TEXT_CHARS:,} limit")
    try:
        created_at = parse_timestamp(record.get("createdAt"), "createdAt")
        in_range(created_at, "createdAt")
    except (InputError, ValueError):
        if fallback_time is None:
            raise
        created_at = fallback_time  # clients do write odd createdAt values; the relay's time is close
    langs = record.get("langs")
    lang = next((x for x in langs if isinstance(x, str)), None) if isinstance(langs, list) else None
    if isinstance(langs, list) and any(isinstance(x, str) and x.lower().split("-")[0] == "ja" for x in langs):
        lang = "ja"
    uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
    if len(uri) > MAX_URI_CHARS:
        raise InputError(f"post {uri[:60]}...: at-uri is over the {MAX_URI_CHARS}-character id column")
    reply = record.get("reply")
    reply_to = _uri_of(reply.get("parent")) if isinstance(reply, dict) else None
    quote_of = quoted_uri(record.get("embed"))
    return new_post(
        source=SOURCE,
        id=uri,
        created_at=created_at,
        author_id=did,
        author_handle=handle,
        text=text,
        lang=lang,
        url=post_url(did, rkey),
        # A reference too long for its column is dropped rather than failing the whole page's transaction.
        reply_to=reply_to if reply_to and len(reply_to) <= MAX_URI_CHARS else None,
        quote_of=quote_of if quote_of and len(quote_of) <= MAX_URI_CHARS else None,
        metrics=metrics or {},
    )


def split_at_uri(uri: str) -> tuple[str, str, str]:
    """``at://DID/COLLECTION/RKEY`` as its three parts.

    >>> split_at_uri("at://did:plc:abc/app.bsky.feed.post/3k2")
    ('did:plc:abc', 'app.bsky.feed.post', '3k2')
    """
    if not isinstance(uri, str) or not uri.startswith("at://"):
        raise InputError(f"{str(uri)[:80]!r} is not an at:// URI")
    parts = uri[len("at://"):].split("/")
    if len(parts) != 3 or not all(parts):
        raise InputError(f"{uri!r} is not at://DID/COLLECTION/RKEY")
    return parts[0], parts[1], parts[2]


def subscribe_url(base: str, cursor_us: int | None) -> str:
    """The Jetstream URL asking for posts only, replaying from ``cursor_us`` when given.

    >>> subscribe_url("wss://js.example/subscribe", 1700000000000000)
    'wss://js.example/subscribe?wantedCollections=app.bsky.feed.post&cursor=1700000000000000'
    """
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("wantedCollections", "cursor")]
    query.append(("wantedCollections", POST_COLLECTION))
    if cursor_us is not None:
        query.append(("cursor", str(cursor_us)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


@dataclass(frozen=True)
class Verdict:
    """What one Jetstream frame is: ``post`` (kept), ``other`` (read, not kept) or ``skipped`` (bad)."""

    kind: str
    time_us: int | None = None
    post: PostRecord | None = None
    reason: str = ""
    handle: tuple[str, str] | None = None  # (did, handle) learned from an identity event


def judge_event(frame: str | bytes, keywords: KeywordFilter, handles: dict[str, str] | None = None) -> Verdict:
    """Parse and filter one Jetstream frame. Never raises: bad frames come back as ``skipped``.

    >>> import json
    >>> kw = KeywordFilter.of(["楽天証券"])
    >>> ev = {"did": "did:plc:a", "time_us": 5, "kind": "commit", "commit": {"operation": "create",
    ...       "collection": "app.bsky.feed.post", "rkey": "r1", "record": {"text": "楽天証券で不正ログイン",
    ...       "langs": ["ja"], "createdAt": "2025-03-19T06:02:11Z"}}}
    >>> judge_event(json.dumps(ev), kw).kind
    'post'
    >>> judge_event('{"did": "did:plc:a", "time_us": 6, "kind": "co', kw).kind
    'skipped'
    """
    try:
        event = loads(frame)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return Verdict("skipped", reason=f"frame is not complete JSON ({' '.join(str(exc).split())[:200]})")
    if not isinstance(event, dict):
        return Verdict("skipped", reason=f"frame is a JSON {type(event).__name__}, not an event object")
    time_us = event.get("time_us")
    if isinstance(time_us, bool) or not isinstance(time_us, int):
        return Verdict("skipped", reason="event has no integer 'time_us'")
    if not 0 <= time_us < MAX_TIME_US:  # the cursor must never jump past every later event
        return Verdict("skipped", reason=f"event time_us {str(time_us)[:24]} is out of range")
    kind = event.get("kind")
    if kind == "identity":
        ident = event.get("identity")
        if isinstance(ident, dict) and isinstance(ident.get("did"), str) and isinstance(ident.get("handle"), str):
            return Verdict("other", time_us, handle=(ident["did"], ident["handle"]))
        return Verdict("other", time_us)
    if kind != "commit":
        return Verdict("other", time_us)  # account events and kinds added later
    commit = event.get("commit")
    did = event.get("did")
    if not isinstance(commit, dict) or not isinstance(did, str):
        return Verdict("skipped", time_us, reason="commit event lacks 'did' or 'commit'")
    if commit.get("operation") != "create" or commit.get("collection") != POST_COLLECTION:
        return Verdict("other", time_us)
    rkey, record = commit.get("rkey"), commit.get("record")
    if not isinstance(rkey, str) or not rkey or not isinstance(record, dict):
        return Verdict("skipped", time_us, reason=f"post by {did} lacks 'rkey' or 'record'")
    text = record.get("text")
    if not isinstance(text, str):
        return Verdict("skipped", time_us, reason=f"post {did}/{rkey} has no 'text' string")
    if not is_japanese(record) or not keywords.matches(text):
        return Verdict("other", time_us)
    try:
        post = record_to_post(
            did=did, rkey=rkey, record=record, handle=(handles or {}).get(did),
            fallback_time=datetime.fromtimestamp(time_us / 1_000_000, UTC),
        )
    except RECORD_ERRORS as exc:
        return Verdict("skipped", time_us, reason=str(record_error(exc)))
    return Verdict("post", time_us, post=post)


