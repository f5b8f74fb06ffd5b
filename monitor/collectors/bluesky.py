"""Bluesky: the Jetstream firehose filtered locally, plus authenticated searchPosts for backfill.

Jetstream (no account needed)
    One pass connects to ``jetstream_url`` with ``wantedCollections=app.bsky.feed.post`` and listens for
    ``listen_seconds`` or until ``stop`` is set. Every event is *processed*: a post whose ``langs`` holds
    ``ja`` (or, without ``langs``, whose text has kana) and whose width/case-folded text holds a keyword
    becomes a Post; everything else is only counted. Pages of matched events (their frames verbatim, one
    per line) are stored with the cursor in one transaction every ``page_events`` events or
    ``page_seconds`` seconds; the cursor is the ``time_us`` of the newest event processed, matched or not,
    so a quiet keyword never makes the next pass re-read the firehose. A (re)connect asks for
    ``cursor - rewind`` because Jetstream orders events only roughly by ``time_us``; the few events read
    twice are stored once (posts are keyed by at-uri). Drops reconnect with the shared retry policy's
    backoff; too many drops in a row without a single event end the pass with
    :class:`~monitor.errors.SourceError`. A frame that is not JSON or lacks fields is logged and counted
    as skipped; the loop goes on.

searchPosts (``BLUESKY_HANDLE`` + ``BLUESKY_APP_PASSWORD``)
    Per configured query, ``lang=ja``, ``sort=latest``, newest first and paginated by ``cursor``, down to
    ``since`` = the newest post of the last completed sweep (less a 10-minute overlap for late indexing). Like the X collector, an unfinished
    pagination keeps its ``cursor`` in the stored cursor's ``extra``, so a restart resumes exactly there.
    Missing credentials disable only the backfill (one line naming the variable); Jetstream runs anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.engine import Engine

from monitor.collectors import retry
from monitor.collectors.base import CollectResult, collect_each, read_cursor, save_cursor_only, store_page
from monitor.collectors.config import BlueskyConfig
from monitor.collectors.retry import RetryPolicy, Shutdown
from monitor.errors import CredentialsError, InputError, RateLimited, SourceError
from monitor.records import MAX_TEXT_CHARS, PostRecord, new_post, parse_timestamp
from storage.records import LIMITS

log = logging.getLogger(__name__)

SOURCE = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
JETSTREAM_CURSOR = "jetstream"
# Jetstream only roughly orders by time_us, so a reconnect starts this far behind the last event read.
DEFAULT_REWIND_US = 3_000_000
MAX_HANDLES = 100_000
MAX_URI_CHARS = LIMITS["id"]  # posts.post_id / reply_to / quote_of column width (storage.records.LIMITS)
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\uff66-\uff9f]")


# --- pure parts ----------------------------------------------------------------------------------------


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
    except InputError:
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
        raise InputError(f"{uri!r} is not an at:// URI")
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
        event = json.loads(frame)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Verdict("skipped", reason=f"frame is not complete JSON ({exc})")
    if not isinstance(event, dict):
        return Verdict("skipped", reason=f"frame is a JSON {type(event).__name__}, not an event object")
    time_us = event.get("time_us")
    if isinstance(time_us, bool) or not isinstance(time_us, int):
        return Verdict("skipped", reason="event has no integer 'time_us'")
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
    except InputError as exc:
        return Verdict("skipped", time_us, reason=str(exc))
    return Verdict("post", time_us, post=post)


# --- Jetstream -----------------------------------------------------------------------------------------


@dataclass
class _Page:
    frames: list[str] = field(default_factory=list)
    posts: list[PostRecord] = field(default_factory=list)
    cursor_us: int | None = None  # newest time_us processed and not yet saved
    # A replay after a reconnect can bring an older event never seen before: kept even if the cursor stays.

    @property
    def dirty(self) -> bool:
        return bool(self.posts) or self.cursor_us is not None
    started: float = field(default_factory=time.monotonic)


class JetstreamCollector:
    """Listens to Jetstream for one pass; see the module docstring."""

    source = SOURCE

    def __init__(
        self,
        config: BlueskyConfig,
        policy: RetryPolicy | None = None,
        *,
        page_events: int = 200,
        page_seconds: float = 5.0,
        rewind_us: int = DEFAULT_REWIND_US,
        recv_timeout: float = 0.25,
        open_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self.keywords = KeywordFilter.of(config.keywords)
        self.page_events = page_events
        self.page_seconds = page_seconds
        self.rewind_us = rewind_us
        self.recv_timeout = recv_timeout
        self.open_timeout = open_timeout
        self.handles: dict[str, str] = {}  # did -> handle from identity events; a pass-spanning hint only

    def _flush(self, engine: Engine, page: _Page, cursor_us: int | None, endpoint: str, result: CollectResult) -> None:
        """Store the page's posts and move the cursor to ``cursor_us`` (the newest event processed)."""
        if not page.dirty or cursor_us is None:
            return
        extra = {"time": datetime.fromtimestamp(cursor_us / 1_000_000, UTC).isoformat()}
        if page.posts:
            new, dup = store_page(
                engine, source=SOURCE, endpoint=endpoint, body="\n".join(page.frames), records=page.posts,
                cursor_name=JETSTREAM_CURSOR, cursor_value=str(cursor_us), cursor_extra=extra,
            )
            result.pages += 1
            result.new += new
            result.duplicate += dup
        else:
            save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(cursor_us), extra)
        page.frames.clear()
        page.posts.clear()
        page.cursor_us = None
        page.started = time.monotonic()

    def _connect(self, url: str, stop: threading.Event, result: CollectResult) -> Any:
        from websockets.sync.client import connect

        def count() -> None:
            result.requests += 1

        return retry.call(
            # Only options websockets 12 already had: pyproject allows websockets>=12.
            lambda: connect(url, open_timeout=self.open_timeout, close_timeout=1, max_size=4 * 1024 * 1024),
            policy=self.policy, stop=stop, what="Jetstream connect", on_attempt=count,
        )

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        from websockets.exceptions import ConnectionClosed

        result = CollectResult(SOURCE)
        saved = read_cursor(engine, SOURCE, JETSTREAM_CURSOR).value
        last_us = int(saved) if saved and saved.isdigit() else None
        deadline = time.monotonic() + self.config.listen_seconds
        page = _Page()
        endpoint = subscribe_url(self.config.jetstream_url, None)
        drops = 0  # consecutive drops without a single event in between
        try:
            while time.monotonic() < deadline and not stop.is_set():
                resume = max(0, last_us - self.rewind_us) if last_us is not None else None
                url = subscribe_url(self.config.jetstream_url, resume)
                ws = self._connect(url, stop, result)
                with ws:  # the context form also keeps websockets >= 16 from warning about legacy use
                    log.info("Jetstream: connected, resuming from time_us %s", resume if resume is not None else "live")
                    try:
                        while not stop.is_set():
                            now = time.monotonic()
                            if now >= deadline:
                                break
                            if page.dirty and (
                                len(page.frames) >= self.page_events or now - page.started >= self.page_seconds
                            ):
                                self._flush(engine, page, last_us, endpoint, result)
                            try:
                                frame = ws.recv(timeout=min(self.recv_timeout, max(0.01, deadline - now)))
                            except TimeoutError:
                                continue
                            drops = 0
                            verdict = judge_event(frame, self.keywords, self.handles)
                            if verdict.handle is not None:
                                if len(self.handles) >= MAX_HANDLES:  # identity events cover the whole network
                                    self.handles.clear()
                                self.handles[verdict.handle[0]] = verdict.handle[1]
                            if verdict.kind == "skipped":
                                result.skipped += 1
                                log.warning("Jetstream: skipped an event: %s", verdict.reason)
                            elif verdict.kind == "post" and verdict.post is not None:
                                page.posts.append(verdict.post)
                                page.frames.append(frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))
                            if verdict.time_us is not None and (last_us is None or verdict.time_us > last_us):
                                last_us = verdict.time_us  # never backwards: replayed events are older
                                page.cursor_us = verdict.time_us
                    except ConnectionClosed as exc:
                        drops += 1
                        self._flush(engine, page, last_us, endpoint, result)
                        if drops >= self.policy.attempts:
                            raise SourceError(
                                f"Jetstream dropped the connection {drops} times in a row without sending an event "
                                f"({exc}); check JETSTREAM_URL or try another instance"
                            ) from None
                        delay = self.policy.backoff(drops)
                        log.warning("Jetstream: connection dropped (%s); reconnecting in %.1fs", exc, delay)
                        retry.sleep(stop, min(delay, max(0.0, deadline - time.monotonic())))
                        continue
                break
        except Shutdown:
            result.stopped = True
        finally:
            self._flush(engine, page, last_us, endpoint, result)
        if stop.is_set():
            result.stopped = True
        return result


