"""Reddit over plain HTTP: new submissions and comments of the configured subreddits, plus searches.

Reddit requires approved API access (an app registered under its Data API terms); the credentials are
``REDDIT_CLIENT_ID``, ``REDDIT_CLIENT_SECRET`` and a descriptive ``REDDIT_USER_AGENT``. Read-only,
application-only OAuth (client credentials) through :class:`RedditAPI`, on the collectors' one HTTP seam
(:mod:`monitor.collectors.transport`): praw's public API hands over parsed listings only (no raw
body) and has no option to switch off prawcore's own retries (2-4 s sleeps no shutdown can interrupt);
the two endpoints used are plain JSON.
``REDDIT_OAUTH_URL`` / ``REDDIT_WWW_URL`` move the API and token hosts for gateways and tests.

Each listing (``new:SUB``, ``comments:SUB``, ``search:QUERY``) has a cursor ``CREATED_UTC:FULLNAME`` of the
newest item stored. Listings come newest first; a pass walks pages (``after``) until it reaches items at or
below the cursor. Like X, the cursor value only advances once the walk is complete; mid-walk the
``after`` token sits in the cursor's extra, so a restart resumes the walk instead of leaving a gap.
Pages are stored verbatim, as Reddit sent them.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from monitor.collectors import retry
from monitor.collectors.base import CollectResult, Cursor, reject_item
from monitor.collectors.config import RedditConfig
from monitor.collectors.paging import Page, walk_pages
from monitor.collectors.retry import RetryPolicy, Shutdown
from monitor.collectors.transport import http_client
from monitor.errors import CredentialsError, InputError, RateLimited, SourceError
from monitor.records import RECORD_ERRORS, PostRecord, identifier, new_post
from storage.quarantine import Rejection
from storage.records import loads

log = logging.getLogger(__name__)
SOURCE = "reddit"
MAX_PAGES = 5


def _id_number(fullname: str) -> int:
    """Reddit ids are base-36 and grow over time; compare them as numbers.

    >>> _id_number("t3_zz") > _id_number("t3_100")
    False
    """
    return int(fullname.rpartition("_")[2] or "0", 36)


def cursor_key(created_utc: float, fullname: str) -> tuple[float, int]:
    return float(created_utc), _id_number(fullname)


def parse_cursor(value: str | None) -> tuple[float, int] | None:
    """``"1742364131.0:t3_1jes8k2"`` -> sortable key; None when absent or unreadable."""
    if not value or ":" not in value:
        return None
    created, _, fullname = value.partition(":")
    try:
        return cursor_key(float(created), fullname)
    except ValueError:
        return None


def thing_to_record(thing: dict[str, Any]) -> PostRecord:
    """A listing child (``t3`` submission or ``t1`` comment) as a Post record."""
    kind = thing.get("kind") if isinstance(thing, dict) else None
    data = thing.get("data") if isinstance(thing, dict) else None
    if kind not in ("t1", "t3") or not isinstance(data, dict):
        raise InputError(f"Reddit listing item of kind {kind!r} is not a submission or comment")
    name = data.get("name") or (f"{kind}_{identifier(data['id'], 'Reddit id')}" if data.get("id") else None)
    created = data.get("created_utc")
    if not name or not isinstance(created, int | float):
        raise InputError(f"Reddit {kind} {name or '?'} lacks 'name' or 'created_utc'")
    name = identifier(name, "Reddit name")
    for field in ("title", "selftext", "body", "author", "author_fullname", "permalink", "parent_id", "crosspost_parent"):
        if data.get(field) is not None and not isinstance(data[field], str):
            raise InputError(f"Reddit {kind} {name}: {field!r} must be a string, got {type(data[field]).__name__}")
    if kind == "t3":
        title = str(data.get("title") or "")
        body = str(data.get("selftext") or "")
        text = f"{title}\n{body}".strip() if body else title
    else:
        text = str(data.get("body") or "")
    if not text:
        raise InputError(f"Reddit {kind} {name} has no text")
    author = data.get("author") or "[deleted]"
    permalink = data.get("permalink")
    parent = data.get("parent_id") if kind == "t1" else None
    metrics = {k: data[k] for k in ("score", "num_comments") if isinstance(data.get(k), int)}
    return new_post(
        source=SOURCE,
        id=str(name),
        created_at=datetime.fromtimestamp(float(created), UTC),
        author_id=str(data.get("author_fullname") or author),
        author_handle=str(author),
        text=text,
        lang=None,
        url=f"https://www.reddit.com{permalink}" if permalink else None,
        reply_to=str(parent) if parent else None,
        repost_of=str(data["crosspost_parent"]) if data.get("crosspost_parent") else None,
        metrics=metrics,
    )


class RedditCollector:
    source = SOURCE

    def __init__(self, config: RedditConfig, policy: RetryPolicy | None = None, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        for variable, value in (("REDDIT_CLIENT_ID", config.client_id), ("REDDIT_CLIENT_SECRET", config.client_secret)):
            if not value:
                raise CredentialsError(variable)
        if len(config.user_agent.strip()) < 7:
            raise CredentialsError(
                "REDDIT_USER_AGENT", "set REDDIT_USER_AGENT to a descriptive User-Agent, e.g. 'incident-monitor/0.1 by u/you'"
            )
        self.config = config
        self.policy = policy or RetryPolicy()
        self.api = RedditAPI(config, transport)

    def listings(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(cursor name, API path, params) for every listing this pass reads."""
        found: list[tuple[str, str, dict[str, Any]]] = []
        for sub in self.config.subreddits:
            found.append((f"new:{sub}", f"/r/{sub}/new", {}))
            if self.config.include_comments:
                found.append((f"comments:{sub}", f"/r/{sub}/comments", {}))
        if self.config.search_queries and self.config.subreddits:
            subs = "+".join(self.config.subreddits)
            for query in self.config.search_queries:
                found.append((f"search:{query}"[:250], f"/r/{subs}/search",
                              {"q": query, "restrict_sr": "1", "sort": "new", "type": "link"}))
        return found

    def get_listing(self, path: str, params: dict[str, Any], result: CollectResult,
                    stop: threading.Event) -> tuple[dict[str, Any], str]:
        """One listing page under the retry policy: (parsed Listing, body verbatim)."""
        def attempt() -> tuple[dict[str, Any], str]:
            page, body = self.api.get(path, params)
            if not isinstance(page, dict) or not isinstance(page.get("data"), dict):
                raise retry.TransientError(f"Reddit {path}: answer is not a Listing")
            return page, body

        def count() -> None:
            result.requests += 1

        return retry.call(attempt, policy=self.policy, stop=stop, what=f"Reddit {path}",
                          credential_hint="REDDIT_CLIENT_ID/REDDIT_CLIENT_SECRET", on_attempt=count)

    def collect_listing(self, engine: Engine, name: str, path: str, params: dict[str, Any],
                        result: CollectResult, stop: threading.Event) -> None:
        walk_pages(engine, _ListingWalk(self, path, params), source=SOURCE, cursor_name=name, max_pages=MAX_PAGES,
                   result=result, stop=stop, label=name)

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        result = CollectResult(SOURCE)
        failures: list[str] = []
        listings = self.listings()
        try:
            for name, path, params in listings:
                if stop.is_set():
                    result.stopped = True
                    break
                try:
                    self.collect_listing(engine, name, path, params, result, stop)
                except SourceError as exc:
                    if isinstance(exc, CredentialsError | RateLimited):
                        raise  # the account or the whole API is blocked: end the pass
                    # One missing or private subreddit must not stop the others.
                    log.warning("Reddit %s: %s", name, exc)
                    failures.append(str(exc))
        except Shutdown:
            result.stopped = True
        if failures and len(failures) == len(listings):
            raise SourceError(f"every Reddit listing failed; first: {failures[0]}")
        result.notes.extend(failures[:3])
        return result


