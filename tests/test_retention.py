"""`db prune`: what each [retention] setting deletes and what it keeps, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.alerts import AlertsConfig, process_signals
from monitor.analyze import analyze_pending, load_analyzer
from monitor.cli import main
from monitor.events import Signal
from monitor.ingest import RawPayload, store_records
from monitor.records import PostRecord
from monitor.retention import RetentionConfig, prune
from storage.database import session_scope
from storage.models import Alert, AlertEventRow, Annotation, OutboxItem, Post, RawPage
from storage.queries import PostFilter, count_posts, find_posts

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
CFG = AlertsConfig(group_wait_minutes=0, resolve_after_minutes=20, cooldown_minutes=0)


def _post(i: int, text: str, at: datetime) -> PostRecord:
    return PostRecord(source="x", id=str(700 + i), created_at=at, author_id=str(i), text=text)


def _count(engine, table, *where) -> int:
    with Session(engine) as s:
        return s.exec(select(sa.func.count()).select_from(table).where(*where)).one()


def _signal(at: datetime, firing: bool = True) -> Signal:
    return Signal("broker", "楽天証券", at, timedelta(minutes=30), at - timedelta(minutes=30), count=5, expected=0.2,
                  score=9.0, firing=firing)


def test_prune_deletes_only_what_retention_no_longer_keeps(engine) -> None:
    raw = RawPayload(source="x", endpoint="search", body='{"data": []}', retrieved_at=OLD, collector_version="t")
    with session_scope(engine) as s:
        store_records(s, [_post(0, "今日はいい天気", OLD), _post(1, "楽天証券で不正ログインされた", OLD)], raw=raw, now=OLD)
        store_records(s, [_post(2, "ランチはカレー", NOW - timedelta(days=1)), _post(3, "まだ解析していない", OLD + timedelta(days=1))], now=OLD)
    analyze_pending(engine, load_analyzer(None), until=OLD + timedelta(seconds=1), limit=2)  # 702, 703 wait
    # a live alert that opened and resolved long ago (sent message), and one still firing
    for minutes, firing in ((0, True), (60, False)):
        with session_scope(engine) as s:
            process_signals(s, [_signal(OLD + timedelta(minutes=minutes), firing)] if firing else [],
                            OLD + timedelta(minutes=minutes), CFG, ["slack"])
    with session_scope(engine) as s:
        s.execute(sa.update(OutboxItem).values(status="sent", sent_at=OLD, created_at=OLD))
        process_signals(s, [_signal(NOW)], NOW, CFG, ["slack"])
        process_signals(s, [_signal(OLD)], OLD, CFG, ["slack"], "replay:abc#1")  # a backtest's: kept
    assert _count(engine, Alert) == 3

    report = prune(engine, RetentionConfig(), NOW)
    assert (report.raw_pages, report.posts, report.alerts, report.outbox) == (1, 1, 1, 2)  # open + resolve sent
    with Session(engine) as s:
        kept = set(s.exec(select(Post.post_id)).all())
        statuses = sorted(s.exec(select(Alert.status)).all())
    assert kept == {"701", "702", "703"}  # the mention, the recent one, the unanalysed one
    assert _count(engine, RawPage) == 0 and _count(engine, Post, Post.raw_page_id.is_not(None)) == 0
    assert _count(engine, Annotation) == 1
    assert statuses == ["firing", "firing"] and _count(engine, AlertEventRow) == 2
    assert _count(engine, OutboxItem) == _count(engine, OutboxItem, OutboxItem.status == "pending") == 2
    # The pruned post left the search index too: its words find nothing, and a post stored after the prune
    # (which SQLite may give the pruned post's id) is found by its own words only.
    with session_scope(engine) as s:
        store_records(s, [_post(9, "新しい投稿です", NOW)], now=NOW)
    with Session(engine) as s:
        assert count_posts(s, PostFilter(q="天気")) == 0
        assert [v.post.post_id for v in find_posts(s, PostFilter(q="新しい"))[0]] == ["709"]
    again = prune(engine, RetentionConfig(), NOW)
    assert (again.raw_pages, again.posts, again.alerts, again.outbox) == (0, 0, 0, 0)
    keep_all = RetentionConfig(raw_pages_days=0, posts_without_mentions_days=0, events_days=0, outbox_days=0)
    assert prune(engine, keep_all, NOW + timedelta(days=9999)).summary().startswith("pruned 0 raw pages, 0 posts")


def test_db_prune_command(sqlite_url, tmp_path, capsys) -> None:
    config = tmp_path / "incident-monitor.toml"
    config.write_text("[retention]\nraw_pages_days = 1\n", encoding="utf-8")
    assert main(["db", "prune", "--db", sqlite_url, "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("pruned 0 raw pages")
    config.write_text("[retention]\noutbox_days = -1\n", encoding="utf-8")
    assert main(["db", "prune", "--db", sqlite_url, "--config", str(config)]) == 1
    assert "[retention] outbox_days must be greater than or equal to 0" in capsys.readouterr().err
