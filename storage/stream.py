"""Exports streamed from one SQL statement: what `export` (and `query --order oldest`) write.

Every post that passes a :class:`~storage.queries.PostFilter` is read with its newest annotation by one
SELECT of plain columns, in storage order, ``yield_per`` rows at a time: through a server-side cursor on
PostgreSQL (``stream_results``), by ``fetchmany`` on SQLite. Each post's mentions come folded into one JSON
column of the same statement (an index probe per post inside the database, as a plain SQL dump of the join
does, rather than a query per batch from Python). No ORM objects are built: a CSV export writes each row as
one line of text (:func:`csv_text_batches`), the other formats make a record dict per row through
per-column code (:meth:`RowShape.records`), and a batch is written at once. The rows are those
:meth:`storage.queries.PostView.to_record` gives, transformed as :class:`storage.export.Pseudonymizer` and
:func:`storage.export.dehydrate` transform them (tests/test_export_stream.py holds the two paths equal,
byte for byte).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from json.encoder import encode_basestring  # C: the string form json.dumps(ensure_ascii=False) writes
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from storage.export import CSV_COLUMNS, DEHYDRATED_COLUMNS, Pseudonymizer
from storage.models import Annotation, Mention, Post
from storage.queries import PostFilter, filtered_select, json_value

BATCH_ROWS = 5000  # rows per fetch and per write: big enough to amortise a call, small enough to stream

# Raw stored text of the JSON columns (PostgreSQL's driver still hands back parsed values unless the
# statement casts them): most rows hold "{}" or one of a few score dicts, and re-encoding text seen before is
# a dict lookup. Times likewise: SQLite's naive UTC text is parsed once here rather than by the column type
# and again.
_AS_TEXT = sa.String()


def _row_columns(dialect: str, *, json_text: bool = False) -> tuple[Any, ...]:
    """What each exported row reads: the post, its newest annotation and its mentions folded into one JSON
    column; with ``json_text`` the JSON columns arrive as their stored text on PostgreSQL as well."""
    def raw(column: Any) -> Any:
        return sa.cast(column, sa.Text) if json_text and dialect == "postgresql" else sa.type_coerce(column, _AS_TEXT)

    return (
        Post.source, Post.post_id, sa.type_coerce(Post.created_at, _AS_TEXT), Post.utc_offset_min, Post.author_id,
        Post.author_handle, Post.text, Post.lang, Post.url, Post.repost_of, Post.reply_to, Post.quote_of,
        raw(Post.metrics), Annotation.id, Annotation.label, Annotation.score, raw(Annotation.scores),
        Annotation.model, Annotation.tokenizer, Annotation.dictionary, sa.type_coerce(Annotation.analyzed_at, _AS_TEXT),
        raw(_mentions_column(dialect)),
    )


_FORMULA_START = frozenset("=+-@\t\r")  # first characters storage.export.neutralise_cell neutralises


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """No cyclic garbage collection while an export runs.

    An export allocates a list or dict per row and frees it once written, creating no reference cycles, yet
    every few hundred allocations wake the cycle collector, and its full passes walk every object the
    imports made (SQLAlchemy, pydantic): a fifth of a 100k-post CSV export's CPU. Plain reference counting
    still frees every row; collection resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _mentions_column(dialect: str) -> Any:
    """Each post's mentions (of its newest annotation) as one JSON array of
    [kind, value, surface, start, end, by, id] arrays, in no particular order (sorted by :func:`_found`)."""
    m = Mention.__table__.c  # type: ignore[attr-defined]
    fields = (m.kind, m.value, m.surface, m.start, m.end, m.by, m.id)
    if dialect == "postgresql":
        folded = sa.func.json_agg(sa.func.json_build_array(*fields))  # NULL where there is none
    else:
        folded = sa.func.json_group_array(sa.func.json_array(*fields))  # "[]" where there is none
    return sa.select(folded).where(m.annotation_id == Annotation.id).scalar_subquery()


