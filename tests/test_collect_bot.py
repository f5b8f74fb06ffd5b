"""The scheduler, `collect`, `status` and `run`: failing sources do not stop the others, SIGTERM stops
the bot within seconds without losing the page in flight, and status reports health, spend and silence."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from servers import Fault, wait_until
from servers.x_api import SEARCH, FakeX, make_tweets

from monitor.cli import main as cli_main
from monitor.collectors import health
from monitor.collectors.base import CollectResult
from monitor.collectors.config import SchedulerConfig, XConfig
from monitor.collectors.retry import RetryPolicy
from monitor.collectors.x import XCollector
from monitor.commands import collect as commands
from monitor.errors import CredentialsError, SourceError
from monitor.scheduler import Bot
from monitor.settings import Secret, load_settings
from storage.database import open_store, session_scope
from storage.models import Alert, Post, SourceHealth

REPO = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_wait=5.0)
SCHED = SchedulerConfig(x_seconds=1, reddit_seconds=1, bluesky_seconds=1, jitter_seconds=0, shutdown_seconds=5)


class Broken:
    source = "reddit"

    def __init__(self) -> None:
        self.calls = 0

    def collect(self, engine, stop):
        self.calls += 1
        raise SourceError("Reddit new failed 5 times: HTTP 503: service unavailable")


class Rejected:
    source = "bluesky"

    def collect(self, engine, stop):
        raise CredentialsError("BLUESKY_APP_PASSWORD", "login refused (AuthenticationRequired: Invalid identifier or password)")


def posts(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Post)).scalar_one()


def test_one_failing_and_one_rejected_source_do_not_stop_the_others(sqlite_url: str) -> None:
    engine = open_store(sqlite_url)
    cycles: list[datetime] = []
    with FakeX(make_tweets(12)) as server:
        x = XCollector(XConfig(bearer_token=Secret("good-token"), api_base_url=server.url, brokers=("楽天証券",),
                               incident_terms=("乗っ取り",), max_results=10, search_floor_seconds=0), FAST)
        broken = Broken()
        bot = Bot(engine, [x, broken, Rejected()], SCHED, cycle=cycles.append, cycle_seconds=1)
        bot.start()
        try:
            assert wait_until(lambda: posts(engine) == 12 and broken.calls >= 2 and bot.runs.get("x", 0) >= 2, 10)
            assert wait_until(lambda: len(cycles) >= 1, 10)
            assert bot.scheduler.get_job("collect-bluesky") is None  # disabled after the rejection
            assert bot.scheduler.get_job("collect-reddit") is not None  # still retried next interval
        finally:
            assert bot.stop(timeout=5)
    with session_scope(engine) as session:
        rows = {r.source: r for r in session.exec(sa.select(SourceHealth)).scalars()}
    assert rows["x"].posts_collected == 12 and rows["x"].last_success_at is not None
    assert "HTTP 503" in rows["reddit"].last_error and rows["reddit"].disabled_reason is None
    assert rows["bluesky"].disabled_reason.startswith("BLUESKY_APP_PASSWORD:")
    engine.dispose()


def test_stop_interrupts_a_rate_limit_wait_within_seconds(sqlite_url: str) -> None:
    engine = open_store(sqlite_url)
    with FakeX(make_tweets(25)) as server:
        x = XCollector(XConfig(bearer_token=Secret("good-token"), api_base_url=server.url, brokers=("楽天証券",),
                               incident_terms=("乗っ取り",), max_results=10), RetryPolicy(max_wait=600))
        server.fault(SEARCH, Fault("none"), Fault("status", 429, {"retry-after": "300"}))
        bot = Bot(engine, [x], SCHED)
        bot.start()
        assert wait_until(lambda: len(server.calls(SEARCH)) >= 2, 10)
        start = time.monotonic()
        assert bot.stop(timeout=5)
        assert time.monotonic() - start < 3
    assert posts(engine) == 10  # the page stored before the wait is kept
    engine.dispose()


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "incident-monitor.toml"
    path.write_text(
        "[x]\nbrokers = [\"楽天証券\"]\nincident_terms = [\"乗っ取り\"]\nmax_results = 10\nsearch_floor_seconds = 0\n"
        "[reddit]\nenabled = true\n[bluesky]\nenabled = false\n"
        "[scheduler]\nx_seconds = 1\njitter_seconds = 0\nretry_base_seconds = 0.01\nshutdown_seconds = 5\n",
        encoding="utf-8",
    )
    return path


def _env(tmp_path: Path, server_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "DATABASE_URL"))}
    env.update(INCIDENT_MONITOR_CONFIG=str(_config_file(tmp_path)), X_API_BASE_URL=server_url,
               PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}", **extra)
    return env


def test_run_stops_on_sigterm_within_seconds_and_keeps_every_page(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bot.sqlite'}"
    with FakeX(make_tweets(30)) as server:
        # Slow pages: SIGTERM lands while a page is in flight; that page must still be stored.
        server.fault(SEARCH, *[Fault("delay", seconds=0.4)] * 3)
        env = _env(tmp_path, server.url, X_BEARER_TOKEN="good-token")
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--db", db, "--no-cycle"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert wait_until(lambda: len(server.calls(SEARCH)) >= 2, 30)
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            out, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    assert elapsed < 8, elapsed
    assert "reddit disabled: REDDIT_CLIENT_ID" in err  # one line naming the variable; x still ran
    engine = open_store(db)
    assert posts(engine) >= 10
    # Whatever was in flight at SIGTERM: a restart picks up from the stored cursor, losing nothing.
    with FakeX(server.tweets) as again:
        x = XCollector(XConfig(bearer_token=Secret("good-token"), api_base_url=again.url, brokers=("楽天証券",),
                               incident_terms=("乗っ取り",), max_results=10, search_floor_seconds=0), FAST)
        x.collect(engine, threading.Event())
    with engine.connect() as conn:
        ids = conn.execute(sa.select(Post.post_id)).scalars().all()
    assert len(ids) == len(set(ids)) == 30
    engine.dispose()


def test_run_with_no_usable_source_is_one_error_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bot.sqlite'}"
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--db", db],
        env=_env(tmp_path, "http://127.0.0.1:9"), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("INFO")]
    assert lines[0] == "x disabled: X_BEARER_TOKEN: set X_BEARER_TOKEN in the environment (or X_BEARER_TOKEN_FILE to a file holding it)"
    assert lines[-1].startswith("error: no source can run") and "Traceback" not in proc.stderr


def test_collect_once_then_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    with FakeX(make_tweets(7)) as server:
        for key, value in _env(tmp_path, server.url, X_BEARER_TOKEN="good-token").items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("REDDIT_CLIENT_ID", raising=False)
        assert cli_main(["collect", "x", "--once", "--db", db]) == 0
    assert "x: 1 page(s), 7 new" in capsys.readouterr().out
    engine = open_store(db)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        session.add(Alert(fingerprint="broker:楽天証券", kind="broker", key="楽天証券", status="firing",
                          first_seen=now, opened_at=now, window_start=now, count=7, expected=0.4, score=12.3))
    settings = load_settings(env={})
    # Days later with nothing new: x is flagged silent.
    health.record_error(engine, "reddit", "REDDIT_CLIENT_ID: set REDDIT_CLIENT_ID in the environment", disabled=True)
    out = io.StringIO()
    attention = commands.print_status(engine, settings, now + timedelta(days=2), out)
    text = out.getvalue()
    assert "x: last success" in text and "7 posts collected" in text and "spend today" in text
    assert "WARNING: no new post" in text and "DISABLED: REDDIT_CLIENT_ID" in text
    assert "open alerts: 1" in text and "broker 楽天証券: 7 reporters" in text
    assert attention == 2
    fresh = io.StringIO()
    commands.print_status(engine, settings, now, fresh)
    assert "x: last success" in fresh.getvalue() and "WARNING" not in fresh.getvalue()
    assert "spend today ~$0.04" in fresh.getvalue()  # 7 posts at the default $0.005 estimate
    engine.dispose()


def test_collect_result_accumulates() -> None:
    total = CollectResult("x")
    total.add(CollectResult("x", pages=1, new=2, requests=3, spend_usd=0.01, notes=["a"]))
    total.add(CollectResult("x", pages=2, new=1, duplicate=1, stopped=True))
    assert (total.pages, total.new, total.duplicate, total.requests, total.stopped, total.notes) == (3, 3, 1, 3, True, ["a"])
