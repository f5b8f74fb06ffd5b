"""`status --check` is the container health check: store reachable and the live cycle not stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from monitor.cli import main
from storage.database import open_store, session_scope
from storage.models import StateEntry


def _heartbeat(db_url: str, at: datetime) -> None:
    engine = open_store(db_url)
    with session_scope(engine) as session:
        session.add(StateEntry(key="detector:live", value={"version": 1}, updated_at=at))
    engine.dispose()


def test_healthy_before_the_first_cycle(sqlite_url, capsys):
    assert main(["status", "--check", "--db", sqlite_url]) == 0
    assert "no cycle yet" in capsys.readouterr().out


def test_recent_cycle_is_healthy_and_stale_one_is_not(db_url, capsys):
    _heartbeat(db_url, datetime.now(UTC) - timedelta(minutes=1))
    assert main(["status", "--check", "--db", db_url]) == 0
    engine = open_store(db_url)
    with session_scope(engine) as session:
        entry = session.get(StateEntry, "detector:live")
        entry.updated_at = datetime.now(UTC) - timedelta(hours=2)
        session.add(entry)
    engine.dispose()
    capsys.readouterr()
    assert main(["status", "--check", "--db", db_url]) == 1
    assert "unhealthy: the last analyze/detect cycle ran" in capsys.readouterr().out


def test_unreachable_store_fails_the_check(capsys):
    assert main(["status", "--check", "--db", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "cannot reach the database" in capsys.readouterr().err


def test_status_shows_the_backlog_alerts_opened_and_delivery_failures(db_url, capsys):
    from monitor.alerts import AlertsConfig, process_signals
    from monitor.events import Signal
    from monitor.ingest import store_records
    from monitor.records import PostRecord
    from storage.models import OutboxItem

    engine = open_store(db_url)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        store_records(session, [PostRecord(source="x", id=str(i), created_at=now - timedelta(minutes=30),
                                           author_id=str(i), text="楽天証券で不正ログイン") for i in range(3)])
        signal = Signal("broker", "楽天証券", now, timedelta(minutes=30), now - timedelta(minutes=30), count=5,
                        expected=0.2, score=9.0, firing=True)
        process_signals(session, [signal], now, AlertsConfig(group_wait_minutes=0), ["slack"])
    with session_scope(engine) as session:
        session.execute(sa.update(OutboxItem).values(status="dead", last_error="gave up"))
    engine.dispose()
    capsys.readouterr()
    assert main(["status", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "posts stored: 3; waiting for analysis: 3, oldest created" in out and "(30 min ago)" in out
    assert "alerts opened (live): 1; messages retrying: 0, given up: 1" in out
