"""The Jetstream firehose pass, filtered locally (see the package docstring)."""


from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from monitor.collectors import retry
from monitor.collectors.base import CollectResult, read_cursor, report_rejected, save_cursor_only, store_page
from monitor.collectors.bluesky.parse import (
    DEFAULT_REWIND_US,
    JETSTREAM_CURSOR,
    MAX_HANDLES,
    SOURCE,
    KeywordFilter,
    judge_event,
    subscribe_url,
)
from monitor.collectors.config import BlueskyConfig
from monitor.collectors.retry import RetryPolicy, Shutdown
from monitor.errors import SourceError
from monitor.records import PostRecord
from storage.database import session_scope
from storage.quarantine import Rejection, store_rejections

log = logging.getLogger(__name__)
INGEST = "bluesky-jetstream"




@dataclass
class _Page:
    frames: list[str] = field(default_factory=list)
    posts: list[PostRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)  # bad frames, quarantined with the page
    cursor_us: int | None = None  # newest time_us processed and not yet saved
    # A replay after a reconnect can bring an older event never seen before: kept even if the cursor stays.

    @property
    def dirty(self) -> bool:
        return bool(self.posts) or bool(self.rejected) or self.cursor_us is not None
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
        if not page.dirty:
            return
        if cursor_us is None:  # no event with a time yet: keep the bad frames, the cursor stays unset
            if page.rejected:
                with session_scope(engine) as session:
                    store_rejections(session, page.rejected)
                report_rejected(result, page.rejected)
                page.rejected.clear()
            return
        extra = {"time": datetime.fromtimestamp(cursor_us / 1_000_000, UTC).isoformat()}
        if page.posts:
            stored = store_page(
                engine, source=SOURCE, endpoint=endpoint, body="\n".join(page.frames), records=page.posts,
                cursor_name=JETSTREAM_CURSOR, cursor_value=str(cursor_us), cursor_extra=extra,
                rejected=page.rejected, ingest=INGEST,
            )
            result.pages += 1
            result.new += stored.new
            result.duplicate += stored.duplicate
            report_rejected(result, stored.rejected)
        else:
            save_cursor_only(engine, SOURCE, JETSTREAM_CURSOR, str(cursor_us), extra, rejected=page.rejected)
            report_rejected(result, page.rejected)
        page.frames.clear()
        page.posts.clear()
        page.rejected.clear()
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
                                where = (f"jetstream time_us {verdict.time_us}" if verdict.time_us is not None
                                         else f"jetstream frame after time_us {last_us}")
                                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                                page.rejected.append(Rejection(INGEST, SOURCE, where, verdict.reason, text))
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


