"""Exactly one scheduler per store however many `run` instances start: real processes, real locks
(a PostgreSQL advisory lock, a lock file on SQLite), the holder killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers.x_api import FakeX

REPO = Path(__file__).resolve().parents[1]
CONFIG = ("[pipeline]\ncycle_seconds = 2\n[x]\nbrokers = [\"楽天証券\"]\nsearch_floor_seconds = 0\n"
          "[scheduler]\nx_seconds = 2\njitter_seconds = 0\n[reddit]\nenabled = false\n[bluesky]\nenabled = false\n")


class Instance:
    """One `incident-monitor run` process whose stderr is read line by line as it comes."""

    def __init__(self, db: str, config: Path, x_url: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_",
                                                                          "DATABASE_URL"))}
        env.update(X_BEARER_TOKEN="good-token", X_API_BASE_URL=x_url, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--db", db, "--config", str(config),
                                      "--no-cycle"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_second_instance_stands_by_and_takes_over_when_the_first_dies(backend, tmp_path, request) -> None:
    db = f"sqlite:///{tmp_path / 'live.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    config = tmp_path / "incident-monitor.toml"
    config.write_text(CONFIG, encoding="utf-8")
    with FakeX([]) as x:
        first = Instance(db, config, x.url, tmp_path)
        second = None
        try:
            assert first.wait_for("running: x"), first.lines
            second = Instance(db, config, x.url, tmp_path)
            assert second.wait_for("standing by"), second.lines
            time.sleep(1)
            assert not any("running: x" in line for line in second.lines)
            standby = [line for line in second.lines if "standing by" in line]
            assert len(standby) == 1  # one line, not one per poll
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            assert second.wait_for("taking over the scheduler", 30), second.lines
            assert second.wait_for("running: x"), second.lines
        finally:
            first.stop()
            if second is not None:
                second.stop()
    assert second.proc.returncode == 0, second.lines


def test_instances_starting_together_migrate_one_after_the_other(db_url, tmp_path) -> None:
    """Racing start-up migrations killed one instance with a traceback; the migration lock serialises them."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "monitor", "db", "upgrade", "--db", db_url], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(code == 0 for code, _ in results), results


def test_two_writers_racing_to_open_one_alert_record_it_once(pg_url) -> None:
    """On an already-migrated store, one run in eight paged every alert twice: two loops each inserted a
    new episode of the same fingerprint. The unique index makes the second insert fail; it re-plans."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa
    from sqlmodel import Session, select

    from monitor.alerts import AlertsConfig, process_signals
    from monitor.events import Signal
    from storage.database import open_store
    from storage.models import Alert

    engine = open_store(pg_url)
    now = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    sig = Signal("broker", "楽天証券", now, timedelta(minutes=30), now - timedelta(minutes=30), count=6,
                 expected=0.2, score=9.0, firing=True)
    config = AlertsConfig(group_wait_minutes=0)
    first = Session(engine)
    assert [e.event for e in process_signals(first, [sig], now, config, ["slack"])] == ["open"]
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        with Session(engine) as session:
            try:
                outcome["events"] = process_signals(session, [sig], now, config, ["slack"])
                session.commit()
            except sa.exc.IntegrityError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(0.5)  # the second writer now waits on the first one's uncommitted index entry
    first.commit()
    first.close()
    thread.join(30)
    assert "error" in outcome, outcome
    with Session(engine) as session:  # re-planning on top of the stored alert opens nothing again
        assert process_signals(session, [sig], now, config, ["slack"]) == []
        session.commit()
        assert len(session.exec(select(Alert)).all()) == 1
    engine.dispose()
