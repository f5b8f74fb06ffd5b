"""Raw page -> stored rows: an idempotent upsert of posts, with the raw payload and the cursor in the same
transaction, so a crash at any point neither loses nor duplicates a post.

Also the line-by-line reader for JSONL files (Post records and X API v2 pages) used by ``import``,
``replay`` and the file collector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from monitor import __version__
from monitor.errors import InputError
from monitor.records import RECORD_ERRORS, PostRecord, parse_line_object, record_error
from storage.models import AnalysisQueue, CollectorCursor, Post, RawPage
from storage.quarantine import Rejection, store_rejections
from storage.records import loads, storable_text
from storage.search import index_posts

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024  # one X page is well under 1 MB; a 16 MB "line" is a broken file


@dataclass(frozen=True, slots=True)
class RawPayload:
    """A page as received, with its provenance."""

    source: str
    endpoint: str
    body: str
    retrieved_at: datetime
    collector_version: str = f"incident-monitor/{__version__}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class StoreResult:
    new: int = 0
    duplicate: int = 0
    new_keys: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)  # given ones and those the database refused


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise InputError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")


def _store_raw(session: Session, raw: RawPayload) -> int:
    """Insert the raw page unless the same bytes from the same source are already stored; return its id."""
    digest = raw.sha256
    stmt = (
        _insert(session, RawPage.__table__)  # type: ignore[attr-defined]  # SQLModel does not declare __table__
        .values(
            source=raw.source,
            endpoint=raw.endpoint[:2000],
            retrieved_at=raw.retrieved_at,
            collector_version=raw.collector_version,
            sha256=digest,
            payload=storable_text(raw.body),  # U+0000 and lone surrogates cannot be stored as text
        )
        .on_conflict_do_nothing(index_elements=["source", "sha256"])
    )
    session.execute(stmt)
    page_id = session.exec(
        select(RawPage.id).where(RawPage.source == raw.source, RawPage.sha256 == digest)
    ).one()
    return int(page_id)  # type: ignore[arg-type]  # SQLModel types the key column as int | None


def post_row_values(record: PostRecord, raw_page_id: int | None, now: datetime) -> dict[str, Any]:
    return {**record.row_values(), "raw_page_id": raw_page_id, "ingested_at": now}


def save_cursor(session: Session, source: str, name: str, value: str, extra: dict[str, Any] | None = None) -> None:
    """Upsert a collector cursor (call inside the transaction that stores the posts it covers)."""
    now = datetime.now(UTC)
    stmt = _insert(session, CollectorCursor.__table__).values(  # type: ignore[attr-defined]  # SQLModel does not declare __table__
        source=source, name=name, value=value, extra=extra or {}, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "name"],
        set_={"value": stmt.excluded.value, "extra": stmt.excluded.extra, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt)


def load_cursor(session: Session, source: str, name: str) -> CollectorCursor | None:
    return session.get(CollectorCursor, (source, name))


def default_rejection(record: PostRecord, reason: str) -> Rejection:
    """A record the database refused, where the caller named no better location than its key."""
    return Rejection("store", record.source, record.key, reason, json.dumps(record.to_json(), ensure_ascii=False))


def _savepoint(session: Session) -> AbstractContextManager[Any]:
    """A SAVEPOINT inside the caller's transaction, on both backends.

    pysqlite begins a transaction only before a write, so a SAVEPOINT sent first would itself open (and
    its RELEASE commit) a transaction of its own; begin one explicitly so the savepoint nests in it.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN")
    return session.begin_nested()


def _database_reason(exc: Exception) -> str:
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"the database refused it ({type(cause).__name__}: {first[:200]})"


_INSERT_ERRORS = (sa.exc.StatementError, ValueError, OverflowError, TypeError)


def _refused_for_its_data(exc: Exception) -> bool:
    """Whether a failed insert is about the values sent (a bind value no backend accepts: OverflowError
    from a timestamp, a value too long for its column on PostgreSQL, U+0000, NaN in JSON ...), which a
    record-by-record retry can pin on one record. A lost connection or a lock timeout is not: that is
    raised as it is, so the caller's transaction fails whole and nothing good is quarantined."""
    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError)
    return True  # raised while binding, before anything reached the database


def _insert_posts(session: Session, records: Sequence[PostRecord], raw_id: int | None,
                  now: datetime) -> list[Any]:
    """Insert posts, queue and index the new ones; returns (source, post_id, pk, created_at) of the new."""
    table = Post.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    # One statement sent as executemany: SQLAlchemy compiles it once and batches the rows itself
    # ("insertmanyvalues"), where a per-page multi-VALUES insert was recompiled for every page.
    stmt = (
        _insert(session, table)
        .on_conflict_do_nothing(index_elements=["source", "post_id"])
        .returning(table.c.source, table.c.post_id, table.c.id, table.c.created_at)
    )
    inserted = session.execute(stmt, [post_row_values(r, raw_id, now) for r in records]).all()
    if inserted:
        # Queued and indexed in the same transaction, so a stored post is always either annotated or
        # queued, and always findable.
        texts = {(r.source, r.id): r.text for r in records}
        session.execute(sa.insert(AnalysisQueue.__table__),  # type: ignore[attr-defined]  # SQLModel does not declare __table__
                        [{"post_pk": pk, "created_at": created} for _, _, pk, created in inserted])
        index_posts(session, [(pk, texts[(s, p)]) for s, p, pk, _ in inserted])
    return list(inserted)