# --- searchPosts backfill ------------------------------------------------------------------------------


def search_cursor_name(query: str) -> str:
    """Cursor key of one search query (queries may be long; the key column is not).

    >>> search_cursor_name("楽天証券 不正")[:7]
    'search:'
    """
    return "search:" + hashlib.sha256(query.encode()).hexdigest()[:16]


def _translate(exc: BaseException) -> BaseException:
    """Turn atproto errors into ones the shared policy reads.

    atproto raises its own exception types: a 429 keeps its headers on ``exc.response`` (the policy reads
    Bluesky's ``ratelimit-reset`` there), and a transport failure arrives as a ``NetworkError`` without a
    response, whose cause is the httpx error.
    """
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) == 429:
        wait = retry.wait_from_headers(getattr(response, "headers", None) or {})
        if wait is not None:
            return RateLimited(f"rate limit reached (HTTP 429, retry in {wait:.0f} s)", wait)
        return exc
    cause = exc.__cause__ or exc.__context__
    if response is None and type(exc).__name__ in ("NetworkError", "InvokeTimeoutError") and cause is not None:
        verdict = retry.classify(cause)
        reason = verdict.cause if verdict.kind == "transient" else f"{type(cause).__name__}: {cause}"
        return retry.TransientError(reason)
    return exc