class _ListingWalk:
    """One listing, newest first down to the stored cursor, as a :class:`~monitor.collectors.paging.Walk`."""

    def __init__(self, collector: RedditCollector, path: str, params: dict[str, Any]) -> None:
        self.collector, self.path, self.params = collector, path, params
        self.stored_value: str | None = None
        self.floor: tuple[float, int] | None = None
        self.after: str | None = None
        self.pending: str | None = None

    def begin(self, cursor: Cursor) -> bool:
        self.stored_value = cursor.value
        self.floor = parse_cursor(cursor.value)
        self.after = cursor.extra.get("after")
        self.pending = cursor.extra.get("pending")
        return True

    def fetch(self, result: CollectResult, stop: threading.Event) -> Page:
        path = self.path
        query = {**self.params, "limit": self.collector.config.limit, "raw_json": 1}
        if self.after:
            query["after"] = self.after
        page, body = self.collector.get_listing(path, query, result, stop)
        retrieved = datetime.now(UTC)
        children = page["data"].get("children") or []
        endpoint = f"{self.collector.config.oauth_url.rstrip('/')}{path}?{_query(query)}"
        records: list[PostRecord] = []
        rejected: list[Rejection] = []
        reached_floor = False
        for i, child in enumerate(children if isinstance(children, list) else []):
            data = child.get("data") if isinstance(child, dict) else None
            try:
                record = thing_to_record(child)
                key = cursor_key(data["created_utc"], record.id)  # type: ignore[index]
            except RECORD_ERRORS as exc:
                # Quarantined with the page; still below the cursor's floor once the walk is complete.
                if self.floor is None or (found := _item_key(data)) is None or found > self.floor:
                    rejected.append(reject_item(SOURCE, SOURCE, f"{endpoint} #{i}", child, exc))
                continue
            if self.floor is not None and key <= self.floor:
                reached_floor = True
                continue
            records.append(record)
            if self.pending is None or key > parse_cursor(self.pending):  # type: ignore[operator]
                self.pending = f"{float(data['created_utc'])}:{record.id}"  # type: ignore[index]
        next_after = page["data"].get("after")
        done = reached_floor or not next_after or not children
        if done:
            value, extra = self.pending or self.stored_value or "", {}
        else:
            value, extra = self.stored_value or "", {"after": next_after, "pending": self.pending}
        self.after = next_after
        return Page(endpoint=endpoint, body=body, records=records, cursor_value=value,
                    cursor_extra=extra, more=not done, retrieved_at=retrieved, rejected=rejected)

    def stored(self, page: Page, new: int, duplicate: int, result: CollectResult) -> None:
        return None


