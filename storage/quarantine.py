"""The ``rejected`` table: records an ingest path could not store, kept with the reason.

A bad record never stops an ingest (a file import, a replay, a collector's page): it is written here in the
transaction that stores the good records around it, and the ingest goes on. Rows are deduplicated by a
fingerprint of (source, location, whole record), so importing the same file again or reading the same
page twice adds nothing; the same bad record met somewhere else (another file, another page) is a new row.

The record is kept as received, cut to :data:`MAX_RECORD_CHARS`, with U+0000 and lone surrogates made
storable (``\\u0000`` / ``\\udXXX`` escapes written out) so every backend holds it. Records come from files
and API bodies, never from request headers, so no credential reaches this table; locations are URLs
without userinfo (the collectors strip it) or file paths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from storage.models import Rejected

__all__ = ["MAX_RECORD_CHARS", "MAX_REASON_CHARS", "Rejection", "count_rejected", "list_rejected", "store_rejections"]

MAX_RECORD_CHARS = 4096
MAX_REASON_CHARS = 1000
MAX_LOCATION_CHARS = 2000


def _storable(text: str) -> str:
    """Written-out escapes for what a text column cannot hold (U+0000 on PostgreSQL, lone surrogates)."""
    text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(frozen=True, slots=True)
class Rejection:
    """One bad record: where it came in (``ingest``: import, replay, file, x, reddit, bluesky), the
    service it came from, where in the input it was (``FILE:LINE``, or the page and item), why, and the
    record as received."""

    ingest: str
    source: str
    location: str
    reason: str
    record: str

    @property
    def line(self) -> str:
        """The one line that reports it: ``location: reason``."""
        return " ".join(f"{self.location}: {self.reason}".split())

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (self.source, self.location, self.record):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        return digest.hexdigest()

    def row(self, now: datetime) -> dict[str, Any]:
        record = self.record
        cut = record[:MAX_RECORD_CHARS]
        return {
            "rejected_at": now,
            "ingest": self.ingest[:32],
            "source": self.source[:32],
            "location": _storable(self.location)[:MAX_LOCATION_CHARS],
            "reason": _storable(" ".join(self.reason.split()))[:MAX_REASON_CHARS],
            "record": _storable(cut)[: MAX_RECORD_CHARS * 2],  # escapes may lengthen it; still bounded
            "record_chars": len(record),
            "fingerprint": self.fingerprint,
        }


def store_rejections(session: Session, rejections: Sequence[Rejection], now: datetime | None = None) -> int:
    """Insert the rejections not stored before (by fingerprint) in the caller's transaction; returns how
    many rows are new."""
    if not rejections:
        return 0
    now = now or datetime.now(UTC)
    rows = list({r.fingerprint: r.row(now) for r in rejections}.values())
    table = Rejected.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = insert.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(table.c.id)
    return len(session.execute(stmt, rows).all())


def count_rejected(session: Session) -> int:
    return int(session.exec(select(sa.func.count()).select_from(Rejected)).one())


def list_rejected(session: Session, *, limit: int = 20, source: str | None = None,
                  since: datetime | None = None) -> list[Rejected]:
    """The newest rejected records first."""
    query = select(Rejected)
    if source:
        query = query.where(col(Rejected.source) == source)
    if since is not None:
        query = query.where(col(Rejected.rejected_at) >= since)
    return list(session.exec(query.order_by(col(Rejected.id).desc()).limit(limit)).all())
