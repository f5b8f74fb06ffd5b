"""searchPosts backfill, resumable per query (see the package docstring).

Plain XRPC over HTTP on the collectors' one seam (:mod:`monitor.collectors.transport`):
``com.atproto.server.createSession`` for the access token and ``app.bsky.feed.searchPosts`` for pages.
The atproto SDK hands over parsed models only (its raw answer is reachable solely by overriding a private
request method), rejects a whole page for one odd post, and refreshes sessions with its own requests;
two JSON calls need none of that, and every page is stored verbatim.
"""


from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from monitor.collectors import retry
from monitor.collectors.base import CollectResult, Cursor, collect_each, reject_item
from monitor.collectors.bluesky.parse import (
    POST_COLLECTION,
    SOURCE,
    record_to_post,
    split_at_uri,
)
from monitor.collectors.config import BlueskyConfig
from monitor.collectors.paging import Page, walk_pages
from monitor.collectors.retry import RetryPolicy, Shutdown
from monitor.collectors.transport import http_client, without_userinfo
from monitor.errors import CredentialsError, InputError, SourceError
from monitor.records import RECORD_ERRORS, PostRecord, parse_timestamp
from storage.quarantine import Rejection
from storage.records import in_range, loads

log = logging.getLogger(__name__)




def search_cursor_name(query: str) -> str:
    """Cursor key of one search query (queries may be long; the key column is not).

    >>> search_cursor_name("楽天証券 不正")[:7]
    'search:'
    """
    return "search:" + hashlib.sha256(query.encode()).hexdigest()[:16]


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
    record = found if isinstance(found := view.get("record"), dict) else {}
    times = []
    for value, name in ((record.get("createdAt"), "createdAt"), (view.get("indexedAt"), "indexedAt")):
        try:
            times.append(in_range(parse_timestamp(value, name), name).astimezone(UTC))
        except (InputError, ValueError):  # unreadable, or outside the years a post can have
            continue
    if not times:
        return None
    return _iso_z(min(min(times), datetime.now(UTC)))


def _search_post(view: Any) -> PostRecord:
    """One ``app.bsky.feed.defs#postView`` as a PostRecord."""
    if not isinstance(view, dict):
        raise InputError(f"post view must be an object, got {type(view).__name__}")
    did, collection, rkey = split_at_uri(view.get("uri"))  # type: ignore[arg-type]
    author = found if isinstance(found := view.get("author"), dict) else {}
    if collection != POST_COLLECTION:
        raise InputError(f"{view.get('uri')} is not a post")
    metrics = {k: view[k] for k in ("likeCount", "replyCount", "repostCount", "quoteCount") if isinstance(view.get(k), int)}
    fallback = None
    if isinstance(view.get("indexedAt"), str):
        try:
            fallback = in_range(parse_timestamp(view["indexedAt"], "indexedAt"), "indexedAt")
        except (InputError, ValueError):
            fallback = None
    return record_to_post(
        did=author["did"] if isinstance(author.get("did"), str) and author["did"] else did, rkey=rkey,
        record=view.get("record"),
        handle=author.get("handle") if isinstance(author.get("handle"), str) else None,
        fallback_time=fallback, metrics=metrics,
    )


