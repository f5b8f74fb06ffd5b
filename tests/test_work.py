"""`work analyze`: workers as real processes sharing one backlog."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.cli import main
from monitor.ingest import store_records
from monitor.records import PostRecord
from storage.database import open_store, session_scope
from storage.locks import acquire
from storage.models import AnalysisQueue, Annotation

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
TEXTS = ["楽天証券の口座に不正ログインされて中国株を勝手に買われた", "今日は日経平均が上がった", "SBI証券からのフィッシングメールに注意"]


def _store(engine, n: int) -> None:
    with session_scope(engine) as s:
        store_records(s, [PostRecord(source="x", id=str(5000 + i), created_at=T0 + timedelta(seconds=i),
                                     author_id=str(i), text=f"{TEXTS[i % 3]} {i}") for i in range(n)])


def _worker(db: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "monitor", "work", "analyze", "--once", "--batch", "16",
                             "--db", db], env=env, stderr=subprocess.PIPE, text=True)


def test_two_workers_on_postgresql_share_the_backlog_without_double_work(pg_url) -> None:
    engine = open_store(pg_url)
    _store(engine, 400)
    workers = [_worker(pg_url), _worker(pg_url)]
    outputs = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    counts = [re.search(r"classified (\d+) posts, stored (\d+) annotations", out) for out in outputs]
    assert all(counts), outputs
    classified = [int(m.group(1)) for m in counts]
    stored = [int(m.group(2)) for m in counts]
    assert sum(classified) == 400 and classified == stored  # no post classified by both
    with Session(engine) as s:
        assert s.exec(select(sa.func.count()).select_from(Annotation)).one() == 400
        assert s.exec(select(sa.func.count()).select_from(AnalysisQueue)).one() == 0
    engine.dispose()


def test_sqlite_takes_one_worker_and_says_so(sqlite_url, capsys) -> None:
    engine = open_store(sqlite_url)
    _store(engine, 10)
    other = acquire(engine, "analyze-worker")
    try:
        assert main(["work", "analyze", "--once", "--db", sqlite_url]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another analyze worker" in err[0] and "PostgreSQL" in err[0], err
    finally:
        other.release()
    assert main(["work", "analyze", "--once", "--db", sqlite_url]) == 0
    err = capsys.readouterr().err
    assert "one analyze worker" in err and "classified 10 posts, stored 10 annotations" in err
    engine.dispose()