def post_batches(session: Session, flt: PostFilter, *, limit: int | None = None, dehydrated: bool = False,
                 batch_rows: int = BATCH_ROWS) -> Iterator[Sequence[Any]]:
    """The posts matching ``flt`` in storage order, ``batch_rows`` at a time, from one streamed statement:
    rows of :func:`_row_columns` (``source`` and ``post_id`` only when dehydrated)."""
    if dehydrated:
        columns: tuple[Any, ...] = (Post.source, Post.post_id)
    else:
        columns = _row_columns(session.get_bind().dialect.name)
    stmt = filtered_select(session, flt, columns, annotated=not dehydrated).order_by(Post.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return _streamed(session, stmt, batch_rows)


def _streamed(session: Session, stmt: Any, batch_rows: int) -> Iterator[Sequence[Any]]:
    """A statement's rows ``batch_rows`` at a time through a server-side cursor where the database has one."""
    result = session.connection().execution_options(stream_results=True, yield_per=batch_rows).execute(stmt)
    try:
        yield from result.partitions()
    finally:
        result.close()


def _by_position(m: list[Any]) -> tuple[Any, Any]:
    return m[3], m[6]


# One JSON value from a position: the database's own text, never padded, needs none of json.loads's checks.
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _found(raw: Any) -> list[list[Any]]:
    """The mentions column as [kind, value, surface, start, end, by, id] lists in text order (by start, then
    as stored), the order storage.queries reads them in."""
    if not raw or raw == "[]":
        return []
    found: list[list[Any]] = _SCAN(raw, 0)[0] if raw.__class__ is str else raw
    if len(found) > 1:
        found.sort(key=_by_position)
    return found


# --- per-column code -----------------------------------------------------------------------------------


def _naive_utc(raw: Any) -> datetime:
    """A stored time as naive UTC: SQLite's text (stored naive UTC), or the aware value PostgreSQL's driver gives."""
    if raw.__class__ is str:
        return datetime.fromisoformat(raw)
    return raw.astimezone(UTC).replace(tzinfo=None) if raw.tzinfo is not None else raw  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=64)
def _shift(minutes: int) -> tuple[timedelta, str]:
    """The offset as a timedelta and as isoformat() writes it ("+09:00")."""
    tz = timezone(timedelta(minutes=minutes))
    return timedelta(minutes=minutes), datetime(2000, 1, 1, tzinfo=tz).isoformat()[19:]


def _local_iso(raw: Any, minutes: int) -> str:
    """``created_at`` in the author's offset, as ``created_at.astimezone(offset).isoformat()`` writes it
    (shifting a naive time and appending the offset costs a third of astimezone)."""
    delta, suffix = _shift(minutes)
    return (_naive_utc(raw) + delta).isoformat() + suffix


def _utc_iso(raw: Any) -> str:
    return _naive_utc(raw).isoformat() + "+00:00"


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # what json.dumps(value, ensure_ascii=False) writes


def _loaded(raw: Any) -> Any:
    return json.loads(raw) if raw.__class__ is str else raw


def _metrics_text(raw: Any) -> str:
    return _ENCODE(json_value(_loaded(raw) or {}))


def _metrics_json(raw: Any) -> Any:
    """The metrics value of a record, from the stored text (or the driver's parsed value)."""
    return json_value(_loaded(raw) or {})


def _scores_json(raw: Any) -> dict[str, float]:
    return {k: round(v, 4) for k, v in (_loaded(raw) or {}).items()}


def _scores_text(raw: str) -> str:
    return _ENCODE(_scores_json(raw))


def _provenance_text(model: str, tokenizer: str | None, dictionary: str | None, analyzed_at: Any) -> str:
    return (f'{{"model": {encode_basestring(model)}, "tokenizer": '
            f'{encode_basestring(tokenizer) if tokenizer else "null"}, "dictionary": '
            f'{encode_basestring(dictionary) if dictionary else "null"}, "analyzed_at": "{_utc_iso(analyzed_at)}"}}')


def _mention_text(m: list[Any]) -> str:
    kind, value, surface, start, end, by, _id = m
    return (f'{{"kind": {encode_basestring(kind)}, "value": {encode_basestring(value)}, "surface": '
            f'{encode_basestring(surface)}, "start": {start}, "end": {end}, "by": '
            f'{"null" if by is None else encode_basestring(by)}}}')


