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
    open_store(sqlite_url).dispose()
    assert main(["status", "--check", "--db", sqlite_url]) == 0
    assert "no cycle yet" in capsys.readouterr().out


def test_the_check_only_reads(tmp_path, capsys):
    """The health check runs every minute: it must never create a store or migrate one."""
    from storage.database import make_engine

    missing = tmp_path / "none.sqlite"
    assert main(["status", "--check", "--db", f"sqlite:///{missing}"]) == 1
    assert "no store at" in capsys.readouterr().err and not missing.exists()
    empty = tmp_path / "old.sqlite"
    with make_engine(f"sqlite:///{empty}").begin() as connection:  # a store from before the migrations
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert main(["status", "--check", "--db", f"sqlite:///{empty}"]) == 1
    assert "run `incident-monitor db upgrade`" in capsys.readouterr().out
    with make_engine(f"sqlite:///{empty}").connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'posts'").first() is None


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
