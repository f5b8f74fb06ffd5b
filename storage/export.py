"""Exports of stored posts with their annotations: JSONL (Post records + analysis), CSV, Parquet and a table;
pseudonymised or dehydrated for sharing."""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from storage.errors import StorageError
from storage.records import ANALYSIS_FIELDS, POST_FIELDS

FORMATS = ("table", "jsonl", "csv", "parquet")
# Characters that line readers such as Python's str.splitlines treat as line breaks although JSON allows
# them raw inside strings (json.dumps already escapes the ASCII control characters); escaping them keeps
# "one object per line" true for every reader.
_LINE_BREAKERS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
# str.translate with a mapping runs Python per character (it was two thirds of a JSONL export's CPU); the
# search finds the rare line that needs it. One encoder, built once, writes what json.dumps writes.
_HAS_LINE_BREAKER = re.compile("[\u0085\u2028\u2029]").search
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def json_line(obj: Any) -> str:
    r"""One JSON object as one line of JSONL: UTF-8 text kept readable, yet safe for any line splitter.

    >>> json_line({"id": "a\u2028b", "text": "楽天"})
    '{"id": "a\\u2028b", "text": "楽天"}'
    >>> line = json_line({"t": "x\u0085y"})
    >>> line.splitlines() == [line]
    True
    """
    line: str = _ENCODE(obj)
    return line.translate(_LINE_BREAKERS) if _HAS_LINE_BREAKER(line) else line


# Column lists follow the one Post model (storage.records).
CSV_COLUMNS = (*POST_FIELDS, *ANALYSIS_FIELDS, "mentions", "provenance")
DEHYDRATED_COLUMNS = ("source", "id")
# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); such cells get a
# leading apostrophe, which spreadsheets show as text and strip from the value.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """A CSV cell that no spreadsheet will evaluate.

    >>> neutralise_cell("=HYPERLINK(1)"), neutralise_cell("-1+2"), neutralise_cell("楽天")
    ("'=HYPERLINK(1)", "'-1+2", '楽天')
    """
    return "'" + value if value.startswith(_FORMULA_START) else value


# --- sharing: pseudonyms and dehydration ---------------------------------------------------------------


class Pseudonymizer:
    """Replaces author ids with a keyed hash (HMAC-SHA256) so exports can be shared.

    The same author gets the same pseudonym in every export made with the same key, so researchers can
    still count posts per author, but nobody without the key can recompute it from a known id. Handles are
    dropped; X URLs are rewritten to the handle-free form and other sources' URLs dropped (a Bluesky URL
    names the handle).

    >>> p = Pseudonymizer(b"k")
    >>> r = p({"source": "x", "id": "5", "author_id": "8812", "author_handle": "taro",
    ...        "url": "https://x.com/taro/status/5"})
    >>> r["author_id"], r["author_handle"], r["url"]
    ('a_1910706bda74913f46c5', None, 'https://x.com/i/web/status/5')
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise StorageError("the pseudonym key is empty: set MONITOR_PSEUDONYM_KEY to a long random string")
        self._key = key

    def pseudonym(self, source: str, author_id: str) -> str:
        digest = hmac.new(self._key, f"{source}:{author_id}".encode(), hashlib.sha256).hexdigest()
        return "a_" + digest[:20]

    @staticmethod
    def url(source: Any, post_id: Any, url: str | None) -> str | None:
        """A post's link without the author's handle: X's handle-free form, nothing for other sources."""
        if not url:
            return None
        return f"https://x.com/i/web/status/{post_id}" if source == "x" else None

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        out = dict(record)
        out["author_id"] = self.pseudonym(str(record.get("source")), str(record.get("author_id")))
        out["author_handle"] = None
        if record.get("url"):
            out["url"] = self.url(record.get("source"), record.get("id"), record["url"])
        return out


def dehydrate(record: dict[str, Any]) -> dict[str, Any]:
    """Only what identifies the post on its platform (what platform terms allow sharing)."""
    return {k: record.get(k) for k in DEHYDRATED_COLUMNS}


# --- writers -------------------------------------------------------------------------------------------


