"""The analysis queue: what analysis reads instead of scanning every post (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.analyze import analyze_pending, fill_queue, load_analyzer
from monitor.ingest import store_records
from monitor.records import PostRecord
from storage.database import session_scope
from storage.models import AnalysisQueue, Annotation, Mention, Post

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def analyzer():
    return load_analyzer(None)


def _records(n: int, start: int = 0) -> list[PostRecord]:
    return [PostRecord(source="x", id=str(1000 + i), created_at=T0 + timedelta(minutes=i), author_id=str(i),
                       text=f"楽天証券の口座に不正ログインされて中国株00700を勝手に買われた #{i}")
            for i in range(start, start + n)]


def _count(engine, table) -> int:
    with Session(engine) as s:
        return s.exec(select(sa.func.count()).select_from(table)).one()


def test_stored_posts_are_queued_once_and_annotation_empties_the_queue(engine, analyzer) -> None:
    with session_scope(engine) as s:
        store_records(s, _records(30))
    with session_scope(engine) as s:
        store_records(s, _records(35))  # 30 repeats, 5 new
    assert _count(engine, AnalysisQueue) == 35
    # replay analyses only what its clock has reached
    assert analyze_pending(engine, analyzer, batch=8, until=T0 + timedelta(minutes=9)) == 10
    assert _count(engine, AnalysisQueue) == 25
    assert analyze_pending(engine, analyzer, batch=8) == 25
    assert _count(engine, AnalysisQueue) == 0 and _count(engine, Annotation) == 35
    with Session(engine) as s:
        mentions = s.exec(select(Mention.kind, Mention.value).distinct()).all()
    assert ("broker", "楽天証券") in mentions and ("ticker", "0700.HK") in mentions
    assert analyze_pending(engine, analyzer) == 0  # nothing left, nothing done twice


def test_a_new_model_version_queues_every_post_it_has_not_annotated(engine, analyzer) -> None:
    with session_scope(engine) as s:
        store_records(s, _records(12))
    analyze_pending(engine, analyzer)
    fill_queue(engine, analyzer.model_version)  # same model: no scan, nothing queued
    assert _count(engine, AnalysisQueue) == 0
    fill_queue(engine, "other-model@2")
    assert _count(engine, AnalysisQueue) == 12
    with session_scope(engine) as s:
        pk = s.exec(select(Post.id).where(Post.post_id == "1000")).one()
        s.execute(sa.delete(Mention).where(Mention.post_pk == pk))
        s.execute(sa.delete(Annotation).where(Annotation.post_pk == pk))
        s.execute(sa.delete(Post).where(Post.id == pk))
    assert _count(engine, AnalysisQueue) == 11  # a deleted post leaves the queue with it