def _entities(found: list[list[Any]]) -> tuple[list[str], list[str]]:
    """Broker and ticker values, deduplicated, in order of appearance (storage.queries.mentions_by_annotation)."""
    brokers: list[str] = []
    tickers: list[str] = []
    for kind, value, *_ in found:
        values = brokers if kind == "broker" else tickers if kind == "ticker" else None
        if values is not None and value not in values:
            values.append(value)
    return brokers, tickers


@dataclass(frozen=True)
class RowShape:
    """What each exported row goes through: pseudonyms (None: ids as stored), dehydration, and whether the
    record carries ``mentions`` and ``provenance`` (every export but the table)."""

    pseudonymizer: Pseudonymizer | None = None
    dehydrated: bool = False
    with_mentions: bool = True

    def csv_columns(self) -> tuple[str, ...]:
        return DEHYDRATED_COLUMNS if self.dehydrated else CSV_COLUMNS

    def sharing(self) -> Callable[[str, str, str, str | None], tuple[str, None, str | None]] | None:
        """None for ids as stored; else source, post id, author id, url -> what a shared export shows in
        author_id, author_handle and url: a pseudonym (cached: authors repeat), no handle, and
        Pseudonymizer's handle-free link (an empty url stays as stored)."""
        if self.pseudonymizer is None:
            return None
        cache: dict[tuple[str, str], str] = {}
        pseudonym, link = self.pseudonymizer.pseudonym, Pseudonymizer.url

        def share(source: str, post_id: str, author_id: str, url: str | None) -> tuple[str, None, str | None]:
            key = (source, author_id)
            found = cache.get(key)
            if found is None:
                found = cache[key] = pseudonym(str(source), str(author_id))
            return found, None, link(source, post_id, url) if url else url

        return share

    def records(self) -> Callable[[Sequence[Any]], list[dict[str, Any]]]:
        """A function from a batch to its records (what ``PostView.to_record`` and the transforms give)."""
        if self.dehydrated:
            return lambda batch: [{"source": source, "id": post_id} for source, post_id in batch]
        share = self.sharing()
        with_mentions = self.with_mentions

        def records(batch: Sequence[Any]) -> list[dict[str, Any]]:
            out = []
            for (source, post_id, created_at, offset, author_id, handle, text, lang, url, repost_of, reply_to,
                 quote_of, metrics, ann_id, label, score, scores, model, tokenizer, dictionary,
                 analyzed_at, folded) in batch:
                if share is not None:
                    author_id, handle, url = share(source, post_id, author_id, url)
                found = _found(folded) if ann_id is not None else []
                brokers, tickers = _entities(found)
                record: dict[str, Any] = {
                    "source": source, "id": post_id,
                    "created_at": _local_iso(created_at, offset),
                    "author_id": author_id, "author_handle": handle, "text": text, "lang": lang, "url": url,
                    "repost_of": repost_of, "reply_to": reply_to, "quote_of": quote_of,
                    "metrics": _metrics_json(metrics), "label": None, "score": None, "scores": None,
                    "brokers": brokers, "tickers": tickers, "model": None,
                }
                if ann_id is not None:
                    record.update(label=label, score=round(score, 4), model=model, scores=_scores_json(scores))
                if with_mentions:
                    record["mentions"] = [dict(zip(_MENTION_KEYS, m[:6], strict=True)) for m in found]
                    record["provenance"] = None if ann_id is None else {
                        "model": model, "tokenizer": tokenizer or None, "dictionary": dictionary or None,
                        "analyzed_at": _utc_iso(analyzed_at)}
                out.append(record)
            return out

        return records


_MENTION_KEYS = ("kind", "value", "surface", "start", "end", "by")


def _cell(value: Any) -> Any:
    """A text cell as storage.export.write_csv writes it: formulas neutralised (None: csv writes "")."""
    return "'" + value if value and value.__class__ is str and value[0] in _FORMULA_START else value