def write_jsonl(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    n = 0
    for record in records:
        stream.write(json_line(record) + "\n")
        n += 1
    return n


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value  # neutralise_cell, inlined
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return neutralise_cell(";".join(value))
    if isinstance(value, list | dict):
        return neutralise_cell(_ENCODE(value))
    return value


def write_csv(records: Iterable[dict[str, Any]], stream: TextIO, columns: Sequence[str] | None = None) -> int:
    records = iter(records)
    first = next(records, None)
    if columns is None:
        columns = [c for c in CSV_COLUMNS if first is None or c in first]
    # A plain csv.writer over the cells in column order: the same rows DictWriter wrote, without a dict per
    # row (the export of a million posts spends its time per cell).
    writer = csv.writer(stream)
    writer.writerow(columns)
    writerow = writer.writerow
    n = 0
    for record in itertools.chain([first] if first is not None else [], records):
        # _csv_value per cell, with the common cases (text, empty) inline
        writerow([
            ("'" + v if v.startswith(_FORMULA_START) else v) if v.__class__ is str else "" if v is None else _csv_value(v)
            for v in map(record.get, columns)
        ])
        n += 1
    return n


def write_csv_text(batches: Iterable[tuple[int, str]], stream: TextIO, columns: Sequence[str]) -> int:
    """Rows already written as CSV text (``storage.stream``), after the header: (rows, text) each."""
    csv.writer(stream).writerow(columns)
    n = 0
    for rows, text in batches:
        stream.write(text)
        n += rows
    return n


def _parquet_type(name: str) -> Any:
    import pyarrow as pa

    mention = pa.struct([("kind", pa.string()), ("value", pa.string()), ("surface", pa.string()),
                         ("start", pa.int32()), ("end", pa.int32()), ("by", pa.string())])
    special = {
        "created_at": pa.timestamp("us", tz="UTC"),
        "score": pa.float64(),
        "brokers": pa.list_(pa.string()),
        "tickers": pa.list_(pa.string()),
        "mentions": pa.list_(mention),
        "provenance": pa.struct([("model", pa.string()), ("tokenizer", pa.string()), ("dictionary", pa.string()),
                                 ("analyzed_at", pa.timestamp("us", tz="UTC"))]),
        "utc_offset_min": pa.int32(),
    }
    return special.get(name, pa.string())  # metrics and scores travel as JSON text


def _parquet_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "created_at":
        return datetime.fromisoformat(value).astimezone(UTC)
    if name == "provenance":
        return {**value, "analyzed_at": datetime.fromisoformat(value["analyzed_at"]).astimezone(UTC)}
    if name in ("metrics", "scores"):
        return _ENCODE(value)
    return value


def write_parquet(records: Iterable[dict[str, Any]], path: Path, batch_rows: int = 10_000) -> int:
    """Parquet needs a real file (it is written in row groups, not streamed to a terminal).

    ``created_at`` is a typed ``timestamp[us, tz=UTC]``; the offset the author wrote with is kept in
    ``utc_offset_min`` so local time can be restored.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = iter(records)
    first = next(records, None)
    names = [c for c in CSV_COLUMNS if first is None or c in first]
    if first is None or "created_at" in first:
        names.insert(names.index("created_at") + 1, "utc_offset_min")
    schema = pa.schema([(name, _parquet_type(name)) for name in names])
    n = 0
    buffer: list[dict[str, Any]] = []

    def row(record: dict[str, Any]) -> dict[str, Any]:
        out = {name: _parquet_value(name, record.get(name)) for name in names if name != "utc_offset_min"}
        if "utc_offset_min" in names and record.get("created_at"):
            offset = datetime.fromisoformat(record["created_at"]).utcoffset()
            out["utc_offset_min"] = int(offset.total_seconds() // 60) if offset is not None else 0
        return out

    with pq.ParquetWriter(str(path), schema) as writer:
        for record in itertools.chain([first] if first is not None else [], records):
            buffer.append(row(record))
            if len(buffer) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                n += len(buffer)
                buffer = []
        if buffer or n == 0:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            n += len(buffer)
    return n


def write_table(records: Iterable[dict[str, Any]], stream: TextIO, width: int = 60) -> int:
    """A compact human-readable listing: time, source:id, label, brokers, text (one line each)."""
    n = 0
    for record in records:
        text = " ".join(str(record.get("text") or "").split())
        if len(text) > width:
            text = text[: width - 1] + "…"
        who = ",".join(record.get("brokers") or []) if "brokers" in record else ""
        stream.write(f"{record.get('created_at', '')[:19]:<19}  {record.get('source')}:{record.get('id')}  "
                     f"{record.get('label') or '-':<19}  {who:<12}  {text}\n")
        n += 1
    return n


def _unwritable(output: str, exc: OSError) -> StorageError:
    return StorageError(f"{output}: cannot write the export ({exc.strerror or exc}); check that its folder exists "
                        "and is writable")


def export(records: Iterable[dict[str, Any]], fmt: str, output: str | None, stdout: TextIO,
           csv_text: tuple[Sequence[str], Iterable[tuple[int, str]]] | None = None) -> int:
    """Write records in ``fmt`` to ``output`` (a path) or to ``stdout``; return how many.

    ``csv_text`` (columns, batches as row count and CSV text) is what CSV writes instead of ``records`` where
    the caller wrote the rows itself (:mod:`storage.stream`); ``records`` is then never read for CSV.
    """
    if fmt not in FORMATS:
        raise StorageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not output or output == "-":
            raise StorageError("parquet is a binary format: give --output PATH.parquet")
        try:
            return write_parquet(records, Path(output))
        except OSError as exc:
            raise _unwritable(output, exc) from None
    write: Callable[[TextIO], int]
    if fmt == "csv" and csv_text is not None:
        write = functools.partial(write_csv_text, csv_text[1], columns=csv_text[0])
    else:
        write = functools.partial({"jsonl": write_jsonl, "csv": write_csv, "table": write_table}[fmt], records)
    if output and output != "-":
        try:
            fh = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _unwritable(output, exc) from None
        with fh:
            return write(fh)
    return write(stdout)