class RedditAPI:
    """Reddit's read-only API over plain HTTP: application-only OAuth (client credentials) and GETs.

    The token is fetched on first use and again once when the API answers 401 (it expired); every
    failure is raised as it came (``httpx.HTTPStatusError`` carries the response) for the retry policy.
    """

    def __init__(self, config: RedditConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = http_client(timeout=config.timeout_seconds, headers={"User-Agent": config.user_agent},
                                transport=transport)
        self.token: str | None = None

    def fetch_token(self) -> str:
        answer = self.http.post(
            f"{self.config.www_url.rstrip('/')}/api/v1/access_token", data={"grant_type": "client_credentials"},
            auth=(self.config.client_id.reveal(), self.config.client_secret.reveal()),  # type: ignore[union-attr]
        )
        answer.raise_for_status()
        token = answer.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise retry.TransientError("Reddit token endpoint answered without an access_token")
        return token

    def get(self, path: str, params: dict[str, Any]) -> tuple[Any, str]:
        """GET ``path`` on the API host: (parsed JSON, body verbatim)."""
        for fresh in (self.token is None, True):
            if fresh:
                self.token = self.fetch_token()
            answer = self.http.get(f"{self.config.oauth_url.rstrip('/')}{path}", params=params,
                                   headers={"Authorization": f"bearer {self.token}"})
            if answer.status_code == 401 and not fresh:
                continue  # an expired token: fetch a new one and ask again, once
            break
        answer.raise_for_status()
        return loads(answer.text), answer.text  # hostile values inside one item are left to its validation


def _item_key(data: Any) -> tuple[float, int] | None:
    """The cursor key of a listing item that could not become a post, where it has one."""
    try:
        return cursor_key(data["created_utc"], str(data["name"]))
    except (TypeError, KeyError, ValueError, OverflowError):
        return None


def _query(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(sorted((k, str(v)) for k, v in params.items()))
