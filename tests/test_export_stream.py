"""The streamed export (storage.stream: one SQL statement, cells made per column) writes exactly what the
keyed-paged views wrote before it (PostView.to_record, then the pseudonymiser or dehydration, then
storage.export's writers), byte for byte, for every format and sharing mode, on a store made to trip it:
formula-like text in every text column, NULLs, posts without an annotation or with two, several brokers
and tickers per post (one named twice), non-ASCII metrics and scores, empty provenance fields, odd offsets."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from monitor.cli import main
from monitor.ingest import store_records
from monitor.records import parse_post
from storage.database import open_store, session_scope
from storage.export import Pseudonymizer, dehydrate, export
from storage.models import Annotation, Mention, Post
from storage.queries import PostFilter, iter_post_views

KEY = "stream-test-key"
T0 = datetime(2025, 3, 19, 6, 0, 0, 123456, tzinfo=UTC)

# (id, source, offset, author, handle, text, lang, url, metrics)
POSTS = [
    ("1", "x", "+09:00", "=cmd|' /C calc'!A0", "@handle", "楽天証券で勝手に中国株を買われた 00700 と 09988", "ja",
     "https://x.com/h/status/1", {"likes": 3, "名前": "値", "nested": {"a": [1, 2.5, None]}}),
    ("2", "x", "-05:00", "u2", None, "=HYPERLINK(\"http://evil\") SBI証券", None, None, {}),
    ("3", "bluesky", "+05:45", "+u3", "-h3", "\tタブで始まる 楽天証券", "ja", "https://bsky.app/profile/h3/post/3", {}),
    ("4", "reddit", "+00:00", "u4", "h4", "\r改行で始まる、注釈なし", "ja", "", {"ups": -1}),
    ("-5", "x", "+09:00", "@u5", "h5", "-1+2 マネックス証券 と 楽天証券 と 楽天証券", "ja", "https://x.com/h5/status/-5",
     {"quote": "\"引用\" \u2028 line"}),
    ("6", "x", "+09:00", "u6", "h6", "二つ目の注釈が新しい 松井証券", "ja", None, {}),
    ("7", "reddit", "-03:30", "u,7", "h7", "カンマ,だけ 楽天証券", "ja", "https://reddit.com/r/a,b/7", {}),  # whole second
    ("8", "x", "+09:00", "u8", "h8", "改行\nと \"引用\", =式", "ja", None, {}),
]
# post id -> [(label, score, scores, model, tokenizer, dictionary, [(kind, value, start, end, by)])], oldest first
ANNOTATIONS = {
    "1": [("victim_report", 0.912345678, {"victim_report": 0.912345678, "irrelevant": 0.0876543}, "clf@1", "char-ngrams",
           "sudachidict_core@1", [("broker", "楽天証券", 0, 4, None), ("ticker", "0700.HK", 17, 22, "code"),
                                  ("ticker", "9988.HK", 25, 30, "code")])],
    "2": [("incident_discussion", 0.5, {"incident_discussion": 0.5}, "clf@1", "", "",
           [("broker", "SBI証券", 28, 33, None), ("ticker", "EVIL", 10, 18, "name")])],  # a surface with a quote
    "3": [("=label", 1.0, {}, "@model", "subword", "", [("broker", "楽天証券", 8, 12, None), ("ticker", "TAB", 0, 3, None)])],
    "-5": [("victim_report", 0.7, {"victim_report": 0.7}, "clf@1", "char-ngrams", "d",
            [("broker", "楽天証券", 15, 19, None), ("broker", "マネックス証券", 5, 12, None),
             ("broker", "楽天証券", 22, 26, None)])],
    "6": [("irrelevant", 0.1, {"irrelevant": 0.1}, "clf@1", "char-ngrams", "d", [("broker", "松井証券", 11, 15, None)]),
          ("victim_report", 0.8, {"victim_report": 0.8}, "clf@2", "char-ngrams", "d", [("broker", "松井証券", 11, 15, None)])],
    "7": [("irrelevant", 0.25, {"irrelevant": 0.25}, "clf,1", "char-ngrams", "d", [("broker", "楽天証券", 7, 11, None)])],
}


@pytest.fixture
def store_url(db_url):
    engine = open_store(db_url)
    records = []
    for i, (pid, source, offset, author, handle, text, lang, url, metrics) in enumerate(POSTS):
        created = (T0 + timedelta(minutes=7 * i)).replace(microsecond=0 if pid == "7" else T0.microsecond).astimezone(datetime.fromisoformat(f"2025-01-01T00:00:00{offset}").tzinfo)
        records.append(parse_post({"source": source, "id": pid, "created_at": created.isoformat(), "author_id": author,
                                   "author_handle": handle, "text": text, "lang": lang, "url": url, "metrics": metrics}))
    with session_scope(engine) as session:
        store_records(session, records)
    with session_scope(engine) as session:
        for pid, annotations in ANNOTATIONS.items():
            post = session.exec(select(Post).where(Post.post_id == pid)).one()
            for label, score, scores, model, tokenizer, dictionary, mentions in annotations:
                ann = Annotation(post_pk=post.id, label=label, score=score, scores=scores, model=model,
                                 tokenizer=tokenizer, dictionary=dictionary, analyzed_at=T0 + timedelta(seconds=1))
                session.add(ann)
                session.flush()
                for kind, value, start, end, by in mentions:
                    session.add(Mention(annotation_id=ann.id, post_pk=post.id, kind=kind, value=value,
                                        surface=post.text[start:end], start=start, end=end, by=by))
    engine.dispose()
    return db_url


def previous_export(url: str, fmt: str, transform, flt: PostFilter, tmp_path, limit=None) -> bytes:
    """What `export` wrote before it streamed: keyset-paged views, to_record, transform, the writers."""
    engine = open_store(url, migrate=False)
    target = tmp_path / f"previous.{fmt}"
    try:
        with Session(engine) as session:
            views = iter_post_views(session, flt, order="oldest", limit=limit, batch=2,
                                    with_mentions=transform is not dehydrate and fmt != "table")
            records = (v.to_record() for v in views)
            if transform is not None:
                records = (transform(r) for r in records)
            export(records, fmt, str(target), io.StringIO())
    finally:
        engine.dispose()
    return target.read_bytes()


def streamed_export(url: str, fmt: str, tmp_path, *flags: str) -> bytes:
    target = tmp_path / f"streamed.{fmt}"
    assert main(["export", "--db", url, "--format", fmt, "--output", str(target), *flags]) == 0
    return target.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "table"])
@pytest.mark.parametrize("sharing", ["pseudonymised", "raw", "dehydrated"])
def test_streamed_export_equals_the_previous_rows(store_url, tmp_path, monkeypatch, fmt, sharing):
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", KEY)
    flags = {"pseudonymised": (), "raw": ("--raw-authors",), "dehydrated": ("--dehydrated",)}[sharing]
    transform = {"pseudonymised": Pseudonymizer(KEY.encode()), "raw": None, "dehydrated": dehydrate}[sharing]
    if fmt == "table" and sharing == "pseudonymised":
        transform = None  # the table shows no authors, so it is never pseudonymised
    new = streamed_export(store_url, fmt, tmp_path, *flags)
    old = previous_export(store_url, fmt, transform, PostFilter(), tmp_path)
    assert new == old
    assert new.count(b"\n") >= len(POSTS)


@pytest.mark.parametrize(("flags", "flt"), [
    (("--broker", "楽天証券"), PostFilter(broker="楽天証券")),
    (("--label", "victim_report"), PostFilter(label="victim_report")),
    (("--ticker", "9988.HK", "--source", "x"), PostFilter(ticker="9988.HK", source="x")),
    (("-q", "証券", "--lang", "ja"), PostFilter(q="証券", lang="ja")),
    (("--since", (T0 + timedelta(minutes=10)).isoformat()), PostFilter(since=T0 + timedelta(minutes=10))),
])
def test_streamed_export_applies_the_filters_as_before(store_url, tmp_path, flags, flt):
    new = streamed_export(store_url, "csv", tmp_path, "--raw-authors", *flags)
    assert new == previous_export(store_url, "csv", None, flt, tmp_path)
    assert new.count(b"\n") > 1  # each filter keeps some posts
    limited = streamed_export(store_url, "jsonl", tmp_path, "--raw-authors", "--limit", "1", *flags)
    assert limited == previous_export(store_url, "jsonl", None, flt, tmp_path, limit=1)


def test_streamed_parquet_equals_the_previous_rows(store_url, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", KEY)
    streamed_export(store_url, "parquet", tmp_path)
    previous_export(store_url, "parquet", Pseudonymizer(KEY.encode()), PostFilter(), tmp_path)
    new, old = pq.read_table(tmp_path / "streamed.parquet"), pq.read_table(tmp_path / "previous.parquet")
    assert new.schema == old.schema and new.to_pylist() == old.to_pylist()
    assert new.num_rows == len(POSTS)


def test_streamed_export_names_each_broker_once_and_keeps_the_newest_annotation(store_url, tmp_path):
    import csv

    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(streamed_export(store_url, "csv", tmp_path,
                                                                            "--raw-authors").decode()))}
    assert rows["'-5"]["brokers"] == "マネックス証券;楽天証券"  # spans 5, 15, 22: in text order, once each
    assert rows["6"]["label"] == "victim_report" and rows["6"]["model"] == "clf@2"
    assert rows["4"]["label"] == rows["4"]["mentions"] == rows["4"]["provenance"] == ""
    assert rows["1"]["author_id"] == "'=cmd|' /C calc'!A0" and rows["1"]["tickers"] == "0700.HK;9988.HK"


@pytest.mark.parametrize("rows", ["records", "csv text"])
def test_rows_come_in_batches_and_through_a_server_side_cursor_on_postgresql(store_url, rows):
    """The issue's "export streams rows": a named (server-side) cursor on PostgreSQL, batch_rows at a time,
    for the records of JSONL, Parquet and the table and for CSV text alike."""
    import sqlalchemy as sa

    from storage.stream import RowShape, csv_text_batches, post_batches

    engine = open_store(store_url, migrate=False)
    cursors = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cursor, *_: cursors.append(cursor))
    try:
        with Session(engine) as session:
            if rows == "records":
                batches = post_batches(session, PostFilter(), batch_rows=4)
            else:
                batches = csv_text_batches(session, PostFilter(), RowShape(), batch_rows=4)[0]
            sizes = [len(batch) for batch in batches]
    finally:
        engine.dispose()
    assert sizes == [4, len(POSTS) - 4]
    if engine.dialect.name == "postgresql":
        assert getattr(cursors[-1], "name", None), "the export's statement ran on a client-side cursor"


def test_local_time_from_stored_text_equals_astimezone():
    """The SQLite CSV path shifts stored text by string work for whole-hour offsets; it must write what
    datetime.astimezone(offset).isoformat() writes, fraction or none, across days, months and years."""
    import random

    from storage.stream import _local_iso, _local_iso_text

    rng = random.Random(5)
    for _ in range(2000):
        moment = datetime(2000, 1, 1) + timedelta(seconds=rng.randrange(10**9),
                                                  microseconds=rng.choice([0, rng.randrange(10**6)]))
        stored = moment.isoformat(" ", "microseconds")
        minutes = rng.choice([0, 60, 540, -300, -720, 840, 330, -570, 1380, -1380])
        expected = moment.replace(tzinfo=UTC).astimezone(datetime.fromisoformat(
            "2000-01-01T00:00:00" + _local_iso("2000-01-01 00:00:00", minutes)[-6:]).tzinfo).isoformat()
        assert _local_iso_text(stored, minutes) == _local_iso(stored, minutes) == expected
