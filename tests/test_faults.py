"""Outages under a running `incident-monitor run` (a real process): X failing for several passes, Slack
failing for several delivery attempts, PostgreSQL restarted under load. After each, nothing collected is
lost or stored twice, and every alert event reaches Slack once, in order."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from crashkit import (
    Killable,
    KillingSlack,
    KillingX,
    Run,
    Stream,
    assert_exactly_once,
    config_text,
    run_env,
    store_counts,
    wait_settled,
)
from servers import wait_until
from servers.x_api import SEARCH


class Scenario:
    """A run against loopback X and Slack, fed the scripted stream batch by batch."""

    def __init__(self, db: str, tmp_path: Path, x: KillingX, slack: KillingSlack) -> None:
        self.db, self.tmp_path, self.x, self.slack = db, tmp_path, x, slack
        self.config = tmp_path / "incident-monitor.toml"
        self.config.write_text(config_text(), encoding="utf-8")
        self.env = run_env(x, slack)
        self.stream = Stream()
        self.served: list[dict] = []

    def feed(self, n: int = 1) -> None:
        for _ in range(n):
            fresh = self.stream.batch()
            self.served += fresh
            self.x.add(fresh)

    def start(self) -> Run:
        return Run(self.db, self.config, self.env, self.tmp_path)

    def settle(self, run: Run) -> None:
        assert wait_settled(self.db, len(self.served)), run.tail()

    def status(self) -> str:
        out = subprocess.run([sys.executable, "-m", "monitor", "status", "--db", self.db, "--config", str(self.config)],
                             env=self.env, cwd=self.tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.mark.slow
def test_an_x_outage_over_several_passes_loses_nothing_and_status_shows_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with KillingX(Killable()) as x, KillingSlack(Killable()) as slack:
        s = Scenario(db, tmp_path, x, slack)
        s.feed(2)
        run = s.start()
        try:
            s.settle(run)
            x.down = 503
            s.feed(3)  # posted while X fails: must all arrive once it recovers
            failing = len(x.calls(SEARCH))
            # Several passes fail (each pass retries a 5xx `retry_attempts` times first).
            assert wait_until(lambda: run.wait_for("x: pass failed", 0) and len(x.calls(SEARCH)) >= failing + 6, 60), \
                run.tail()
            x.down = 429  # then rate limits: the pass ends, the next one asks again
            assert wait_until(lambda: len(x.calls(SEARCH)) >= failing + 9, 60), run.tail()
            during = s.status()
            assert len(store_counts(db)["posts"]) < len(s.served)
            x.down = 0
            s.feed(1)
            s.settle(run)
            after = s.status()
        finally:
            code = run.stop()
        assert code == 0, run.tail()
        assert_exactly_once(db, s.served, slack)
    x_during, x_after = _source_lines(during, "x"), _source_lines(after, "x")
    assert "last error" in x_during and "have succeeded since" not in x_during, during
    assert "last error" in x_after and "have succeeded since" in x_after, after


def _source_lines(status: str, source: str) -> str:
    """The line of one source in `status` output and its indented details."""
    lines = status.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {source}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.slow
def test_a_slack_outage_queues_messages_and_sends_each_once_in_order_after_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with KillingX(Killable()) as x, KillingSlack(Killable()) as slack:
        s = Scenario(db, tmp_path, x, slack)
        slack.down = True
        s.feed(3)
        run = s.start()
        try:
            # Events are planned and queued while every Slack call fails; each is tried several times.
            def queued() -> bool:
                try:
                    counts = store_counts(db)
                except sa.exc.OperationalError:  # not migrated yet
                    return False
                return len(counts["events"]) >= 2 and len(slack.failed) >= 3 * len(counts["events"])
            assert wait_until(queued, 60), run.tail()
            s.feed(2)
            assert wait_until(lambda: len(slack.failed) >= 20, 60), run.tail()
            during = store_counts(db)
            assert all(status == "pending" for _, status in during["outbox"]), during["outbox"]
            assert not slack.messages
            slack.down = False
            s.settle(run)
        finally:
            code = run.stop()
        assert code == 0, run.tail()
        counts = assert_exactly_once(db, s.served, slack)
    # In order: each alert's messages in Slack (by ts) follow its events' order, the open first.
    alert_of = {event_id: alert_id for event_id, alert_id, *_ in counts["events"]}
    posted = [int(m["metadata"]["event_payload"]["event_id"]) for _, m in sorted(slack.messages.items(), key=lambda kv: kv[0][1])]
    for alert_id in set(alert_of.values()):
        mine = [e for e in posted if alert_of[e] == alert_id]
        assert mine == sorted(mine), (alert_id, mine)
    assert len(during["events"]) >= 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def private_pg() -> Iterator[tuple[str, list[str]]]:
    """A PostgreSQL cluster of this test alone (initdb in a temporary folder, a free port), run as the
    ``postgres`` user when the test runs as root. Yields its URL and the pg_ctl command prefix."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("initdb/pg_ctl not found (install the PostgreSQL server package) - needed for a private cluster")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="im-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        ctl = [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60",
               "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"]
        subprocess.run([*ctl, "start"], check=True, capture_output=True, timeout=120)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", ctl
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_restarted_under_load_run_survives_and_loses_nothing(private_pg, tmp_path: Path) -> None:
    """First a fast restart under the one running bot: it goes on, taking its scheduler lock again. Then,
    with a standby beside it, the server is down for a few seconds: the standby keeps standing by through
    the outage, and afterwards exactly one of the two schedules (whichever took the lock first; the other
    stands by, or stops with one line if it had been the scheduler). Nothing is lost or sent twice."""
    db, ctl = private_pg
    with KillingX(Killable()) as x, KillingSlack(Killable()) as slack:
        s = Scenario(db, tmp_path, x, slack)
        s.feed(3)
        run = s.start()
        standby = None
        try:
            s.settle(run)
            s.feed(2)
            subprocess.run([*ctl, "-m", "fast", "restart"], check=True, capture_output=True, timeout=120)
            s.feed(2)
            s.settle(run)
            assert run.proc.poll() is None, run.tail()
            # The scheduler lock (a session lock on its own connection) died with the server; run took it
            # again rather than stopping, and said so.
            assert wait_until(lambda: run.wait_for("took the scheduler lock again", 0), 30), run.tail()
            standby = s.start()
            assert standby.wait_for("standing by", 60), standby.tail()
            s.feed(2)
            subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True, timeout=120)
            time.sleep(3)  # longer than the standby's poll and the lock watcher's: both meet the outage
            subprocess.run([*ctl, "start"], check=True, capture_output=True, timeout=120)
            s.feed(2)
            s.settle(run)
            time.sleep(2.5)  # a lock check after the settle: the loser of the race has noticed by now
            if run.proc.poll() is None:  # run took its lock again; the standby still stands by
                assert standby.proc.poll() is None and not standby.wait_for("taking over the scheduler", 0), standby.tail()
            else:  # the standby was first: run stopped with one line, exit 1, for its supervisor to restart
                assert run.proc.returncode == 1 and run.wait_for("lost the scheduler lock to another", 0), run.tail()
                assert standby.wait_for("taking over the scheduler", 0), standby.tail()
        finally:
            code = run.stop()
            if standby is not None:
                standby.stop()
        assert code in (0, 1), run.tail()
        assert_exactly_once(db, s.served, slack)
    # A job that met the outage failed with one line naming the database error, not a traceback.
    for instance in (run, standby):
        assert not [line for line in instance.lines if line.startswith("Traceback")], instance.tail(80)
