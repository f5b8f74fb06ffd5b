"""The one small protocol every collector follows, and the one way a collector stores a page.

A collector turns one service (X, Reddit, Bluesky, a JSONL file) into Post rows. A pass is
``collector.collect(engine, stop)``: it fetches pages until it is caught up, its budget is spent, or
``stop`` is set, and after EACH page it calls :func:`store_page`, which writes the raw payload (with
provenance), the parsed posts and the collector's cursor in ONE transaction. A crash between pages loses
nothing and repeats nothing: the next pass starts from the committed cursor, and storing a post twice is a
no-op anyway.

Errors: credential problems raise :class:`~monitor.errors.CredentialsError` (the source is disabled, the
others keep running); service trouble that outlasts the retry policy raises
:class:`~monitor.errors.SourceError`; a shutdown request ends the pass early with ``stopped=True``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.engine import Engine

from monitor import __version__
from monitor.collectors.retry import Shutdown
from monitor.ingest import RawPayload, StoreResult, load_cursor, save_cursor, store_records
from monitor.records import PostRecord, item_text, record_error
from storage.database import session_scope
from storage.quarantine import Rejection, store_rejections

log = logging.getLogger(__name__)
COLLECTOR_VERSION = f"incident-monitor-collector/{__version__}"


@dataclass(slots=True)
class CollectResult:
    """What one pass did; the scheduler folds it into SourceHealth and the logs."""

    source: str
    pages: int = 0
    new: int = 0
    duplicate: int = 0
    skipped: int = 0  # items that could not be stored: each is in the ``rejected`` table and logged once
    requests: int = 0
    spend_usd: float = 0.0
    stopped: bool = False  # shutdown was requested mid-pass; the last committed page is kept
    notes: list[str] = field(default_factory=list)  # one-line remarks for logs/status (budget hit, ...)

    def add(self, other: CollectResult) -> None:
        self.pages += other.pages
        self.new += other.new
        self.duplicate += other.duplicate
        self.skipped += other.skipped
        self.requests += other.requests
        self.spend_usd += other.spend_usd
        self.stopped = self.stopped or other.stopped
        self.notes.extend(other.notes)

    def summary(self) -> str:
        """One log line.

        >>> CollectResult("x", pages=2, new=5, duplicate=1, requests=3).summary()
        'x: 2 page(s), 5 new, 1 duplicate, 0 skipped, 3 request(s), spend ~$0.0000'
        """
        text = (
            f"{self.source}: {self.pages} page(s), {self.new} new, {self.duplicate} duplicate, "
            f"{self.skipped} skipped, {self.requests} request(s), spend ~${self.spend_usd:.4f}"
        )
        if self.stopped:
            text += ", stopped by shutdown"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


@runtime_checkable
class Collector(Protocol):
    """One source. ``source`` is the Post ``source`` value it writes (``x``, ``reddit``, ``bluesky``)."""

    source: str

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        """Run one pass: fetch, store page by page (see :func:`store_page`), return what happened."""
        ...


def collect_each(
    source: str,
    queries: Sequence[str],
    collect_query: Callable[[Engine, str, threading.Event, CollectResult], None],
    engine: Engine,
    stop: threading.Event,
) -> CollectResult:
    """One pass over several queries: each stores page by page; a shutdown ends the pass at once, keeping
    every committed page (the next pass resumes from the cursors)."""
    result = CollectResult(source)
    try:
        for query in queries:
            if stop.is_set():
                result.stopped = True
                break
            collect_query(engine, query, stop, result)
    except Shutdown:
        result.stopped = True
    return result


@dataclass(frozen=True, slots=True)
class Cursor:
    """A cursor as loaded: ``value`` (since_id, time_us, fullname ...) plus ``extra`` (next_token ...)."""

    value: str | None
    extra: dict[str, Any]


def read_cursor(engine: Engine, source: str, name: str) -> Cursor:
    with session_scope(engine) as session:
        row = load_cursor(session, source, name)
        if row is None:
            return Cursor(None, {})
        return Cursor(row.value or None, dict(row.extra or {}))


def reject_item(ingest: str, source: str, location: str, item: Any, exc: Exception) -> Rejection:
    """One item of a page that could not become a post, as a row of the ``rejected`` table."""
    return Rejection(ingest, source, location, record_error(exc).reason, item_text(item))


def page_rejector(ingest: str, endpoint: str) -> Callable[[PostRecord, str], Rejection]:
    """How a post of a page that the database refused is described: the page and the post's id."""

    def reject(record: PostRecord, reason: str) -> Rejection:
        return Rejection(ingest, record.source, f"{endpoint} post {record.id}", reason,
                         json.dumps(record.to_json(), ensure_ascii=False))

    return reject


def report_rejected(result: CollectResult, rejections: Sequence[Rejection]) -> None:
    """Count the page's quarantined records and log each as one line, once it is committed."""
    result.skipped += len(rejections)
    for rejection in rejections:
        log.warning("%s: rejected: %s", result.source, rejection.line)


def store_page(
    engine: Engine,
    *,
    source: str,
    endpoint: str,
    body: str,
    records: Sequence[PostRecord],
    cursor_name: str,
    cursor_value: str,
    cursor_extra: dict[str, Any] | None = None,
    retrieved_at: datetime | None = None,
    rejected: Sequence[Rejection] = (),
    ingest: str | None = None,
) -> StoreResult:
    """Raw page, posts, the page's rejected records and cursor in one transaction.

    ``endpoint`` is the URL without credentials (provenance); ``body`` is the response text verbatim.
    A post the database refuses joins ``rejected`` (the returned ``rejected`` lists all of them), so one
    bad post never fails its page and the cursor always moves on.
    """
    raw = RawPayload(
        source=source,
        endpoint=endpoint,
        body=body,
        retrieved_at=retrieved_at or datetime.now(UTC),
        collector_version=COLLECTOR_VERSION,
    )
    with session_scope(engine) as session:
        stored = store_records(session, records, raw=raw, rejected=rejected,
                               reject=page_rejector(ingest or source, endpoint))
        save_cursor(session, source, cursor_name, cursor_value, cursor_extra)
    return stored


def save_cursor_only(engine: Engine, source: str, name: str, value: str, extra: dict[str, Any] | None = None,
                     rejected: Sequence[Rejection] = ()) -> None:
    """Move a cursor without posts (an empty page, a counts poll's bookkeeping), with the records
    rejected on the way."""
    with session_scope(engine) as session:
        store_rejections(session, rejected)
        save_cursor(session, source, name, value, extra)