def _xrpc_error(answer: httpx.Response) -> str:
    """An XRPC error answer as ``Error: message`` (its JSON body), else the status line."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return f"{body['error']}: {body.get('message') or ''}".strip().rstrip(":")
    return f"HTTP {answer.status_code} {answer.reason_phrase}"


def _expired(answer: httpx.Response) -> bool:
    """The access token expired (XRPC answers 400 ``ExpiredToken``) or was not accepted (401)."""
    if answer.status_code == 401:
        return True
    return answer.status_code == 400 and _xrpc_error(answer).startswith("ExpiredToken")


class SearchBackfill:
    """searchPosts over plain HTTP, resumable per query; see the module docstring."""

    source = SOURCE

    def __init__(self, config: BlueskyConfig, policy: RetryPolicy | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not config.handle:
            raise CredentialsError("BLUESKY_HANDLE", "set BLUESKY_HANDLE (and BLUESKY_APP_PASSWORD) to enable the "
                                   "searchPosts backfill; Jetstream needs no account")
        if not config.app_password:
            raise CredentialsError("BLUESKY_APP_PASSWORD", "set BLUESKY_APP_PASSWORD (an app password, or "
                                   "BLUESKY_APP_PASSWORD_FILE) to enable the searchPosts backfill; Jetstream needs no account")
        self.config = config
        self.policy = policy or RetryPolicy()
        self.http = http_client(timeout=timeout, transport=transport)
        self.access_jwt: str | None = None

    def xrpc(self, nsid: str) -> str:
        """The URL of one XRPC method under ``api_url`` (the ``.../xrpc`` base, as the atproto SDK takes it)."""
        return f"{self.config.api_url.rstrip('/')}/{nsid}"

    def create_session(self) -> str | None:
        """One ``com.atproto.server.createSession``; returns the refusal (``Error: message``) or None."""
        answer = self.http.post(self.xrpc("com.atproto.server.createSession"), json={
            "identifier": self.config.handle, "password": self.config.app_password.reveal()})  # type: ignore[union-attr]
        if answer.status_code in (400, 401):  # a refusal is an answer, not a failure worth retrying
            return _xrpc_error(answer)
        answer.raise_for_status()
        token = answer.json().get("accessJwt")
        if not isinstance(token, str) or not token:
            raise retry.TransientError("Bluesky createSession answered without an accessJwt")
        self.access_jwt = token
        return None

    def login(self, stop: threading.Event, result: CollectResult) -> None:
        if self.access_jwt is not None:
            return

        def count() -> None:
            result.requests += 1

        refused = retry.call(self.create_session, policy=self.policy, stop=stop, what="Bluesky login",
                             credential_hint="BLUESKY_APP_PASSWORD", on_attempt=count)
        if refused is not None:
            raise CredentialsError(
                "BLUESKY_APP_PASSWORD",
                f"Bluesky login as {self.config.handle} was refused: {refused}; check BLUESKY_HANDLE and "
                "BLUESKY_APP_PASSWORD (an app password from Settings > Privacy and security > App passwords)",
            )

    def search_page(self, params: dict[str, Any], stop: threading.Event,
                    result: CollectResult) -> tuple[dict[str, Any], str, str]:
        """One ``app.bsky.feed.searchPosts`` page under the retry policy: (parsed, body verbatim, URL)."""

        def attempt() -> tuple[dict[str, Any], str, str]:
            answer = self.http.get(self.xrpc("app.bsky.feed.searchPosts"), params=params,
                                   headers={"Authorization": f"Bearer {self.access_jwt}"})
            if _expired(answer):
                # An access token lives a few hours: log in again, once, and repeat the request.
                self.access_jwt = None
                refused = self.create_session()
                if refused is not None:
                    raise CredentialsError("BLUESKY_APP_PASSWORD", f"Bluesky login again was refused: {refused}")
                answer = self.http.get(self.xrpc("app.bsky.feed.searchPosts"), params=params,
                                       headers={"Authorization": f"Bearer {self.access_jwt}"})
            answer.raise_for_status()
            page = loads(answer.text)  # a truncated body raises here and is retried
            if not isinstance(page, dict):
                raise retry.TransientError("Bluesky search: answer is not a JSON object")
            return page, answer.text, without_userinfo(str(answer.url))

        def count() -> None:
            result.requests += 1

        return retry.call(attempt, policy=self.policy, stop=stop, what=f"Bluesky search {params['q']!r}",
                          credential_hint="BLUESKY_APP_PASSWORD", on_attempt=count)

    def collect_query(self, engine: Engine, query: str, stop: threading.Event, result: CollectResult) -> None:
        walk_pages(engine, _SearchWalk(self, query), source=SOURCE, cursor_name=search_cursor_name(query),
                   max_pages=self.config.max_search_pages, result=result, stop=stop, label=f"search {query!r}",
                   ingest="bluesky-search")

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        result = CollectResult(SOURCE)
        try:
            self.login(stop, result)
        except Shutdown:
            result.stopped = True
            return result
        result.add(collect_each(SOURCE, self.config.search_queries, self.collect_query, engine, stop))
        return result


class _SearchWalk:
    """One query's searchPosts sweep as a :class:`~monitor.collectors.paging.Walk`."""

    def __init__(self, backfill: SearchBackfill, query: str) -> None:
        self.backfill, self.query = backfill, query
        self.since: str | None = None
        self.next_cursor: str | None = None
        self.pending_newest: str | None = None

    def begin(self, cursor: Cursor) -> bool:
        self.since = cursor.value or None
        self.next_cursor = cursor.extra.get("cursor")
        self.pending_newest = cursor.extra.get("pending_newest")
        return True

    def fetch(self, result: CollectResult, stop: threading.Event) -> Page:
        query, config = self.query, self.backfill.config
        params: dict[str, Any] = {"q": query, "lang": "ja", "sort": "latest", "limit": config.search_limit}
        if self.since:
            # searchPosts filters on sortAt, and a post can be indexed late: overlap the last sweep.
            params["since"] = _overlap(self.since)
        if self.next_cursor:
            params["cursor"] = self.next_cursor
        page, body, url = self.backfill.search_page(params, stop, result)
        records: list[PostRecord] = []
        rejected: list[Rejection] = []
        views = found if isinstance(found := page.get("posts"), list) else []
        for i, view in enumerate(views):
            try:
                records.append(_search_post(view))
            except RECORD_ERRORS as exc:
                rejected.append(reject_item("bluesky-search", SOURCE, f"{url} #{i}", view, exc))
        for view in views:
            stamp = _sort_time(view)
            if stamp is not None and (self.pending_newest is None or stamp > self.pending_newest):
                self.pending_newest = stamp
        token = page.get("cursor") if isinstance(page.get("cursor"), str) and page.get("posts") else None
        if token == self.next_cursor and token is not None:
            raise SourceError(f"Bluesky search {query!r}: the API answered the same cursor again; the next pass resumes")
        if token:
            value, extra = self.since or "", {"query": query, "cursor": token, "pending_newest": self.pending_newest}
        else:
            value, extra = self.pending_newest or self.since or "", {"query": query}
        self.next_cursor = token
        return Page(endpoint=url, body=body, records=records, cursor_value=value, cursor_extra=extra, more=bool(token),
                    rejected=rejected)

    def stored(self, page: Page, new: int, duplicate: int, result: CollectResult) -> None:
        return None
