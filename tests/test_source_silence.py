"""A source that stops collecting pages the team through the alert path of an incident: `source:x` opens
once, stays quiet while the source stays silent, resolves when it collects again, and never touches the
incident alerts or a replay's scope. End to end: `incident-monitor run` against a loopback X that answers
503, with a loopback Slack webhook and the metrics port scraped over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

from servers import json_answer, wait_until
from servers.x_api import FakeX
from slack_server import SlackServer
from sqlmodel import Session, col, select

from monitor.collectors import health
from monitor.collectors.base import CollectResult
from monitor.commands.collect import print_status
from monitor.events import Signal
from monitor.pipeline import Pipeline
from monitor.settings import load_settings
from storage.database import open_store
from storage.models import Alert, AlertEventRow, OutboxItem
from tests.test_metrics import free_port, scrape

REPO = Path(__file__).resolve().parents[1]


def _settings(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_silence_opens_once_stays_quiet_and_resolves_on_success(db_url, tmp_path):
    settings = _settings(tmp_path, "[alerts]\ngroup_wait_minutes = 5.0\nsource_silence_minutes = 30.0\n")
    engine = open_store(db_url)
    t0 = datetime(2026, 3, 19, 6, 0, tzinfo=UTC)
    health.record_pass(engine, CollectResult("x"), now=t0 - timedelta(hours=1))  # before the bot started
    health.record_pass(engine, CollectResult("reddit"), now=t0)
    pipeline = Pipeline(engine, settings, notifiers={"slack": object()}, watched_sources=["x", "reddit"])
    events = []

    def cycle(minute: int) -> None:
        now = t0 + timedelta(minutes=minute)
        # an incident firing for the first hour, beside the silence: neither may disturb the other
        incident = [Signal("broker", "楽天証券", now, timedelta(minutes=30), now - timedelta(minutes=30), count=5,
                           expected=0.2, score=9.0, firing=True)] if minute <= 60 else []
        events.extend(pipeline.alert(now, [*incident, *pipeline.source_signals(now)]))

    cycle(0)
    health.record_error(engine, "x", "503 Service Unavailable: the X API is down", now=t0 + timedelta(minutes=2))
    for minute in range(5, 31, 5):
        health.record_pass(engine, CollectResult("reddit"), now=t0 + timedelta(minutes=minute))
        cycle(minute)
    assert not [e for e in events if e.kind == "source"]  # 30 min since the start is not over 30 min
    for minute in range(31, 120, 1):  # silent, pending for group_wait, then firing for over an hour
        if minute % 5 == 0:
            health.record_pass(engine, CollectResult("reddit"), now=t0 + timedelta(minutes=minute))
        cycle(minute)
    source = [e for e in events if e.kind == "source"]
    assert [(e.event, e.key) for e in source] == [("open", "x")]  # one page, no update flood
    assert source[0].at == t0 + timedelta(minutes=36)  # silent over 30 min, then group_wait of 5
    explanation = source[0].extra["explanation"]
    assert explanation.startswith("X has been silent for 36 min (since the bot started at 2026-03-19 06:00 UTC); "
                                  "last success 2026-03-19 05:00 UTC")
    assert "last error 2026-03-19 06:02 UTC: 503 Service Unavailable: the X API is down" in explanation
    out = StringIO()
    print_status(engine, settings, t0 + timedelta(minutes=119), out)
    assert "[firing] source x: X has been silent for" in out.getvalue()  # status lists it with its reason
    health.record_pass(engine, CollectResult("x"), now=t0 + timedelta(minutes=120))
    cycle(121)
    cycle(122)
    source = [e for e in events if e.kind == "source"]
    assert [(e.event, e.key) for e in source] == [("open", "x"), ("resolve", "x")]
    assert source[1].at == t0 + timedelta(minutes=121)  # at once, not after resolve_after
    assert all(e.extra["notified"] for e in source)
    # the incident kept its own lifecycle: opened after group_wait, resolved after 30 quiet minutes
    incident = [(e.event, e.at - t0) for e in events if e.kind == "broker"]
    assert incident == [("open", timedelta(minutes=5)), ("resolve", timedelta(minutes=90))]
    with Session(engine) as session:
        alert = session.exec(select(Alert).where(Alert.fingerprint == "source:x")).one()
        ids = [r.id for r in session.exec(select(AlertEventRow).where(AlertEventRow.alert_id == alert.id)).all()]
        owed = session.exec(select(OutboxItem).where(col(OutboxItem.event_id).in_(ids))).all()
        assert not session.exec(select(Alert).where(Alert.fingerprint == "source:reddit")).all()
    assert alert.status == "resolved" and len(owed) == 2  # open and resolve, each owed to Slack once
    engine.dispose()


def test_replay_never_raises_a_silence_alert(sqlite_url, tmp_path):
    """A backtest runs the same pipeline in another scope: a stale health row must not page from it."""
    settings = _settings(tmp_path, "[alerts]\ngroup_wait_minutes = 0.0\nsource_silence_minutes = 1.0\n")
    engine = open_store(sqlite_url)
    health.record_error(engine, "x", "down", now=datetime(2020, 1, 1, tzinfo=UTC))
    posts = tmp_path / "posts.jsonl"
    start = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
    posts.write_text("".join(json.dumps({
        "source": "x", "id": str(i), "created_at": (start + timedelta(minutes=10 * i)).isoformat(),
        "author_id": str(i), "text": "今日はいい天気"}) + "\n" for i in range(6)), encoding="utf-8")
    pipeline = Pipeline(engine, settings, watched_sources=["x"])
    _, events = pipeline.replay(posts, tail=timedelta(hours=1))
    assert not [e for e in events if e.kind == "source"]
    with Session(engine) as session:
        assert not session.exec(select(Alert).where(Alert.kind == "source")).all()
    engine.dispose()


class FlakyX(FakeX):
    """The loopback X API, answering 503 while ``down``."""

    down = True

    def route(self, request):
        if self.down:
            return json_answer({"title": "Service Unavailable", "status": 503, "detail": "over capacity"}, 503)
        return super().route(request)


def test_run_pages_slack_when_x_is_silent_and_again_when_it_recovers(tmp_path):
    config = tmp_path / "incident-monitor.toml"
    # Wall-clock time runs here: a silence of 3 seconds, passes and cycles every second.
    config.write_text(
        "[pipeline]\ncycle_seconds = 1\n"
        "[alerts]\ngroup_wait_minutes = 0.0\nsource_silence_minutes = 0.05\n"
        "[x]\nsearch_floor_seconds = 0\n"
        "[scheduler]\nx_seconds = 1\njitter_seconds = 0\nretry_attempts = 1\n"
        "[reddit]\nenabled = false\n[bluesky]\nenabled = false\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    port = free_port()
    with FlakyX() as x, SlackServer() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_", "DATABASE_URL", "MONITOR_"))}
        env.update(X_BEARER_TOKEN="good-token", X_API_BASE_URL=x.url, SLACK_WEBHOOK_URL=slack.webhook_url,
                   MONITOR_METRICS_PORT=str(port), PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--db", db, "--config", str(config)],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: bool(slack.calls("webhook")), 90), "no Slack message arrived"
            seen = len(x.requests)
            assert wait_until(lambda: len(x.requests) >= seen + 4, 30)  # several more silent passes and cycles
            silent = scrape(f"http://127.0.0.1:{port}/metrics")
            x.down = False
            assert wait_until(lambda: len(slack.calls("webhook")) >= 2, 60), "no resolve message arrived"
            recovered = scrape(f"http://127.0.0.1:{port}/metrics")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        messages = [json.dumps(call.json, ensure_ascii=False) for call in slack.calls("webhook")]
    assert proc.returncode == 0, err[-2000:]
    assert len(messages) == 2, messages  # one open, one resolve: no update flood while silent
    assert "X has been silent for" in messages[0] and "503" in messages[0] and "収集停止" in messages[0]
    assert "収集再開" in messages[1]
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(e["event"], e["kind"], e["key"]) for e in logged] == [("open", "source", "x"), ("resolve", "source", "x")]
    assert silent[("incident_monitor_source_failing", (("source", "x"),))] == 1
    assert silent[("incident_monitor_alerts_open", (("kind", "source"), ("status", "firing")))] == 1
    assert recovered[("incident_monitor_source_failing", (("source", "x"),))] == 0
    assert recovered[("incident_monitor_alerts_open", (("kind", "source"), ("status", "firing")))] == 0
    assert recovered[("incident_monitor_alerts_opened_total", (("kind", "source"),))] == 1
    engine = open_store(db)
    with Session(engine) as session:
        rows = session.exec(select(AlertEventRow)).all()
    assert [r.event for r in rows] == ["open", "resolve"]
    engine.dispose()
