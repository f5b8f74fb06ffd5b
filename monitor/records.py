"""Parsing of incoming records: the DESIGN.md Post record and X API v2 (twarc2) pages.

Pure functions: a dict in, :class:`PostRecord` objects out, or :class:`~monitor.errors.InputError` with the
reason. Reading files line by line (with line numbers) lives in :mod:`monitor.ingest`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from monitor.errors import InputError
from storage import records as _records
from storage.records import KNOWN_SOURCES, MAX_TEXT_CHARS, PostRecord

__all__ = ["KNOWN_SOURCES", "MAX_TEXT_CHARS", "RECORD_ERRORS", "PostRecord", "identifier", "item_text", "new_post",
           "parse_post",
           "parse_timestamp", "record_error"]

#: What parsing one hostile record can raise beyond InputError (a value of the wrong type reaching a
#: service's parser, a timestamp out of range, a nesting or number Python refuses). Every ingest path
#: catches these per record and quarantines the record instead of failing the batch or the page.
RECORD_ERRORS: tuple[type[Exception], ...] = (
    InputError, ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError, OSError,
)


def record_error(exc: Exception) -> InputError:
    """Any of :data:`RECORD_ERRORS` as an :class:`InputError` whose reason is one line."""
    if isinstance(exc, InputError):
        return exc
    detail = " ".join(str(exc).split())[:200]
    return InputError(f"unreadable record ({type(exc).__name__}: {detail})" if detail else
                      f"unreadable record ({type(exc).__name__})")


def identifier(value: Any, what: str) -> str:
    """An id as a service sends it (a string, or a JSON integer) as text; anything else is an InputError,
    so an object or a list never becomes an id through ``str()``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        reason = _records.rejected_value(value)
        raise InputError(f"{what} is unreadable: {reason}" if reason else
                         f"{what} must be a string or an integer, got {type(value).__name__}")
    return str(value)


def item_text(item: Any) -> str:
    """One item of a page as text for the ``rejected`` table (JSON where it is JSON)."""
    if isinstance(item, str):
        return item
    try:
        return json.dumps(item, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return repr(item)[:8192]


def parse_timestamp(value: Any, field_name: str = "created_at") -> datetime:
    """:func:`storage.records.parse_timestamp`, failing with an :class:`InputError`.

    >>> parse_timestamp("2025-03-19 15:02")
    Traceback (most recent call last):
    ...
    monitor.errors.InputError: created_at '2025-03-19 15:02' has no UTC offset: write it as ISO 8601 with an offset, e.g. 2025-03-19T15:02:11+09:00
    """
    try:
        return _records.parse_timestamp(value, field_name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def parse_post(obj: Any) -> PostRecord:
    """Validate one DESIGN.md Post record (a JSON object) into a :class:`PostRecord`.

    >>> parse_post({"source": "x", "id": 1, "created_at": "2025-03-19T15:02:11+09:00",
    ...             "author_id": "8812", "text": "楽天証券で勝手に中国株を買われた"}).key
    'x:1'
    >>> parse_post({"source": "x", "id": 1, "created_at": "2025-03-19T15:02:11+09:00", "text": "t"})
    Traceback (most recent call last):
    ...
    monitor.errors.InputError: missing required field 'author_id': a Post record needs source, id, created_at, author_id, text
    """
    if (reason := _records.rejected_value(obj)) is not None:
        raise InputError(f"unreadable record: {reason}")
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return PostRecord.model_validate(obj)
    except ValidationError as exc:
        raise InputError(_records.validation_message(exc)) from None


def new_post(**values: Any) -> PostRecord:
    """A PostRecord built by a parser of a service's format; bad values fail as an :class:`InputError`."""
    return parse_post(values)


# --- X API v2 ------------------------------------------------------------------------------------------


def x_tweet_to_record(tweet: dict[str, Any], users: dict[str, dict[str, Any]]) -> PostRecord:
    """One X API v2 tweet object (plus the page's ``includes.users`` by id) as a PostRecord.

    Long posts carry their full text in ``note_tweet.text``; retweets, replies and quotes come from
    ``referenced_tweets``.
    """
    if (reason := _records.rejected_value(tweet)) is not None:
        raise InputError(f"unreadable tweet: {reason}")
    if not isinstance(tweet, dict):
        raise InputError(f"tweet must be an object, got {type(tweet).__name__}")
    for name in ("id", "text", "author_id", "created_at"):
        if tweet.get(name) in (None, ""):
            raise InputError(
                f"tweet {tweet.get('id', '?')} lacks {name!r}: request tweet.fields=created_at,author_id "
                "(and expansions=author_id)"
            )
    for name in ("id", "author_id"):
        identifier(tweet[name], f"tweet {name}")
    text = tweet["text"]
    if not isinstance(text, str):
        raise InputError(f"tweet {identifier(tweet['id'], 'tweet id')} 'text' must be a string, got {type(text).__name__}")
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
    return new_post(
        source="x",
        id=str(tweet["id"]),
        created_at=parse_timestamp(tweet["created_at"]),
        author_id=author_id,
        author_handle=handle,
        text=str(text),
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
    """A tweet as ``twarc2 flatten`` writes it: a tweet object with its ``author`` expanded inline.

    Such a tweet may carry ``source`` too (the posting app, "Twitter for Android"), so the twarc envelope
    or the inline author tells it from a Post record, not the absence of ``source``.

    >>> is_x_flat_tweet({"id": "1", "text": "t", "author_id": "2", "source": "Twitter for Android",
    ...                  "author": {"id": "2", "username": "u"}, "__twarc": {"url": "..."}})
    True
    >>> is_x_flat_tweet({"source": "x", "id": "1", "text": "t", "author_id": "2"})
    False
    """
    if not (isinstance(obj, dict) and "author_id" in obj and "text" in obj and "id" in obj):
        return False
    return "__twarc" in obj or isinstance(obj.get("author"), dict) or "source" not in obj


def x_page_users(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    includes = page.get("includes")
    if not isinstance(includes, dict):
        includes = {}
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
        except RECORD_ERRORS as exc:
            err = record_error(exc)
            errors.append(InputError(err.reason, record=item_text(tweet)))
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
