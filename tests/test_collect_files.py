"""File import as a collector: Post JSONL and twarc2 JSONL (real pages with partial errors and a broken
line), batches committed with the file cursor so an interrupted import resumes after the last batch."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import sqlalchemy as sa
from conftest import shared_path

from monitor.collectors.base import read_cursor
from monitor.collectors.files import FileCollector
from storage.models import Post, RawPage


def post_lines(n: int) -> list[str]:
    return [json.dumps({"source": "x", "id": str(1000 + i), "created_at": f"2025-03-19T15:{i % 60:02d}:11+09:00",
                        "author_id": str(i % 9), "text": f"楽天証券で勝手に中国株を買われた ({i})"}, ensure_ascii=False)
            for i in range(n)]


def count(engine: sa.Engine, table=Post) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_post_jsonl_with_bad_lines_and_resume(engine: sa.Engine, tmp_path: Path) -> None:
    lines = post_lines(30)
    lines[4] = '{"source": "x", "id": "broken", "created_at": "2025-03-19T15:02:11+09:00", "author_id": "1", "te'
    lines[9] = json.dumps({"source": "x", "id": "no-text", "created_at": "2025-03-19T15:02:11+09:00", "author_id": "1"})
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stop = threading.Event()
    collector = FileCollector(path, batch_lines=10)
    stop.set()  # shutdown requested: the first batch still commits, then the import stops
    first = collector.collect(engine, stop)
    assert first.stopped and count(engine) == 8
    assert read_cursor(engine, "file", collector._cursor_name()).value == "10"
    rest = FileCollector(path, batch_lines=10).collect(engine, threading.Event())
    assert rest.new == 20 and rest.duplicate == 0 and "resumed after line 10" in rest.notes[0]
    assert count(engine) == 28
    again = FileCollector(path, batch_lines=10, resume=False).collect(engine, threading.Event())
    assert again.new == 0 and again.duplicate == 28 and again.skipped == 2


def test_real_twarc2_pages_partial_errors_and_a_broken_line(engine: sa.Engine, caplog) -> None:
    stream = shared_path("real", "x", "twarc2_jsonl", "streaming_output_with_error.jsonl")
    kpop = shared_path("real", "x", "twarc2_jsonl", "kpop.jsonl")
    first = FileCollector(stream).collect(engine, threading.Event())
    assert first.new == 7 and first.skipped == 1
    assert f"{stream}:8: not valid JSON" in caplog.text
    second = FileCollector(kpop).collect(engine, threading.Event())
    page = json.loads(kpop.read_text(encoding="utf-8"))
    assert page.get("errors") and second.new == len(page["data"])
    assert count(engine, RawPage) == 8  # one raw row per X page, with the twarc URL as provenance
    with engine.connect() as conn:
        endpoints = conn.execute(sa.select(RawPage.endpoint)).scalars().all()
    assert any(e.startswith("https://api.twitter.com/2/tweets/search/recent") for e in endpoints)
