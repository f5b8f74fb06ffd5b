"""JSONL import as a collector: Post records, X API v2 pages (twarc2 output) and flattened tweets.

Lines are stored in batches; each batch commits its posts, the raw X pages it holds and the file's cursor
(the last line stored) together, so an interrupted import of a large file resumes after the last
committed line instead of starting over. Storing a post twice changes nothing either way. A line (or one
post of an X page) that is not usable goes to the ``rejected`` table in its batch's transaction, is logged
once as ``path:line: reason`` and counted in ``skipped``.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from monitor.collectors.base import CollectResult, read_cursor, report_rejected
from monitor.ingest import (
    FileLine,
    check_input_file,
    iter_file_lines,
    line_locator,
    open_input,
    raw_for_line,
    save_cursor,
    store_records,
)
from monitor.records import PostRecord
from storage.database import session_scope
from storage.quarantine import Rejection, store_rejections

log = logging.getLogger(__name__)
SOURCE = "file"


def _identity(path: Path) -> str:
    """The file's first 4 KiB hashed: a different file at the same path does not resume the old cursor."""
    with check_input_file(path).open("rb") as fh:
        return hashlib.sha256(fh.read(4096)).hexdigest()[:16]


class FileCollector:
    """Import one JSONL file. ``resume`` skips lines an earlier, interrupted import already committed."""

    source = SOURCE

    def __init__(self, path: str | Path, *, batch_lines: int = 500, resume: bool = True) -> None:
        self.path = Path(path)
        self.batch_lines = batch_lines
        self.resume = resume and str(path) != "-"

    def _cursor_name(self) -> str:
        resolved = str(self.path.resolve())
        return "file:" + (resolved if len(resolved) <= 200 else hashlib.sha256(resolved.encode()).hexdigest())

    def collect(self, engine: Engine, stop: threading.Event) -> CollectResult:
        result = CollectResult(SOURCE)
        stream = open_input(self.path)
        name = self._cursor_name()
        identity = _identity(self.path) if self.resume else ""
        start_after = 0
        if self.resume:
            cursor = read_cursor(engine, SOURCE, name)
            if cursor.value and cursor.extra.get("identity") == identity:
                start_after = int(cursor.value)
                if start_after:
                    result.notes.append(f"resumed after line {start_after}")
        batch: list[FileLine] = []
        try:
            for line in iter_file_lines(stream, str(self.path)):
                if line.line_no <= start_after:
                    continue
                batch.append(line)
                if len(batch) >= self.batch_lines:
                    self._flush(engine, batch, name, identity, result)
                    batch = []
                    if stop.is_set():
                        result.stopped = True
                        return result
            if batch:
                self._flush(engine, batch, name, identity, result)
        finally:
            if stream is not sys.stdin:
                stream.close()
        return result

    def _flush(self, engine: Engine, batch: list[FileLine], name: str, identity: str, result: CollectResult) -> None:
        now = datetime.now(UTC)
        path = str(self.path)
        reject = line_locator(batch, path, SOURCE)
        rejected: list[Rejection] = [r for line in batch for r in line.rejections(SOURCE)]
        with session_scope(engine) as session:
            store_rejections(session, rejected, now)
            plain: list[PostRecord] = []
            for line in batch:
                raw = raw_for_line(line, path, now) if line.records else None
                if raw is not None:  # X pages keep their raw payload, one raw row per page
                    stored = store_records(session, line.records, raw=raw, now=now, reject=reject)
                    result.new += stored.new
                    result.duplicate += stored.duplicate
                    rejected.extend(stored.rejected)
                else:
                    plain.extend(line.records)
            if plain:
                stored = store_records(session, plain, now=now, reject=reject)
                result.new += stored.new
                result.duplicate += stored.duplicate
                rejected.extend(stored.rejected)
            if self.resume:
                save_cursor(session, SOURCE, name, str(batch[-1].line_no), {"identity": identity, "path": str(self.path)})
        result.pages += 1
        report_rejected(result, rejected)
