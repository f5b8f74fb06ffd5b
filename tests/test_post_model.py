"""One Post model (storage.records.PostRecord): input validation, the table, and every export format agree."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from sqlmodel import select

from monitor.ingest import store_records
from monitor.records import parse_post
from storage.database import session_scope
from storage.export import CSV_COLUMNS, export
from storage.models import Post
from storage.queries import iter_post_views
from storage.records import ANALYSIS_FIELDS, LIMITS, POST_FIELDS, ExportRecord, PostRecord

LINE = {"source": "x", "id": "1902", "created_at": "2025-03-19T15:02:11+09:00", "author_id": "8812",
        "author_handle": "taro", "text": "楽天証券で勝手に中国株を買われた", "lang": "ja",
        "url": "https://x.com/taro/status/1902", "repost_of": None, "reply_to": "1901", "quote_of": None,
        "metrics": {"like_count": 3}}


def test_contract_fields_and_table_columns_agree():
    assert POST_FIELDS == tuple(LINE)  # DESIGN.md order and names
    columns = Post.__table__.columns
    for name in POST_FIELDS:
        column = columns["post_id" if name == "id" else name]
        if name in LIMITS:
            assert column.type.length == LIMITS[name], name


def test_csv_and_parquet_columns_come_from_the_export_model():
    # every field of the one model, then what an export adds on request (objects travel as JSON text in CSV)
    assert list(CSV_COLUMNS) == [*ExportRecord.model_fields, "mentions", "provenance"]
    assert set(ANALYSIS_FIELDS) == {"label", "score", "scores", "brokers", "tickers", "model"}


@pytest.mark.parametrize(
    ("change", "message"),
    [({"id": None}, "missing required field 'id'"), ({"source": "myspace"}, "unknown source 'myspace'"),
     ({"author_id": ["a"]}, "field 'author_id' must be a string, got list"),
     ({"lang": "x" * 17}, "lang is 17 characters, longer than the 16 limit"),
     ({"created_at": "2025-03-19 15:02"}, "has no UTC offset")],
)
def test_bad_records_fail_with_one_line_naming_the_field(change, message):
    with pytest.raises(Exception, match=message) as info:
        parse_post({**LINE, **change})
    assert "\n" not in str(info.value)


def test_every_export_format_round_trips_the_record(sqlite_url, tmp_path):
    from storage.database import open_store

    engine = open_store(sqlite_url)
    record = parse_post(LINE)
    with session_scope(engine) as s:
        store_records(s, [record])
    with session_scope(engine) as s:
        (view,) = list(iter_post_views(s))
        assert PostRecord.from_row(s.exec(select(Post)).one()) == record
        rows = [view.to_record()]
    out = io.StringIO()
    export(rows, "jsonl", None, out)
    exported = json.loads(out.getvalue())
    assert {k: exported[k] for k in POST_FIELDS} == LINE
    assert parse_post(exported) == record  # an export is valid input again
    out = io.StringIO()
    export(rows, "csv", None, out)
    assert next(csv.DictReader(io.StringIO(out.getvalue())))["created_at"] == LINE["created_at"]
    export(rows, "parquet", str(tmp_path / "p.parquet"), out)
    table = pq.read_table(tmp_path / "p.parquet")
    # typed created_at plus the author's offset; mentions and provenance only where the export asked for them
    expected = [c for c in CSV_COLUMNS if c not in ("mentions", "provenance")]
    expected.insert(expected.index("created_at") + 1, "utc_offset_min")
    assert table.column_names == expected
    row = table.to_pylist()[0]
    assert row["text"] == LINE["text"] and row["created_at"].isoformat() == "2025-03-19T06:02:11+00:00"


def test_export_record_is_the_models_json_dump(sqlite_url):
    """PostView.to_record builds the record directly (speed); it must stay what the model dumps."""
    from datetime import UTC, datetime

    from storage.database import open_store
    from storage.models import Annotation
    from storage.queries import PostView

    engine = open_store(sqlite_url)
    lines = [LINE, {**LINE, "id": "1903", "created_at": "2025-03-19T01:00:00-04:30", "author_handle": None,
                    "metrics": {"nested": {"a": [1, 2.5, None]}, "views": 0}, "text": "=cmd|' /C calc'!A0"},
             {**LINE, "id": "1904", "metrics": None, "url": None, "reply_to": None}]
    with session_scope(engine) as s:
        store_records(s, [parse_post(line) for line in lines])
    with session_scope(engine) as s:
        posts = s.exec(select(Post).order_by(Post.id)).all()
        annotation = Annotation(post_pk=posts[0].id, label="victim_report", score=0.912345678,
                                scores={"victim_report": 0.912345678, "irrelevant": 0.0876543}, model="m@1",
                                tokenizer="t", dictionary="d", analyzed_at=datetime(2025, 3, 20, tzinfo=UTC))
        for post, ann, brokers in [(posts[0], annotation, ["楽天証券"]), (posts[1], None, []), (posts[2], None, [])]:
            analysis: dict = {"brokers": brokers, "tickers": []}
            if ann is not None:
                analysis.update(label=ann.label, score=round(ann.score, 4), model=ann.model,
                                scores={k: round(v, 4) for k, v in ann.scores.items()})
            pydantic = ExportRecord.model_construct(**dict(PostRecord.from_row(post)), **analysis).model_dump(mode="json")
            assert PostView(post, ann, brokers, []).to_record() == pydantic
            assert list(PostView(post, ann, brokers, []).to_record()) == list(pydantic)
    engine.dispose()
