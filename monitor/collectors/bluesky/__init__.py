"""Bluesky: the Jetstream firehose filtered locally, plus authenticated searchPosts for backfill.

One module per job: ``parse`` (pure: filters, post records, frames), ``firehose`` (Jetstream passes),
``search`` (searchPosts backfill); this package joins them as the ``bluesky`` source.

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

import logging
import threading
from typing import Any

from sqlalchemy.engine import Engine

from monitor.collectors.base import CollectResult
from monitor.collectors.bluesky.firehose import (
    JetstreamCollector,
    _Page,
)
from monitor.collectors.bluesky.parse import (
    _KANA,
    DEFAULT_REWIND_US,
    JETSTREAM_CURSOR,
    MAX_HANDLES,
    MAX_URI_CHARS,
    POST_COLLECTION,
    SOURCE,
    KeywordFilter,
    Verdict,
    _uri_of,
    fold,
    is_japanese,
    judge_event,
    post_url,
    quoted_uri,
    record_to_post,
    split_at_uri,
    subscribe_url,
)
from monitor.collectors.bluesky.search import (
    SEARCH_OVERLAP,
    SearchBackfill,
    _iso_z,
    _overlap,
    _search_post,
    _sort_time,
    search_cursor_name,
)
from monitor.collectors.config import BlueskyConfig
from monitor.collectors.retry import RetryPolicy
from monitor.errors import CredentialsError, SourceError

__all__ = [
    "BlueskyCollector",
    "DEFAULT_REWIND_US",
    "JETSTREAM_CURSOR",
    "JetstreamCollector",
    "KeywordFilter",
    "MAX_HANDLES",
    "MAX_URI_CHARS",
    "POST_COLLECTION",
    "SEARCH_OVERLAP",
    "SOURCE",
    "SearchBackfill",
    "Verdict",
    "_KANA",
    "_Page",
    "_iso_z",
    "_overlap",
    "_search_post",
    "_sort_time",
    "_uri_of",
    "fold",
    "is_japanese",
    "judge_event",
    "post_url",
    "quoted_uri",
    "record_to_post",
    "search_cursor_name",
    "split_at_uri",
    "subscribe_url",
]

log = logging.getLogger(__name__)




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
