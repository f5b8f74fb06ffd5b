"""What the crash, two-instance and fault tests share: `incident-monitor run` as a real subprocess against
the loopback X API (tests/servers/x_api.py) and the loopback Slack (tests/slack_server.py), a scripted
stream of Japanese posts that opens alerts, kill hooks inside those servers, and the exactly-once checks
on the store and on what Slack received.

Nothing in the product is replaced or instrumented: the phase a kill lands in is chosen by what the
process itself does - the request it makes to X or Slack (seen by the loopback server) or the log lines
it writes at ``-v`` (the scheduler's "Running job ... run_cycle", the alert events' JSON lines).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from servers import Answer, Request
from servers.x_api import BASE_ID, SEARCH, FakeX
from slack_server import Recorded, Reply, SlackServer

REPO = Path(__file__).resolve().parents[1]
CHANNEL = "C0ALERTS"
BROKERS = ["楽天証券", "SBI証券", "マネックス証券"]

# Distinct first-hand reports (a reporter is a person and near-identical texts count once, so each
# template is worded differently); {b} is the broker.
VICTIM = [
    "{b}の口座に不正ログインされて、保有株が全部売られてた。知らない香港株を買われてる",
    "{b}で身に覚えのない約定が何件も。注文なんてしてないのに中国株を買い付けされてる",
    "母の{b}口座が乗っ取られた。登録メールアドレスも勝手に変更されてた",
    "{b}にログインしたら資産が知らない銘柄に入れ替わってた。サポートに電話中",
    "やられた…{b}のパスワードが変えられてて、NISAの投資信託が売却されてる",
    "{b}から取引完了メールが深夜に何通も届いた。自分は何も売買していないのに残高がほぼゼロ",
    "夫の{b}アカウントに海外から不正アクセスがあったらしい。信用取引まで勝手に始められていた",
    "{b}で保有していた日本株がいつの間にか全部売却され、代わりに謎の小型株を大量に掴まされている",
    "{b}の出金先口座が知らない銀行に変更されていた。二段階認証はしていたのになぜ",
    "今朝{b}を開いたら見覚えのない買い注文がずらり。電話は全然つながらない",
    "{b}の口座、誰かにログインされた履歴が残ってる。株も投信も売られて現金が消えた",
    "{b}で勝手に米国株が売られて、代金で中国の無名株を買われた。警察に相談します",
]
NOISE = [
    "今日の日経平均は小幅高。{b}のアプリで板を見ながら昼ごはん",
    "{b}の新しいキャンペーン、手数料無料になるらしい",
    "週末は{b}のセミナーに行ってきた。配当株の話が面白かった",
]


def tweet(i: int, text: str, author: int, created: datetime) -> dict[str, Any]:
    tid = str(BASE_ID + i * 1000)
    return {"id": tid, "text": text, "author_id": str(author), "lang": "ja", "edit_history_tweet_ids": [tid],
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


class Stream:
    """The scripted posts: batch ``n`` holds the next victim reports of one or two brokers (each broker's
    reporters arrive over several batches, so an alert opens and then grows into updates) and some noise.
    Post ids grow with time, as X's do; ``created_at`` is a little before the batch is served."""

    def __init__(self) -> None:
        self.next_id = 0
        self.batches = 0
        self.author = 9000
        self.served_victims: Counter[str] = Counter()

    def batch(self, n: int | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
        """Batch ``n`` (by default the next one)."""
        n = self.batches if n is None else n
        self.batches = n + 1
        now = now or datetime.now(UTC)
        posts = []
        brokers = [BROKERS[(n // 3) % len(BROKERS)]] + ([BROKERS[(n // 3 + 1) % len(BROKERS)]] if n % 2 else [])
        for broker in brokers:
            for _ in range(2):
                k = self.served_victims[broker]
                self.served_victims[broker] += 1
                text = VICTIM[k % len(VICTIM)].format(b=broker) + ("" if k < len(VICTIM) else f"（続報{k}）")
                posts.append(self._post(text, now))
        posts.append(self._post(NOISE[n % len(NOISE)].format(b=BROKERS[n % len(BROKERS)]), now))
        return posts

    def _post(self, text: str, now: datetime) -> dict[str, Any]:
        i, self.next_id = self.next_id, self.next_id + 1
        self.author += 1
        return tweet(i, text, self.author, now - timedelta(seconds=30) + timedelta(milliseconds=i))


def config_text(**overrides: str) -> str:
    """Short cycles and waits: wall-clock time runs in these tests."""
    sections = {
        "pipeline": "cycle_seconds = 1",
        "detect": "warmup_buckets = 0",
        "alerts": "group_wait_minutes = 0.0\nbackoff_seconds = 0.5\nmax_backoff_seconds = 1.0\nmax_attempts = 50",
        "slack": "timeout_seconds = 5",
        "x": f"brokers = {json.dumps(BROKERS, ensure_ascii=False)}\nsearch_floor_seconds = 0",
        "scheduler": "x_seconds = 1\njitter_seconds = 0\nretry_attempts = 2\nretry_base_seconds = 0.2\n"
                     "retry_max_seconds = 0.5\nmax_rate_limit_wait_seconds = 1.0",
        "reddit": "enabled = false",
        "bluesky": "enabled = false",
        **overrides,
    }
    return "".join(f"[{name}]\n{body}\n" for name, body in sections.items())


class Killable:
    """The process a server-side hook may kill: set ``proc`` and arm a phase with :meth:`arm`."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.phase: str | None = None
        self.delay = 0.0
        self.fired = threading.Event()
        self._lock = threading.Lock()

    def arm(self, proc: subprocess.Popen[str], phase: str, delay: float) -> None:
        with self._lock:
            self.proc, self.phase, self.delay = proc, phase, delay
            self.fired.clear()

    def disarm(self) -> None:
        with self._lock:
            self.phase = None

    def trigger(self, phase: str, *, now: bool = False) -> bool:
        """Kill the armed process when ``phase`` is armed: at once (``now``, inside a request before it is
        answered) or after the armed delay, from a timer (while the process goes on). True when armed."""
        with self._lock:
            if self.phase != phase or self.proc is None:
                return False
            proc, delay, self.phase = self.proc, self.delay, None
        if now or delay <= 0:
            self._kill(proc)
        else:
            threading.Timer(delay, self._kill, args=[proc]).start()
        return True

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        self.fired.set()


def _quiet(request: Any, client_address: Any) -> None:
    """socketserver prints a traceback when a client resets its connection; a killed process does."""


class KillingX(FakeX):
    """The loopback X API; a search request may fire the armed ``collect`` kill (before or after the page
    is answered, so the kill lands while the page is fetched or while it is being stored)."""

    def __init__(self, target: Killable) -> None:
        super().__init__([])
        self.target = target
        self.down: int = 0  # > 0: answer that status to every search (an outage), 0: serve
        self.httpd.handle_error = _quiet  # type: ignore[method-assign]  # a killed client resets its socket

    def route(self, request: Request) -> Answer:
        if request.path == SEARCH:
            self.target.trigger("collect-fetch", now=True)
            if self.down:
                return self.down, {"content-type": "application/json"}, json.dumps(
                    {"title": "Service Unavailable", "status": self.down, "detail": "loopback outage"}).encode()
        answer = super().route(request)
        if request.path == SEARCH:
            self.target.trigger("collect-store")
        return answer


class KillingSlack(SlackServer):
    """The loopback Slack; a chat.postMessage may fire the armed ``deliver`` kill: before Slack takes the
    message, or after Slack stored it but before the client reads the answer (the send-then-crash
    window), or a moment after the answer (while the outbox records it as sent)."""

    def __init__(self, target: Killable) -> None:
        super().__init__()
        self.target = target
        self._httpd.handle_error = _quiet  # type: ignore[method-assign]
        self.down = False  # True: every Web API call and webhook post gets Slack's 503 (an outage)
        self.failed: list[Recorded] = []  # what was refused during an outage

    def _answer(self, record: Recorded) -> Reply:
        if self.down:
            with self._lock:
                self.requests.append(record)
                self.failed.append(record)
            return Reply(503, '{"ok": false, "error": "service_unavailable"}',
                         {"Content-Type": "application/json; charset=utf-8"})
        posting = record.endpoint in ("chat.postMessage", "webhook")
        if posting and self.target.trigger("deliver-before", now=True):
            # Killed while its request was in flight: this Slack never takes the message.
            return Reply(500, "", {"Content-Type": "text/plain"})
        reply = super()._answer(record)
        if posting and reply.status == 200:
            self.target.trigger("deliver-accepted", now=True)
            self.target.trigger("deliver-after")
        return reply

    def event_ids(self) -> Counter[int]:
        """How many messages Slack holds per alert event id (from the message metadata)."""
        with self._lock:
            found = Counter()
            for message in self.messages.values():
                meta = message.get("metadata") or {}
                found[int(meta["event_payload"]["event_id"])] += 1
            return found


class Run:
    """One `incident-monitor run -v` process; stderr is read line by line as it comes."""

    def __init__(self, db: str, config: Path, env: dict[str, str], cwd: Path,
                 on_line: Callable[[str], None] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--db", db, "--config", str(config), "-v"],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.on_line = on_line
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.on_line is not None:
                self.on_line(line)

    def wait_for(self, text: str, timeout: float = 60, *, start: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(text in line for line in self.lines[start:]):
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return any(text in line for line in self.lines[start:])
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)
        self._reader.join(5)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])


def run_env(x: FakeX, slack: SlackServer | None, *, webhook: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("X_", "REDDIT_", "BLUESKY_", "SLACK_", "DATABASE_URL"))}
    env.update(X_BEARER_TOKEN="good-token", X_API_BASE_URL=x.url, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    if slack is not None and webhook:
        env["SLACK_WEBHOOK_URL"] = slack.webhook_url
    elif slack is not None:
        env.update(SLACK_BOT_TOKEN=slack.token, SLACK_CHANNEL=CHANNEL, SLACK_API_URL=slack.api_url)
    return env


def store_counts(db: str) -> dict[str, Any]:
    """What the store holds, by plain SQL: posts per (source, post_id), events per alert, outbox states."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            posts = conn.execute(sa.text("SELECT source, post_id, COUNT(*) FROM posts GROUP BY source, post_id")).all()
            events = conn.execute(sa.text(
                "SELECT e.id, e.alert_id, e.event, a.kind, a.key FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
                "WHERE a.scope = 'live' ORDER BY e.id")).all()
            outbox = conn.execute(sa.text(
                "SELECT event_id, status FROM outbox WHERE notifier = 'slack' ORDER BY event_id")).all()
            alerts = conn.execute(sa.text("SELECT kind, key, status FROM alerts WHERE scope = 'live'")).all()
            unanalysed = conn.execute(sa.text(
                "SELECT COUNT(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM annotations a WHERE a.post_pk = p.id)"
            )).scalar_one()
    finally:
        engine.dispose()
    return {"posts": {(s, p): n for s, p, n in posts}, "events": [tuple(r) for r in events],
            "outbox": [tuple(r) for r in outbox], "alerts": [tuple(r) for r in alerts], "unanalysed": unanalysed}


def settled(db: str, served: int) -> bool:
    """Every served post stored and analysed, an alert planned, and the Slack outbox owes nothing."""
    try:
        counts = store_counts(db)
    except sa.exc.SQLAlchemyError:
        return False
    return len(counts["posts"]) >= served and counts["unanalysed"] == 0 and bool(counts["events"]) and \
        all(status != "pending" for _, status in counts["outbox"])


def wait_settled(db: str, served: int, timeout: float = 90) -> bool:
    """Settled, and still so with the same events two cycles later (a cycle may be between its analysis
    and its alerts). The timeout is generous for a loaded CI machine: this waits for a state, never
    asserts on a duration."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if settled(db, served):
            before = store_counts(db)["events"]
            time.sleep(2.5)
            if settled(db, served) and store_counts(db)["events"] == before:
                return True
        time.sleep(0.2)
    return False


def assert_exactly_once(db: str, served: list[dict[str, Any]], slack: KillingSlack, *,
                        webhook_window: int | None = None) -> dict[str, Any]:
    """Every served post stored once; every live alert event has one Slack outbox row, sent, and is in
    Slack exactly once (by the event id in the message metadata); no (kind, key) opened twice."""
    counts = store_counts(db)
    stored = counts["posts"]
    assert {("x", t["id"]) for t in served} == set(stored), "a served post is missing, or an unserved one stored"
    assert all(n == 1 for n in stored.values()), [k for k, n in stored.items() if n != 1]
    events = counts["events"]
    assert events, "the stream opened no alert: the test proves nothing"
    outbox = dict(Counter(event_id for event_id, _ in counts["outbox"]))
    assert all(n == 1 for n in outbox.values()), outbox
    assert {e[0] for e in events} == set(outbox), "an event without its Slack outbox row (or the reverse)"
    assert all(status == "sent" for _, status in counts["outbox"]), counts["outbox"]
    if webhook_window is None:
        in_slack = slack.event_ids()
        assert set(in_slack) == {e[0] for e in events}, (sorted(in_slack), [e[0] for e in events])
        twice = {k: n for k, n in in_slack.items() if n != 1}
        assert not twice, f"events in Slack more than once: {twice}"
    else:
        # A webhook message carries no key to look up: each event was accepted at least once, and a second
        # time only for a kill inside the documented window (after Slack accepted it, before the commit).
        accepted = sum(1 for call in slack.calls("webhook"))
        assert len(events) <= accepted <= len(events) + webhook_window, (accepted, len(events), webhook_window)
    opens = Counter((kind, key) for _, _, event, kind, key in events if event == "open")
    assert all(n == 1 for n in opens.values()), opens
    assert len(counts["alerts"]) == len({(k, key) for k, key, _ in counts["alerts"]}), counts["alerts"]
    return counts
