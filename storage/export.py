"""Exports of stored posts with their annotations: JSONL (Post records + analysis), CSV and Parquet."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from storage.errors import StorageError
from storage.records import flat_columns

FORMATS = ("jsonl", "csv", "parquet")
# Characters that line readers such as Python's str.splitlines treat as line breaks although JSON allows
# them raw inside strings (json.dumps already escapes the ASCII control characters); escaping them keeps
# "one object per line" true for every reader.
_LINE_BREAKERS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(obj: Any) -> str:
    r"""One JSON object as one line of JSONL: UTF-8 text kept readable, yet safe for any line splitter.

    >>> json_line({"id": "a\u2028b", "text": "楽天"})
    '{"id": "a\\u2028b", "text": "楽天"}'
    >>> line = json_line({"t": "x\u0085y"})
    >>> line.splitlines() == [line]
    True
    """
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKERS)


# The flat fields of the one export model (storage.records.ExportRecord), in its order.
CSV_COLUMNS: tuple[str, ...] = tuple(name for name, _ in flat_columns())


def write_jsonl(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    n = 0
    for record in records:
        stream.write(json_line(record) + "\n")
        n += 1
    return n


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def write_csv(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for record in records:
        writer.writerow({k: _csv_value(record.get(k)) for k in CSV_COLUMNS})
        n += 1
    return n


def write_parquet(records: Iterable[dict[str, Any]], path: Path, batch_rows: int = 10_000) -> int:
    """Parquet needs a real file (it is written in row groups, not streamed to a terminal)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {str: pa.string(), float: pa.float64(), list: pa.list_(pa.string())}
    schema = pa.schema([(name, arrow[kind]) for name, kind in flat_columns()])
    n = 0
    buffer: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(path), schema) as writer:
        for record in records:
            buffer.append({name: record.get(name) for name in schema.names})
            if len(buffer) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                n += len(buffer)
                buffer = []
        if buffer or n == 0:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            n += len(buffer)
    return n


def _unwritable(output: str, exc: OSError) -> StorageError:
    return StorageError(f"{output}: cannot write the export ({exc.strerror or exc}); check that its folder exists "
                        "and is writable")


def export(records: Iterable[dict[str, Any]], fmt: str, output: str | None, stdout: TextIO) -> int:
    """Write records in ``fmt`` to ``output`` (a path) or to ``stdout``; return how many."""
    if fmt not in FORMATS:
        raise StorageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not output or output == "-":
            raise StorageError("parquet is a binary format: give --output PATH.parquet")
        try:
            return write_parquet(records, Path(output))
        except OSError as exc:
            raise _unwritable(output, exc) from None
    if output and output != "-":
        try:
            fh = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _unwritable(output, exc) from None
        with fh:
            return write_jsonl(records, fh) if fmt == "jsonl" else write_csv(records, fh)
    return write_jsonl(records, stdout) if fmt == "jsonl" else write_csv(records, stdout)