def store_records(
    session: Session,
    records: Sequence[PostRecord],
    *,
    raw: RawPayload | None = None,
    cursor: tuple[str, str, str] | None = None,
    now: datetime | None = None,
    rejected: Sequence[Rejection] = (),
    reject: Callable[[PostRecord, str], Rejection] = default_rejection,
) -> StoreResult:
    """Store posts idempotently: a (source, id) already present is left as it is.

    Runs inside the caller's transaction; the caller commits, so raw page, posts, the records rejected
    while parsing (``rejected``) and cursor land together. Records were validated as PostRecords; should
    the database still refuse the batch, it is retried record by record, each in a savepoint, so exactly
    the refused records go to ``rejected`` (described by ``reject``) and the others are stored.
    """
    now = now or datetime.now(UTC)
    raw_id = _store_raw(session, raw) if raw is not None else None
    result = StoreResult(rejected=list(rejected))
    # Collapse repeats inside one batch first: a repeated page must not count twice either.
    unique: dict[tuple[str, str], PostRecord] = {}
    for record in records:
        unique.setdefault((record.source, record.id), record)
    if unique:
        try:
            with _savepoint(session):
                inserted = _insert_posts(session, list(unique.values()), raw_id, now)
        except _INSERT_ERRORS as exc:
            if not _refused_for_its_data(exc):
                raise
            log.info("a batch of %d posts was refused (%s); storing them one by one", len(unique), exc.__class__.__name__)
            inserted = []
            for record in unique.values():
                try:
                    with _savepoint(session):
                        inserted.extend(_insert_posts(session, [record], raw_id, now))
                except _INSERT_ERRORS as one:
                    if not _refused_for_its_data(one):
                        raise
                    result.rejected.append(reject(record, _database_reason(one)))
        result.new = len(inserted)
        result.new_keys = [f"{s}:{p}" for s, p, _, _ in inserted]
    refused = len(result.rejected) - len(rejected)
    result.duplicate = len(records) - result.new - refused
    store_rejections(session, result.rejected, now)
    if cursor is not None:
        save_cursor(session, *cursor)
    return result


# --- reading JSONL files -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileLine:
    """One line of an input file: its records, or the errors that made it (or items of it) unusable."""

    line_no: int
    records: tuple[PostRecord, ...]
    errors: tuple[InputError, ...]  # each with path:line, and ``record`` set where one item of a page was bad
    kind: str  # post | x_page | x_flat | error
    body: str

    def source(self) -> str:
        return "x" if self.kind in ("x_page", "x_flat") else "file"

    def rejections(self, ingest: str) -> list[Rejection]:
        """The line's errors as rows of the ``rejected`` table."""
        return [Rejection(ingest, self.source(), f"{e.path}:{e.line}", e.reason,
                          e.record if e.record is not None else self.body) for e in self.errors]


def iter_file_lines(stream: IO[str], path: str) -> Iterator[FileLine]:
    """Parse a JSONL stream line by line; every problem carries ``path:line``. Never raises for a line:
    whatever one hostile line holds (nesting, huge numbers, odd types) comes back as its error."""
    for line_no, line in enumerate(stream, start=1):
        body = line.strip()
        if not body:
            continue
        if len(body) > MAX_LINE_BYTES:
            yield FileLine(line_no, (), (InputError("line is over 16 MB: not one record", path=path, line=line_no),),
                           "error", body[:8192])
            continue
        try:
            obj = loads(body)
        except ValueError as exc:
            reason = (f"not valid JSON ({exc.msg} at column {exc.colno})" if isinstance(exc, json.JSONDecodeError)
                      else f"not valid JSON ({' '.join(str(exc).split())[:200]})")
            yield FileLine(line_no, (), (InputError(reason, path=path, line=line_no),), "error", body)
            continue
        try:
            records, errors, kind = parse_line_object(obj)
        except RECORD_ERRORS as exc:
            yield FileLine(line_no, (), (InputError(record_error(exc).reason, path=path, line=line_no),), "error", body)
            continue
        located = tuple(InputError(e.reason, path=path, line=line_no, record=e.record) for e in errors)
        yield FileLine(line_no, tuple(records), located, kind, body)


def open_input(path: str | Path) -> IO[str]:
    """Open a JSONL file (``-`` for stdin) as UTF-8 text, replacing undecodable bytes."""
    if str(path) == "-":
        return sys.stdin
    p = check_input_file(path)
    return p.open("r", encoding="utf-8", errors="replace")


