"""The one page loop of the paginated collectors (X search, Reddit listings, Bluesky searchPosts).

A walk over one query or listing is always the same: load the cursor, then page by page fetch, store the
raw page with its posts and the new cursor in ONE transaction (:func:`~monitor.collectors.base.store_page`),
count, stop when the service says the walk is complete, when a shutdown is requested (after the page is
committed, so nothing is lost) or at the page limit (a note says the next pass continues from the stored
cursor). What differs per service is only how a page is fetched and what the cursor becomes; that is a
:class:`Walk`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from monitor.collectors.base import CollectResult, Cursor, read_cursor, report_rejected, store_page
from monitor.collectors.retry import Shutdown
from monitor.records import PostRecord
from storage.quarantine import Rejection


@dataclass(slots=True)
class Page:
    """One fetched page and what the cursor becomes once it is stored."""

    endpoint: str  # the URL without credentials (provenance)
    body: str  # the answer verbatim
    records: Sequence[PostRecord]
    cursor_value: str
    cursor_extra: dict[str, Any]
    more: bool  # another page follows in this walk
    retrieved_at: datetime | None = None
    cost: float = 0.0  # estimated spend of the page (priced sources)
    rejected: Sequence[Rejection] = ()  # items of the page that could not become posts (quarantined)


class Walk(Protocol):
    """How one service walks one query; the loop does the rest."""

    def begin(self, cursor: Cursor) -> bool:
        """Take the stored cursor; False skips the walk (nothing new, say)."""
        ...

    def fetch(self, result: CollectResult, stop: threading.Event) -> Page | None:
        """The next page (requests counted in ``result``); None ends the walk before a request (a budget)."""
        ...

    def stored(self, page: Page, new: int, duplicate: int, result: CollectResult) -> None:
        """After the page's transaction committed (spend, logs)."""
        ...


def walk_pages(
    engine: Engine,
    walk: Walk,
    *,
    source: str,
    cursor_name: str,
    max_pages: int,
    result: CollectResult,
    stop: threading.Event,
    label: str,
    ingest: str | None = None,
) -> None:
    """Run ``walk`` for at most ``max_pages`` pages; raises :class:`Shutdown` when stopped mid-walk.

    A page's bad items (``Page.rejected``) and the posts the database refuses are quarantined in the
    page's transaction and logged once; the page and cursor are stored all the same, so a bad post is
    never fetched again and again."""
    if not walk.begin(read_cursor(engine, source, cursor_name)):
        return
    for _ in range(max_pages):
        page = walk.fetch(result, stop)
        if page is None:
            return
        stored = store_page(
            engine, source=source, endpoint=page.endpoint, body=page.body, records=page.records,
            cursor_name=cursor_name, cursor_value=page.cursor_value, cursor_extra=page.cursor_extra,
            retrieved_at=page.retrieved_at, rejected=page.rejected, ingest=ingest,
        )
        new, duplicate = stored.new, stored.duplicate
        report_rejected(result, stored.rejected)
        result.pages += 1
        result.new += new
        result.duplicate += duplicate
        walk.stored(page, new, duplicate, result)
        if not page.more:
            return
        if stop.is_set():
            raise Shutdown()
    result.notes.append(f"{label}: page limit {max_pages} reached; the next pass continues")
