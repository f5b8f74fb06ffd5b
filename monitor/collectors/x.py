"""X (Twitter) API v2 recent search through tweepy, cost-aware and resumable.

Per configured query (brokers x incident terms, ``lang:ja``, split at the query-length limit):

1. If a pagination is unfinished (``next_token`` in the cursor), continue it.
2. Else, unless the search floor interval has passed, ask the cheap counts endpoint whether anything
   arrived since ``since_id``; search only when it did.
3. Search page by page (``next_token``), newest first down to ``since_id``. Each page is stored with the
   cursor in one transaction. The cursor's ``value`` (since_id) moves to the newest id only when the
   pagination is complete; until then ``extra.next_token`` says where to go on, so a restart mid-pagination
   resumes exactly there and loses nothing between the old since_id and the page it stopped at.

Spend: every page's posts are priced at ``cost_per_post_usd`` and added to today's spend in
``source_health``; a search page is only requested while the estimated day total stays under
``daily_budget_usd``.

The base-URL seam: tweepy's ``Client`` has no base-URL option (``Client.request`` joins the fixed
``https://api.twitter.com`` with each route) but sends every request through its ``session`` attribute, a
``requests.Session``. :class:`XClient` mounts the collectors' transport adapter there (``Session.mount``,
public requests API; see :mod:`monitor.collectors.transport`), which moves the request to
``X_API_BASE_URL`` and sends it through the one ``httpx`` transport with a timeout, so gateways and
loopback test servers work with the unmodified client and its own error types.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import requests
import tweepy
from sqlalchemy.engine import Engine

from monitor.collectors import health, retry
from monitor.collectors.base import CollectResult, Cursor, collect_each, reject_item
from monitor.collectors.config import XConfig
from monitor.collectors.paging import Page, walk_pages
from monitor.collectors.retry import RetryPolicy
from monitor.collectors.transport import TWEEPY_HOSTS, HttpxAdapter, without_userinfo
from monitor.errors import CredentialsError, InputError, SourceError
from monitor.records import RECORD_ERRORS, PostRecord, x_page_users, x_tweet_to_record
from storage.quarantine import Rejection
from storage.records import loads

log = logging.getLogger(__name__)

SOURCE = "x"
TWEET_FIELDS = ["created_at", "lang", "author_id", "referenced_tweets", "public_metrics", "note_tweet"]
USER_FIELDS = ["username", "name"]
EXPANSIONS = ["author_id"]


def build_queries(brokers: tuple[str, ...] | list[str], terms: tuple[str, ...] | list[str], suffix: str, max_length: int) -> list[str]:
    """Queries ``(broker OR ...) (term OR ...) suffix``, each at most ``max_length`` characters.

    >>> build_queries(["楽天証券", "SBI証券"], ["乗っ取り", "不正ログイン"], "lang:ja", 512)
    ['(楽天証券 OR SBI証券) (乗っ取り OR 不正ログイン) lang:ja']
    >>> build_queries(["楽天証券", "SBI証券"], ["乗っ取り"], "lang:ja", 25)
    ['(楽天証券) (乗っ取り) lang:ja', '(SBI証券) (乗っ取り) lang:ja']
    """
    brokers = [b.strip() for b in brokers if b.strip()]
    terms = [t.strip() for t in terms if t.strip()]

    def quote(word: str) -> str:
        return f'"{word}"' if " " in word else word

    def group(words: list[str]) -> str:
        return "(" + " OR ".join(quote(w) for w in words) + ")" if words else ""

    def assemble(b: list[str], t: list[str]) -> str:
        return " ".join(part for part in (group(b), group(t), suffix.strip()) if part)

    def chunk(words: list[str], fits: Any) -> list[list[str]]:
        chunks: list[list[str]] = []
        current: list[str] = []
        for word in words:
            if current and not fits(current + [word]):
                chunks.append(current)
                current = []
            if not fits([word]):
                raise InputError(f"X query word {word!r} cannot fit in a {max_length}-character query: shorten it")
            current.append(word)
        if current:
            chunks.append(current)
        return chunks or [[]]

    longest = max(brokers, key=len) if brokers else ""
    term_chunks = chunk(terms, lambda t: len(assemble([longest] if longest else [], t)) <= max_length)
    queries = []
    for t in term_chunks:
        for b in chunk(brokers, lambda b, t=t: len(assemble(b, t)) <= max_length):
            queries.append(assemble(b, t))
    return queries


def cursor_name(query: str) -> str:
    """Cursor key of a query: queries can be 512 characters, the key column is shorter."""
    return "search:" + hashlib.sha256(query.encode()).hexdigest()[:16]


class XClient(tweepy.Client):
    """tweepy's v2 client, answering raw ``requests.Response`` objects (we keep the body verbatim).

    Configured through public API only: ``return_type=requests.Response`` (raw pages),
    ``wait_on_rate_limit=False`` (waiting is the retry policy's job), and a transport adapter mounted on
    the client's ``session`` (see :mod:`monitor.collectors.transport`) that sends its requests through the
    collectors' one ``httpx`` transport to ``base_url`` with a timeout (tweepy sets none).
    """

    def __init__(self, bearer_token: str, base_url: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(bearer_token=bearer_token, return_type=requests.Response, wait_on_rate_limit=False)
        adapter = HttpxAdapter(base_url, timeout, transport)
        for host in TWEEPY_HOSTS:
            self.session.mount(host + "/", adapter)


class XCollector:
    """Recent search for the configured queries; see the module docstring for the order of work."""

    source = SOURCE

    def __init__(self, config: XConfig, policy: RetryPolicy | None = None, *, client: XClient | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not config.bearer_token:
            raise CredentialsError("X_BEARER_TOKEN")
        self.config = config
        self.policy = policy or RetryPolicy()
        self.client = client or XClient(config.bearer_token.reveal(), config.api_base_url, config.timeout_seconds, transport)
        self.queries = build_queries(config.brokers, config.incident_terms, config.query_suffix, config.max_query_length)
        # Authors seen on earlier pages: a page's includes.users may omit an author it already sent.
        self.users: dict[str, dict[str, Any]] = {}

    # --- requests ---------------------------------------------------------------------------------------

    def request(self, what: str, fn: Any, result: CollectResult, stop: threading.Event) -> tuple[dict[str, Any], str, str]:
        """One request under the retry policy; returns (parsed JSON, body text, endpoint URL)."""

        def attempt() -> tuple[dict[str, Any], str, str]:
            response = fn()
            body = response.text
            # A truncated body raises here and is retried like a reset; a hostile value inside one post
            # (a 4,300-digit number, NaN, deep nesting) is left to that post's validation.
            page = loads(body)
            if not isinstance(page, dict):
                raise retry.TransientError(f"{what}: answer is not a JSON object")
            return page, body, without_userinfo(response.url)

        def count() -> None:
            result.requests += 1

        return retry.call(attempt, policy=self.policy, stop=stop, what=what, credential_hint="X_BEARER_TOKEN", on_attempt=count)

    def counts_moved(self, query: str, since_id: str, result: CollectResult, stop: threading.Event, engine: Engine) -> bool:
        page, _, _ = self.request(
            f"X counts {query[:40]!r}",
            lambda: self.client.get_recent_tweets_count(query, since_id=since_id, granularity="minute"),
            result,
            stop,
        )
        if self.config.cost_per_counts_request_usd:
            result.spend_usd += self.config.cost_per_counts_request_usd
            health.add_spend(engine, SOURCE, self.config.cost_per_counts_request_usd)
        meta = page.get("meta") or {}
        total = meta.get("total_tweet_count")
        if total is None:
            total = sum(int(b.get("tweet_count") or 0) for b in page.get("data") or () if isinstance(b, dict))
        return int(total) > 0

    # --- one query --------------------------------------------------------------------------------------

    def search_due(self, cursor_extra: dict[str, Any], now: datetime) -> bool:
        last = cursor_extra.get("last_search_at")
        if not last:
            return True
        try:
            return now - datetime.fromisoformat(last) >= timedelta(seconds=self.config.search_floor_seconds)
        except ValueError:
            return True

    def collect_query(self, engine: Engine, query: str, stop: threading.Event, result: CollectResult) -> None:
        walk_pages(engine, _SearchWalk(self, engine, query), source=SOURCE, cursor_name=cursor_name(query),
                   max_pages=self.config.max_pages_per_pass, result=result, stop=stop, label=f"X {query[:40]!r}")

    def parse(self, page: dict[str, Any], endpoint: str) -> tuple[list[PostRecord], list[Rejection]]:
        """The page's posts, and the tweets that cannot be posts (quarantined with the page)."""
        self.users.update(x_page_users(page))
        data = page.get("data")
        tweets = data if isinstance(data, list) else []
        if page.get("errors"):
            log.info("X page carries %d partial error(s) from the API; the good posts are kept", len(page["errors"]))
        records, rejected = [], []
        for i, tweet in enumerate(tweets):
            try:
                records.append(x_tweet_to_record(tweet, self.users))
            except RECORD_ERRORS as exc:
                rejected.append(reject_item(SOURCE, SOURCE, f"{endpoint} #{i}", tweet, exc))
        return records, rejected

    # --- the pass ---------------------------------------------------------------------------------------

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        return collect_each(SOURCE, self.queries, self.collect_query, engine, stop)


class _SearchWalk:
    """One query's recent search as a :class:`~monitor.collectors.paging.Walk`."""

    def __init__(self, collector: XCollector, engine: Engine, query: str) -> None:
        self.collector, self.config, self.engine, self.query = collector, collector.config, engine, query
        self.since_id: str | None = None
        self.extra: dict[str, Any] = {}
        self.next_token: str | None = None
        self.pending_newest: str | None = None
        self.seen_tokens: dict[str, int] = {}
        self.pages = 0

    def begin(self, cursor: Cursor) -> bool:
        self.since_id = cursor.value or None
        self.extra = dict(cursor.extra)
        self.next_token = self.extra.get("next_token")
        self.pending_newest = self.extra.get("pending_newest_id")
        return True

    def due(self, result: CollectResult, stop: threading.Event) -> bool:
        """Outside the search floor interval, search only when the counts endpoint shows something new."""
        if self.next_token or not self.since_id or self.collector.search_due(self.extra, datetime.now(UTC)):
            return True
        if self.collector.counts_moved(self.query, self.since_id, result, stop, self.engine):
            return True
        log.info("X %r: counts show nothing new since %s; search skipped", self.query[:40], self.since_id)
        return False

    def fetch(self, result: CollectResult, stop: threading.Event) -> Page | None:
        query = self.query
        if self.pages == 0 and not self.due(result, stop):
            return None
        page_cost = self.config.max_results * self.config.cost_per_post_usd
        spent = health.spent_today(self.engine, SOURCE)
        if spent + page_cost > self.config.daily_budget_usd:
            note = (f"daily budget ${self.config.daily_budget_usd:.2f} reached (spent ~${spent:.2f} today); "
                    "searching resumes tomorrow (UTC)")
            log.warning("X: %s", note)
            result.notes.append(note)
            return None
        while True:
            params: dict[str, Any] = {
                "max_results": self.config.max_results,
                "tweet_fields": TWEET_FIELDS,
                "expansions": EXPANSIONS,
                "user_fields": USER_FIELDS,
            }
            if self.since_id:
                params["since_id"] = self.since_id
            if self.next_token:
                params["next_token"] = self.next_token
            try:
                page, body, endpoint = self.collector.request(
                    f"X search {query[:40]!r}", lambda p=params: self.collector.client.search_recent_tweets(query, **p),
                    result, stop,
                )
                break
            except SourceError as exc:
                if self.next_token and exc.status == 400:
                    # An expired pagination token: start again from since_id; re-reads are stored once.
                    log.warning("X %r: pagination token refused (%s); restarting from since_id", query[:40], exc)
                    self.next_token, self.pending_newest = None, None
                    continue
                raise
        retrieved = datetime.now(UTC)
        records, rejected = self.collector.parse(page, endpoint)
        meta = found if isinstance(found := page.get("meta"), dict) else {}
        newest = meta.get("newest_id")
        if newest and (self.pending_newest is None or int(newest) > int(self.pending_newest)):
            self.pending_newest = str(newest)
        token = meta.get("next_token")
        if token:
            # A repeated page hands out the same token again; following it once more is right, but a
            # service stuck on one page must not loop forever (the cursor keeps the token for later).
            self.seen_tokens[token] = self.seen_tokens.get(token, 0) + 1
            if self.seen_tokens[token] > 3:
                raise SourceError(f"X search {query[:40]!r}: the API keeps answering the same page; the next pass resumes")
            new_extra = {**self.extra, "query": query, "next_token": token, "pending_newest_id": self.pending_newest}
            value = self.since_id or ""
        else:
            value = self.pending_newest or self.since_id or ""
            if self.since_id and value and int(self.since_id) > int(value):
                value = self.since_id
            new_extra = {"query": query, "last_search_at": retrieved.isoformat()}
        self.next_token = token or None
        cost = len(page["data"]) * self.config.cost_per_post_usd if isinstance(page.get("data"), list) else 0.0
        return Page(endpoint=endpoint, body=body, records=records, cursor_value=value, cursor_extra=new_extra,
                    more=bool(token), retrieved_at=retrieved, cost=cost, rejected=rejected)

    def stored(self, page: Page, new: int, duplicate: int, result: CollectResult) -> None:
        total_today = health.add_spend(self.engine, SOURCE, page.cost)
        result.spend_usd += page.cost
        self.pages += 1
        log.info("X %r: page %d, %d new, %d duplicate, ~$%.4f (today ~$%.2f)",
                 self.query[:40], self.pages, new, duplicate, page.cost, total_today)