def check_input_file(path: str | Path) -> Path:
    """``path`` as a readable file, or an :class:`InputError` that says what it is instead."""
    p = Path(path)
    if p.is_dir():
        raise InputError("is a directory: name one JSONL file (e.g. a file inside it)", path=str(p))
    if not p.exists():
        raise InputError(f"no such file: {p}", path=str(p))
    return p


def raw_for_line(line: FileLine, path: str, now: datetime) -> RawPayload | None:
    """X pages keep their raw payload (with the twarc envelope's URL and time as provenance)."""
    if line.kind not in ("x_page", "x_flat"):
        return None
    try:
        envelope = json.loads(line.body).get("__twarc") or {}
    except (json.JSONDecodeError, AttributeError):
        envelope = {}
    retrieved = now
    if isinstance(envelope.get("retrieved_at"), str):
        try:
            retrieved = datetime.fromisoformat(envelope["retrieved_at"].replace("Z", "+00:00"))
        except ValueError:
            pass
    endpoint = envelope.get("url") or f"file:{path}"
    return RawPayload(source="x", endpoint=str(endpoint), body=line.body, retrieved_at=retrieved,
                      collector_version=f"file-import/{__version__}")


# --- importing a whole file ----------------------------------------------------------------------------


@dataclass
class ImportResult:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[InputError] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def import_file(engine: sa.Engine, path: str | Path, *,
                on_error: Callable[[InputError], None] | None = None, batch_lines: int = 200,
                ingest: str = "import", name: str | None = None) -> ImportResult:
    """Store every good record of a Post JSONL / twarc2 JSONL file; bad records are quarantined.

    Good lines are committed in batches, so a bad line never costs the good ones around it, and running
    the same file twice stores nothing new. Each bad record (a line, or one post of an X page line) is
    written to the ``rejected`` table with its reason, in the transaction of its batch, and reported once
    to ``on_error`` as ``FILE:LINE: reason``. ``name`` is the file as the user named it (replay reads
    standard input from a temporary copy).
    """
    result = ImportResult()
    name = name or str(path)
    stream = open_input(path)
    batch: list[FileLine] = []
    try:
        for line in iter_file_lines(stream, name):
            result.lines += 1
            for err in line.errors:
                result.errors.append(err)
                if on_error:
                    on_error(err)
            for r in line.records:
                result.first = r.created_at if result.first is None else min(result.first, r.created_at)
                result.last = r.created_at if result.last is None else max(result.last, r.created_at)
            if line.records or line.errors:
                batch.append(line)
            if len(batch) >= batch_lines:
                _store_lines(engine, batch, name, result, ingest, on_error)
                batch = []
        if batch:
            _store_lines(engine, batch, name, result, ingest, on_error)
    finally:
        if stream is not sys.stdin:
            stream.close()
    return result


def line_locator(lines: Sequence[FileLine], path: str, ingest: str) -> Callable[[PostRecord, str], Rejection]:
    """How a record of these lines that the database refused is described: its ``FILE:LINE``."""
    where = {(r.source, r.id): line for line in lines for r in line.records}

    def reject(record: PostRecord, reason: str) -> Rejection:
        line = where.get((record.source, record.id))
        location = f"{path}:{line.line_no}" if line is not None else f"{path}: post {record.key!r}"
        body = line.body if line is not None and line.kind != "x_page" else json.dumps(record.to_json(), ensure_ascii=False)
        return Rejection(ingest, line.source() if line is not None else "file", location, reason, body)

    return reject


def _store_lines(engine: sa.Engine, lines: list[FileLine], path: str, result: ImportResult, ingest: str,
                 on_error: Callable[[InputError], None] | None) -> None:
    now = datetime.now(UTC)
    reject = line_locator(lines, path, ingest)
    refused: list[Rejection] = []
    with Session(engine) as session:
        store_rejections(session, [r for line in lines for r in line.rejections(ingest)], now)
        plain: list[PostRecord] = []
        for line in lines:
            raw = raw_for_line(line, path, now) if line.records else None
            if raw is None:
                plain.extend(line.records)
                continue
            stored = store_records(session, line.records, raw=raw, now=now, reject=reject)
            result.stored += stored.new
            result.duplicates += stored.duplicate
            refused.extend(stored.rejected)
        if plain:
            stored = store_records(session, plain, now=now, reject=reject)
            result.stored += stored.new
            result.duplicates += stored.duplicate
            refused.extend(stored.rejected)
        session.commit()
    # Reported once committed: a record the database refused is known only now.
    for rejection in refused:
        err = InputError(rejection.reason, path=path, line=_line_of(rejection.location))
        result.errors.append(err)
        if on_error:
            on_error(err)


def _line_of(location: str) -> int | None:
    number = location.rpartition(":")[2]
    return int(number) if number.isdigit() else None