SEARCH_OVERLAP = timedelta(minutes=10)


def _iso_z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _overlap(since: str) -> str:
    """The ``since`` sent: the stored mark minus :data:`SEARCH_OVERLAP`.

    >>> _overlap("2025-03-19T06:00:07Z")
    '2025-03-19T05:50:07Z'
    """
    try:
        return _iso_z(parse_timestamp(since, "since") - SEARCH_OVERLAP)
    except InputError:
        return since


def _sort_time(view: Any) -> str | None:
    """When searchPosts sorts a post: the earlier of createdAt and indexedAt, never in the future.

    A client with a wrong clock can write a createdAt years ahead; taken as the ``since`` mark it would
    hide every later post, so the mark is capped at now.

    >>> _sort_time({"indexedAt": "2025-03-19T06:00:09.5Z", "record": {"createdAt": "2025-03-19T06:00:07.000Z"}})
    '2025-03-19T06:00:07Z'
    >>> _sort_time({"indexedAt": "2025-03-19T06:00:09Z", "record": {"createdAt": "2999-01-01T00:00:00Z"}})
    '2025-03-19T06:00:09Z'
    """
    if not isinstance(view, dict):
        return None
    record = view.get("record") if isinstance(view.get("record"), dict) else {}
    times = []
    for value, name in ((record.get("createdAt"), "createdAt"), (view.get("indexedAt"), "indexedAt")):
        try:
            times.append(parse_timestamp(value, name))
        except InputError:
            continue
    if not times:
        return None
    return _iso_z(min(min(times), datetime.now(UTC)))