# --- CSV text --------------------------------------------------------------------------------------------
#
# Each row is written as one line of CSV text here, as the csv module would write its cells: the csv module
# examines every character of every cell, and most cells need no quoting, which a few substring searches
# per row establish. On SQLite the rows are the DBAPI cursor's own tuples (SQLAlchemy's per-row work
# skipped: no column of _row_columns needs a column type's conversion there); on PostgreSQL they come from
# a server-side cursor with the JSON columns cast to their stored text, times as the driver's datetimes.


def _csv_quote(text: str) -> str:
    """A cell as the csv module writes it (QUOTE_MINIMAL, excel dialect)."""
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _text_cell(value: Any) -> str:
    """A text cell neutralised (storage.export.neutralise_cell) and quoted; NULL is the empty cell."""
    return "" if value is None else _csv_quote(_cell(value))


@functools.lru_cache(maxsize=1024)
def _short_cell(value: Any) -> str:
    """_text_cell of a column with few values (label, model)."""
    return _text_cell(value)


@functools.lru_cache(maxsize=4096)
def _metrics_cell(raw: str) -> str:
    return _csv_quote(_metrics_text(raw))


@functools.lru_cache(maxsize=4096)
def _scores_cell(raw: str) -> str:
    return _csv_quote(_scores_text(raw))


@functools.lru_cache(maxsize=1024)
def _provenance_head(model: str, tokenizer: str | None, dictionary: str | None) -> str:
    """The quoted provenance cell up to its time (the cell always holds a "): time + '""}"' completes it."""
    text = _provenance_text(model, tokenizer, dictionary, "2000-01-01 00:00:00")
    head = text[: text.rindex('"analyzed_at": "') + len('"analyzed_at": "')]
    return '"' + head.replace('"', '""')


@functools.lru_cache(maxsize=16384)
def _local_hour(hour: str, minutes: int) -> tuple[str, str]:
    """A stored UTC hour ("2025-03-19 06") shifted by whole hours as isoformat() writes it, and the offset."""
    delta, suffix = _shift(minutes)
    return (datetime.fromisoformat(hour + ":00:00") + delta).isoformat()[:13], suffix


def _local_iso_text(raw: Any, minutes: Any) -> str:
    """:func:`_local_iso` of SQLite's stored text ("2025-03-19 06:07:08.123456") in an offset of whole hours
    (nearly every offset) by string work: minutes, seconds and fraction stay, and the shifted hour is cached
    (a third of the time per post); other values go through _local_iso."""
    if raw.__class__ is str and len(raw) == 26 and raw[19] == "." and minutes.__class__ is int and not minutes % 60:
        hour, suffix = _local_hour(raw[:13], minutes)
        return hour + raw[13:19] + ("" if raw[20:] == "000000" else raw[19:]) + suffix
    return _local_iso(raw, minutes)


@functools.lru_cache(maxsize=4096)
def _utc_iso_cached(raw: Any) -> str:
    return _utc_iso(raw)


