"""Parsing of incoming records: the DESIGN.md Post record and X API v2 (twarc2) pages.

Pure functions: a dict in, :class:`PostRecord` objects out, or :class:`~monitor.errors.InputError` with the
reason. Reading files line by line (with line numbers) lives in :mod:`monitor.ingest`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.errors import InputError

KNOWN_SOURCES = frozenset({"x", "reddit", "bluesky", "5ch", "web"})
MAX_TEXT_CHARS = 100_000  # longer "posts" are not posts; the cap keeps one bad line from filling the store


@dataclass(frozen=True, slots=True)
class PostRecord:
    """The Post record of DESIGN.md, validated."""

    source: str
    id: str
    created_at: datetime  # timezone-aware
    author_id: str
    text: str
    author_handle: str | None = None
    lang: str | None = None
    url: str | None = None
    repost_of: str | None = None
    reply_to: str | None = None
    quote_of: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "author_id": self.author_id,
            "author_handle": self.author_handle,
            "text": self.text,
            "lang": self.lang,
            "url": self.url,
            "repost_of": self.repost_of,
            "reply_to": self.reply_to,
            "quote_of": self.quote_of,
            "metrics": dict(self.metrics),
        }


def parse_timestamp(value: Any, field_name: str = "created_at") -> datetime:
    """An ISO 8601 timestamp WITH an offset (``Z`` accepted) as an aware datetime.

    >>> parse_timestamp("2025-03-19T15:02:11+09:00").isoformat()
    '2025-03-19T15:02:11+09:00'
    >>> parse_timestamp("2021-04-08T19:34:32.000Z").isoformat()
    '2021-04-08T19:34:32+00:00'
    >>> parse_timestamp("2025-03-19 15:02")
    Traceback (most recent call last):
    ...
    monitor.errors.InputError: created_at '2025-03-19 15:02' has no UTC offset: write it as ISO 8601 with an offset, e.g. 2025-03-19T15:02:11+09:00
    """
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{field_name} must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise InputError(
            f"{field_name} {text[:40]!r} is not an ISO 8601 timestamp: write e.g. 2025-03-19T15:02:11+09:00"
        ) from None
    if parsed.tzinfo is None:
        raise InputError(
            f"{field_name} {text[:40]!r} has no UTC offset: write it as ISO 8601 with an offset, "
            "e.g. 2025-03-19T15:02:11+09:00"
        )
    return parsed


def _str_field(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InputError(f"missing required field {name!r}: a Post record needs source, id, created_at, author_id, text")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f"field {name!r} must be a string, got {type(value).__name__}")
    return str(value)


def _clean_text(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"text is {len(text):,} characters, over the {MAX_TEXT_CHARS:,} limit for one post")
    # Lone surrogates cannot be stored as UTF-8; keep the post, mark what was lost.
    return text.encode("utf-8", "replace").decode("utf-8")


def parse_post(obj: Any) -> PostRecord:
    """Validate one DESIGN.md Post record.

    >>> parse_post({"source": "x", "id": 1, "created_at": "2025-03-19T15:02:11+09:00",
    ...             "author_id": "8812", "text": "楽天証券で勝手に中国株を買われた"}).key
    'x:1'
    """
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}")
    source = _str_field(obj, "source", required=True)
    if source not in KNOWN_SOURCES:
        raise InputError(f"unknown source {source!r}: use one of {', '.join(sorted(KNOWN_SOURCES))}")
    metrics = obj.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise InputError("field 'metrics' must be an object")
    return PostRecord(
        source=source,
        id=_str_field(obj, "id", required=True),  # type: ignore[arg-type]
        created_at=parse_timestamp(obj.get("created_at")),
        author_id=_str_field(obj, "author_id", required=True),  # type: ignore[arg-type]
        text=_clean_text(_str_field(obj, "text", required=True)),  # type: ignore[arg-type]
        author_handle=_str_field(obj, "author_handle", required=False),
        lang=_str_field(obj, "lang", required=False),
        url=_str_field(obj, "url", required=False),
        repost_of=_str_field(obj, "repost_of", required=False),
        reply_to=_str_field(obj, "reply_to", required=False),
        quote_of=_str_field(obj, "quote_of", required=False),
        metrics=metrics,
    )


# --- X API v2 ------------------------------------------------------------------------------------------


def x_tweet_to_record(tweet: dict[str, Any], users: dict[str, dict[str, Any]]) -> PostRecord:
    """One X API v2 tweet object (plus the page's ``includes.users`` by id) as a PostRecord.

    Long posts carry their full text in ``note_tweet.text``; retweets, replies and quotes come from
    ``referenced_tweets``.
    """
    if not isinstance(tweet, dict):
        raise InputError(f"tweet must be an object, got {type(tweet).__name__}")
    for name in ("id", "text", "author_id", "created_at"):
        if tweet.get(name) in (None, ""):
            raise InputError(
                f"tweet {tweet.get('id', '?')} lacks {name!r}: request tweet.fields=created_at,author_id "
                "(and expansions=author_id)"
            )
    text = tweet["text"]
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        text = note["text"]
    refs: dict[str, str] = {}
    for ref in tweet.get("referenced_tweets") or ():
        if isinstance(ref, dict) and ref.get("type") and ref.get("id"):
            refs.setdefault(str(ref["type"]), str(ref["id"]))
    author_id = str(tweet["author_id"])
    author = users.get(author_id) or tweet.get("author") or {}
    handle = author.get("username") if isinstance(author, dict) else None
    url = f"https://x.com/{handle or 'i/web'}/status/{tweet['id']}"
    metrics = tweet.get("public_metrics") if isinstance(tweet.get("public_metrics"), dict) else {}
    return PostRecord(
        source="x",
        id=str(tweet["id"]),
        created_at=parse_timestamp(tweet["created_at"]),
        author_id=author_id,
        author_handle=handle,
        text=_clean_text(str(text)),
        lang=tweet.get("lang"),
        url=url,
        repost_of=refs.get("retweeted"),
        reply_to=refs.get("replied_to"),
        quote_of=refs.get("quoted"),
        metrics=metrics or {},
    )


def is_x_page(obj: Any) -> bool:
    """A twarc2 / X API v2 response page (``data`` plus optional ``includes``/``meta``)."""
    return isinstance(obj, dict) and "data" in obj and "source" not in obj


def is_x_flat_tweet(obj: Any) -> bool:
    """A tweet as ``twarc2 flatten`` writes it: a tweet object with its ``author`` expanded inline."""
    return isinstance(obj, dict) and "source" not in obj and "author_id" in obj and "text" in obj and "id" in obj


def x_page_users(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    includes = page.get("includes") if isinstance(page.get("includes"), dict) else {}
    return {str(u["id"]): u for u in includes.get("users") or () if isinstance(u, dict) and "id" in u}


def parse_x_page(page: dict[str, Any]) -> tuple[list[PostRecord], list[InputError]]:
    """All tweets of one page; bad tweets are returned as errors so the good ones are still kept.

    A page may hold ``data`` as a list (search) or a single object (stream, lookup) and may carry partial
    ``errors`` beside good data; the errors are the API's business, not ours, and are ignored here.
    """
    data = page.get("data")
    tweets = data if isinstance(data, list) else [data] if isinstance(data, dict) else None
    if tweets is None:
        if "counts" in str(page.get("__twarc", {}).get("url", "")) or (
            isinstance(data, list) and data and "tweet_count" in data[0]
        ):
            return [], []
        raise InputError("X page has no 'data' list or object")
    if tweets and isinstance(tweets[0], dict) and "tweet_count" in tweets[0]:
        return [], []  # a counts page: nothing to store as posts
    users = x_page_users(page)
    records: list[PostRecord] = []
    errors: list[InputError] = []
    for tweet in tweets:
        try:
            records.append(x_tweet_to_record(tweet, users))
        except InputError as exc:
            errors.append(exc)
    return records, errors


def parse_line_object(obj: Any) -> tuple[list[PostRecord], list[InputError], str]:
    """Any supported JSONL line: a Post record, an X API v2 page, or a flattened tweet.

    Returns the records, the per-item errors, and which format it was (``post``, ``x_page``, ``x_flat``).
    """
    if is_x_page(obj):
        records, errors = parse_x_page(obj)
        return records, errors, "x_page"
    if is_x_flat_tweet(obj):
        return [x_tweet_to_record(obj, {})], [], "x_flat"
    return [parse_post(obj)], [], "post"
