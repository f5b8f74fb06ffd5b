"""The live bot end to end, as a user runs it: `incident-monitor run` collects from an X API on loopback,
the scheduled cycle classifies, counts and detects, and the alert reaches a Slack webhook on loopback -
then SIGTERM stops it cleanly. Nothing inside the process is replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servers import wait_until
from servers.x_api import BASE_ID, FakeX
from slack_server import SlackServer
from sqlmodel import Session, select

from storage.database import open_store
from storage.models import Alert, Post

REPO = Path(__file__).resolve().parents[1]

VICTIMS = [
    "楽天証券の口座に不正ログインされて、保有株が全部売られてた。知らない香港株を買われてる",
    "楽天証券で身に覚えのない約定が何件も。注文なんてしてないのに中国株を買い付けされてる",
    "母の楽天証券口座が乗っ取られた。登録メールアドレスも勝手に変更されてた",
    "楽天証券にログインしたら資産が知らない銘柄に入れ替わってた。サポートに電話中",
    "やられた…楽天証券のパスワードが変えられてて、NISAの投資信託が売却されてる",
]


def _tweets(now: datetime) -> list[dict]:
    tweets = []
    for i, text in enumerate(VICTIMS):
        created = now - timedelta(minutes=12 - 2 * i)
        tweets.append({"id": str(BASE_ID + i * 1000), "text": text, "author_id": str(9100 + i),
                       "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "lang": "ja",
                       "edit_history_tweet_ids": [str(BASE_ID + i * 1000)]})
    return tweets


def test_run_turns_collected_victim_reports_into_one_slack_alert(tmp_path: Path) -> None:
    config = tmp_path / "incident-monitor.toml"
    # Wall-clock time runs in this test, so the waits that protect a real deployment are shortened.
    config.write_text(
        "[pipeline]\ncycle_seconds = 2\n"
        "[detect]\nwarmup_buckets = 0\n"
        "[alerts]\ngroup_wait_minutes = 0.0\n"
        "[x]\nbrokers = [\"楽天証券\"]\nincident_terms = [\"乗っ取り\"]\nsearch_floor_seconds = 0\n"
        "[scheduler]\nx_seconds = 2\njitter_seconds = 0\n"
        "[reddit]\nenabled = false\n[bluesky]\nenabled = false\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    now = datetime.now(UTC)
    with FakeX(_tweets(now)) as x, SlackServer() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_", "DATABASE_URL"))}
        env.update(X_BEARER_TOKEN="good-token", X_API_BASE_URL=x.url, SLACK_WEBHOOK_URL=slack.webhook_url,
                   PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--db", db, "--config", str(config)],  # default log level
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert wait_until(lambda: bool(slack.calls("webhook")), 90), "no Slack message arrived"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        messages = [call.json for call in slack.calls("webhook")]
    assert proc.returncode == 0, err[-2000:]
    first = json.dumps(messages[0], ensure_ascii=False)
    assert "楽天証券" in first and f"https://x.com/i/web/status/{BASE_ID}" in first  # canonical link
    # run logs each alert event as one bare contract JSON line, at the default log level
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "open" and e["kind"] == "broker" and e["key"] == "楽天証券" for e in logged), err[-2000:]
    assert all({"event", "kind", "key", "at", "count", "expected", "score"} <= set(e) for e in logged)
    engine = open_store(db)
    with Session(engine) as session:
        assert len(session.exec(select(Post)).all()) == len(VICTIMS)
        alerts = session.exec(select(Alert).where(Alert.kind == "broker")).all()
    assert [(a.key, a.status) for a in alerts] == [("楽天証券", "firing")]
    assert alerts[0].count >= 3
    engine.dispose()