def csv_text_batches(session: Session, flt: PostFilter, shape: RowShape, *, limit: int | None = None,
                     batch_rows: int = BATCH_ROWS) -> tuple[Iterator[Sequence[Any]], Callable[[Sequence[Any]], str]]:
    """The matching posts' rows in storage order, ``batch_rows`` at a time as the DBAPI cursor returns them
    (through a server-side cursor on PostgreSQL, the JSON columns as their stored text), and a function from
    a batch to its CSV text (what ``storage.export.write_csv`` writes for those rows, header excepted)."""
    dialect = session.get_bind().dialect.name
    if shape.dehydrated:
        columns: tuple[Any, ...] = (Post.source, Post.post_id)
    else:
        columns = _row_columns(dialect, json_text=True)
    stmt = filtered_select(session, flt, columns, annotated=not shape.dehydrated).order_by(Post.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return _raw_batches(session, stmt, batch_rows, server_side=dialect == "postgresql"), _csv_text(shape)


def _raw_batches(session: Session, stmt: Any, batch_rows: int, *, server_side: bool) -> Iterator[Sequence[Any]]:
    """The statement's rows, ``batch_rows`` at a time. On SQLite the DBAPI cursor's own tuples: executed
    without stream_results the result buffers no row, so every row is the cursor's. With ``server_side``
    (PostgreSQL) from a named cursor through the result, which has already read ahead of the cursor."""
    if server_side:
        yield from _streamed(session, stmt, batch_rows)
        return
    result = session.connection().execute(stmt)
    try:
        cursor = result.cursor
        while batch := cursor.fetchmany(batch_rows):
            yield batch
    finally:
        result.close()


@functools.lru_cache(maxsize=4096)
def _annotation_cells(label: str, scores: str, model: str, tokenizer: str | None, dictionary: str | None,
                      analyzed_at: Any) -> tuple[str, str, str, str]:
    """The cells of an annotation that repeat from post to post (one model, one analysis cycle): label,
    scores, model, and the whole provenance cell with the line's end."""
    return (_short_cell(label), _scores_cell(scores), _short_cell(model),
            f'{_provenance_head(model, tokenizer, dictionary)}{_utc_iso_cached(analyzed_at)}""}}"\r\n')


def _csv_text(shape: RowShape) -> Callable[[Sequence[Any]], str]:
    if shape.dehydrated:
        return lambda batch: "".join([f"{_text_cell(source)},{_text_cell(post_id)}\r\n" for source, post_id in batch])
    share = shape.sharing()
    metrics_cell, annotation_cells = _metrics_cell, _annotation_cells
    text_cell, f, local_iso = _text_cell, _FORMULA_START, _local_iso_text

    def text(batch: Sequence[Any]) -> str:
        # The hot loop: the post's ten text cells joined, then searched once for what would make the csv
        # module quote a cell (" CR LF, or a comma beyond the nine that separate them) or a cell start a
        # spreadsheet runs (a formula character at the start or after a separating comma); a row with any
        # is written cell by cell. A two-character search costs about ten one-character ones in non-ASCII
        # text, so a pair is sought only where its formula character occurs at all (the time, full of
        # "-" and "+", is not in the searched text: it starts with a digit and holds no comma).
        lines: list[str] = []
        append = lines.append
        for (source, post_id, created_at, offset, author_id, handle, text, lang, url, repost_of, reply_to,
             quote_of, metrics, ann_id, label, score, scores, model, tokenizer, dictionary,
             analyzed_at, folded) in batch:
            if share is not None:
                author_id, handle, url = share(source, post_id, author_id, url)
            cells: tuple[str, ...] = (source, post_id, author_id, handle or "", text or "", lang or "", url or "",
                                      repost_of or "", reply_to or "", quote_of or "")
            joined = ",".join(cells)
            if ('"' in joined or "\n" in joined or "\r" in joined or "\t" in joined or joined.count(",") != 9
                    or joined[:1] in f or ("-" in joined and ",-" in joined) or ("+" in joined and ",+" in joined)
                    or ("=" in joined and ",=" in joined) or ("@" in joined and ",@" in joined)):
                quoted = list(map(text_cell, cells))
                quoted.insert(2, local_iso(created_at, offset))
                line = ",".join(quoted)
            else:  # the time goes in after the source and id cells
                cut = len(source) + len(post_id) + 2
                line = f"{joined[:cut]}{local_iso(created_at, offset)},{joined[cut:]}"
            metrics = "{}" if metrics == "{}" else metrics_cell(metrics)
            if ann_id is None:
                append(f"{line},{metrics},,,,,,,,\r\n")
                continue
            label_cell, scores_cell, model_cell, provenance = annotation_cells(label, scores, model, tokenizer,
                                                                               dictionary, analyzed_at)
            if folded and folded != "[]":
                found = _found(folded)
                brokers, tickers = _entities(found)
                mentions = '"' + ("[" + ", ".join(map(_mention_text, found)) + "]").replace('"', '""') + '"'
                brokers_cell = text_cell(";".join(brokers)) if brokers else ""
                tickers_cell = text_cell(";".join(tickers)) if tickers else ""
                append(f"{line},{metrics},{label_cell},{round(score, 4)},{scores_cell},{brokers_cell},{tickers_cell},"
                       f"{model_cell},{mentions},{provenance}")
            else:
                append(f"{line},{metrics},{label_cell},{round(score, 4)},{scores_cell},,,{model_cell},,{provenance}")
        return "".join(lines)

    return text