def _search_post(view: Any) -> PostRecord:
    """One ``app.bsky.feed.defs#postView`` as a PostRecord."""
    if not isinstance(view, dict):
        raise InputError(f"post view must be an object, got {type(view).__name__}")
    did, collection, rkey = split_at_uri(view.get("uri"))  # type: ignore[arg-type]
    author = view.get("author") if isinstance(view.get("author"), dict) else {}
    if collection != POST_COLLECTION:
        raise InputError(f"{view.get('uri')} is not a post")
    metrics = {k: view[k] for k in ("likeCount", "replyCount", "repostCount", "quoteCount") if isinstance(view.get(k), int)}
    fallback = None
    if isinstance(view.get("indexedAt"), str):
        try:
            fallback = parse_timestamp(view["indexedAt"], "indexedAt")
        except InputError:
            fallback = None
    return record_to_post(
        did=str(author.get("did") or did), rkey=rkey, record=view.get("record"),
        handle=author.get("handle") if isinstance(author.get("handle"), str) else None,
        fallback_time=fallback, metrics=metrics,
    )


class SearchBackfill:
    """searchPosts through the atproto SDK, resumable per query; see the module docstring."""

    source = SOURCE

    def __init__(self, config: BlueskyConfig, policy: RetryPolicy | None = None, *, timeout: float = 30.0) -> None:
        if not config.handle:
            raise CredentialsError("BLUESKY_HANDLE", "set BLUESKY_HANDLE (and BLUESKY_APP_PASSWORD) to enable the "
                                   "searchPosts backfill; Jetstream needs no account")
        if not config.app_password:
            raise CredentialsError("BLUESKY_APP_PASSWORD", "set BLUESKY_APP_PASSWORD (an app password, or "
                                   "BLUESKY_APP_PASSWORD_FILE) to enable the searchPosts backfill; Jetstream needs no account")
        self.config = config
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self._client: Any = None
        self._last: tuple[str, str] | None = None  # (url, body) of the last searchPosts answer, verbatim

    def _make_client(self) -> Any:
        from atproto import Client
        from atproto_client.request import Request

        owner = self

        class RecordingRequest(Request):
            """Keeps the raw body of each answer: the page is stored verbatim, not as re-serialized models."""

            def _send_request(self, method: str, url: str, **kwargs: Any) -> Any:
                response = super()._send_request(method, url, **kwargs)
                owner._last = (str(response.url), response.text)
                return response

        return Client(base_url=self.config.api_url, request=RecordingRequest(timeout=self.timeout))

    def login(self, stop: threading.Event, result: CollectResult) -> None:
        if self._client is not None:
            return
        from atproto_client.exceptions import UnauthorizedError

        client = self._make_client()

        def attempt() -> Exception | None:
            result.requests += 1
            try:
                client.login(self.config.handle, self.config.app_password.reveal(), fetch_bsky_profile=False)
            except UnauthorizedError as exc:
                return exc  # a refusal is an answer, not a failure worth retrying
            except Exception as exc:
                translated = _translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
            return None

        refused = retry.call(attempt, policy=self.policy, stop=stop, what="Bluesky login",
                             credential_hint="BLUESKY_APP_PASSWORD")
        if refused is not None:
            raise CredentialsError(
                "BLUESKY_APP_PASSWORD",
                f"Bluesky login as {self.config.handle} was refused: {refused}; check BLUESKY_HANDLE and "
                "BLUESKY_APP_PASSWORD (an app password from Settings > Privacy and security > App passwords)",
            )
        self._client = client

    def _page(self, params: dict[str, Any], stop: threading.Event, result: CollectResult) -> tuple[dict[str, Any], str, str]:
        from atproto_client.exceptions import ModelError

        def attempt() -> tuple[dict[str, Any], str, str]:
            result.requests += 1
            self._last = None
            try:
                self._client.app.bsky.feed.search_posts(params=params)
            except ModelError as exc:
                # The SDK rejects a whole page for one odd post; our own parse keeps the good ones.
                log.info("Bluesky search: the SDK could not model a page (%s); parsing it leniently", exc)
            except Exception as exc:
                translated = _translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
            if self._last is None:
                raise retry.TransientError("Bluesky search: no answer body recorded")
            url, body = self._last
            page = json.loads(body)  # a truncated body raises here and is retried
            if not isinstance(page, dict):
                raise retry.TransientError("Bluesky search: answer is not a JSON object")
            return page, body, url

        return retry.call(attempt, policy=self.policy, stop=stop, what=f"Bluesky search {params['q']!r}",
                          credential_hint="BLUESKY_APP_PASSWORD")

    def collect_query(self, engine: Engine, query: str, stop: threading.Event, result: CollectResult) -> None:
        name = search_cursor_name(query)
        stored = read_cursor(engine, SOURCE, name)
        since = stored.value or None
        extra = dict(stored.extra)
        next_cursor = extra.get("cursor")
        pending_newest = extra.get("pending_newest")
        for _ in range(self.config.max_search_pages):
            params: dict[str, Any] = {"q": query, "lang": "ja", "sort": "latest", "limit": self.config.search_limit}
            if since:
                # searchPosts filters on sortAt, and a post can be indexed late: overlap the last sweep.
                params["since"] = _overlap(since)
            if next_cursor:
                params["cursor"] = next_cursor
            page, body, url = self._page(params, stop, result)
            records: list[PostRecord] = []
            views = page.get("posts") if isinstance(page.get("posts"), list) else []
            for view in views:
                try:
                    records.append(_search_post(view))
                except InputError as exc:
                    result.skipped += 1
                    log.warning("Bluesky search: skipped a post: %s", exc)
            for view in views:
                stamp = _sort_time(view)
                if stamp is not None and (pending_newest is None or stamp > pending_newest):
                    pending_newest = stamp
            token = page.get("cursor") if isinstance(page.get("cursor"), str) and page.get("posts") else None
            if token == next_cursor and token is not None:
                raise SourceError(f"Bluesky search {query!r}: the API answered the same cursor again; the next pass resumes")
            if token:
                value, new_extra = since or "", {"query": query, "cursor": token, "pending_newest": pending_newest}
            else:
                value, new_extra = pending_newest or since or "", {"query": query}
            new, dup = store_page(
                engine, source=SOURCE, endpoint=url, body=body, records=records,
                cursor_name=name, cursor_value=value, cursor_extra=new_extra,
            )
            result.pages += 1
            result.new += new
            result.duplicate += dup
            if not token:
                return
            next_cursor = token
            if stop.is_set():
                raise Shutdown()
        result.notes.append(f"search page limit {self.config.max_search_pages} reached; the next pass continues")

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        result = CollectResult(SOURCE)
        try:
            self.login(stop, result)
        except Shutdown:
            result.stopped = True
            return result
        result.add(collect_each(SOURCE, self.config.search_queries, self.collect_query, engine, stop))
        return result


# --- the source ----------------------------------------------------------------------------------------


class BlueskyCollector:
    """The ``bluesky`` source: searchPosts backfill when credentials are set, then a Jetstream pass.

    Credential trouble disables only the backfill (its one line goes to the log and the pass notes);
    Jetstream needs no account and keeps running.
    """

    source = SOURCE

    def __init__(self, config: BlueskyConfig, policy: RetryPolicy | None = None, **jetstream_options: Any) -> None:
        self.config = config
        self.jetstream = JetstreamCollector(config, policy, **jetstream_options)
        self.backfill: SearchBackfill | None = None
        self.backfill_off: str | None = None
        try:
            self.backfill = SearchBackfill(config, policy)
        except CredentialsError as exc:
            self.backfill_off = str(exc)
            log.info("Bluesky: searchPosts backfill off: %s", exc)

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        result = CollectResult(SOURCE)
        if self.backfill is not None:
            try:
                result.add(self.backfill.collect(engine, stop))
            except CredentialsError as exc:
                self.backfill, self.backfill_off = None, str(exc)
                log.error("Bluesky: searchPosts backfill disabled: %s", exc)
            except SourceError as exc:  # the firehose is independent of the search service's trouble
                result.notes.append(f"searchPosts: {exc}")
                log.warning("Bluesky: searchPosts backfill failed this pass: %s", exc)
        if self.backfill_off:
            result.notes.append(f"searchPosts backfill off: {self.backfill_off}")
        if not stop.is_set():
            result.add(self.jetstream.collect(engine, stop))
        result.stopped = result.stopped or stop.is_set()
        return result
