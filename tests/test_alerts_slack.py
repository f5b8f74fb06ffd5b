"""Slack delivery through slack_sdk against a real loopback server speaking Slack's wire formats.

Outbox state lives in the real store (SQLite and PostgreSQL via ``engine``); the server records each
request so the tests assert on what Slack received and how often.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from slack_sdk.models.blocks import Block
from slack_server import Reply, SlackServer, api_error, html_500, rate_limited, webhook_errors
from sqlmodel import Session, select

from monitor.alerts import AlertsConfig, SlackConfig, build_notifiers, deliver_pending, process_signals
from monitor.alerts.render import enforce_limits, render_blocks
from monitor.errors import ConfigError
from monitor.events import AlertEvent, Signal
from storage.database import open_store, session_scope
from storage.models import Alert, OutboxItem, Post

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
CFG = AlertsConfig(group_wait_minutes=0, resolve_after_minutes=20, cooldown_minutes=30, max_attempts=4,
                   backoff_seconds=30, dashboard_url="https://monitor.example")


@pytest.fixture
def slack():
    with SlackServer() as server:
        yield server


def webhook(server: SlackServer, **kw) -> dict:
    return build_notifiers(CFG, SlackConfig(webhook_url=server.webhook_url, timeout_seconds=kw.pop("timeout", 5),
                                            **kw))


def bot(server: SlackServer, **kw) -> dict:
    return build_notifiers(CFG, SlackConfig(bot_token=server.token, channel="C-ALERTS", api_url=server.api_url, **kw))


def signal(key: str, at: datetime, *, count: int = 7, firing: bool = True, kind: str = "broker", **kw) -> Signal:
    return Signal(kind, key, at, timedelta(minutes=30), at - timedelta(minutes=30), count=count, expected=0.4,
                  score=12.3, firing=firing, first_seen=at - timedelta(minutes=9), **kw)


def plan(engine, now: datetime, signals: list[Signal], config: AlertsConfig = CFG) -> list[AlertEvent]:
    with session_scope(engine) as session:
        return process_signals(session, signals, now, config, ["slack"])


def add_posts(engine, n: int = 6, text: str = "楽天証券で勝手に中国株を買われた。ログイン履歴に知らない端末") -> list[str]:
    with session_scope(engine) as session:
        for i in range(n):
            session.add(Post(source="x", post_id=str(1000 + i), created_at=T0, author_id=str(i),
                             text=f"{text} #{i}", url=f"https://x.com/u{i}/status/{1000 + i}"))
    return [f"x:{1000 + i}" for i in range(n)]


def outbox(engine) -> list[OutboxItem]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxItem).order_by(OutboxItem.id)).all())


def validate(blocks: list[dict]) -> None:
    """slack_sdk's own Block Kit validators, plus the limits it does not check."""
    assert len(blocks) <= 50
    for block in blocks:
        Block.parse(block).validate_json()  # raises SlackObjectFormationError past a limit
        for field in block.get("fields", ()):
            assert len(field["text"]) <= 2000


# --- message content ------------------------------------------------------------------------------------


def test_webhook_message_carries_the_evidence(engine, slack) -> None:
    samples = add_posts(engine)
    events = plan(engine, T0, [signal("楽天証券", T0, tickers=("2269.HK", "0700.HK"), sample_post_ids=tuple(samples))])
    report = deliver_pending(engine, webhook(slack), T0, CFG)
    assert (report.sent, report.failed, events[0].event) == (1, 0, "open")
    [call] = slack.calls("webhook")
    assert call.headers["Content-Type"].startswith("application/json")
    payload = call.json
    blocks = payload["blocks"]
    validate(blocks)
    assert payload["text"].startswith("[OPEN] 楽天証券: 7 reporters (expected 0.4)")
    assert "楽天証券" in blocks[0]["text"]["text"] and blocks[0]["type"] == "header"
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "7 reporters (平常 expected 0.4)" in fields and "2269.HK, 0700.HK" in fields
    assert "30 min from 2025-03-19 14:30 JST (+09:00)" in fields and "2025-03-19 14:51 JST (+09:00)" in fields
    sample_blocks = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b
                     and b["text"]["text"].startswith("> ")]
    assert len(sample_blocks) == CFG.max_samples == 5
    assert sample_blocks[0] == "> 楽天証券で勝手に中国株を買われた。ログイン履歴に知らない端末 #0\n<https://x.com/i/web/status/1000|投稿を開く open post>"
    link = blocks[-1]["elements"][0]["text"]
    url = link[1:link.index("|")]
    query = parse_qs(urlparse(url).query)
    assert url.startswith("https://monitor.example/?") and query == {"broker": ["楽天証券"], "since": ["2025-03-19T05:30:00+00:00"]}
    assert outbox(engine)[0].status == "sent"


def test_block_kit_limits_hold_under_huge_inputs(engine, slack) -> None:
    samples = add_posts(engine, 10, text="不正ログイン<script>&" * 20000)
    tickers = tuple(f"{i:04d}.HK" for i in range(3000))
    huge = signal("楽天証券" * 100, T0, tickers=tickers, brokers=tuple(f"証券{i}" for i in range(2000)),
                  sample_post_ids=tuple(samples), explanation="x" * 50000, kind="overall")
    plan(engine, T0, [huge], AlertsConfig(group_wait_minutes=0, max_samples=10, sample_chars=100000))
    report = deliver_pending(engine, webhook(slack), T0, CFG)
    assert report.sent == 1
    payload = slack.calls("webhook")[0].json
    blocks = payload["blocks"]
    validate(blocks)
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    texts = [b["text"]["text"] for b in blocks if "text" in b] + [f["text"] for b in blocks for f in b.get("fields", ())]
    assert sum(map(len, texts)) <= 12000 and len(payload["text"]) <= 3000
    assert any(t.startswith("> 不正ログイン&lt;script&gt;&amp;") and t.endswith("…") for t in texts)


def test_enforce_limits_caps_block_count_and_keeps_the_dashboard_link() -> None:
    event = AlertEvent("open", "broker", "SBI証券", T0, T0, 3, 0.1, 6.0, extra={"posts": [{"key": "x:1", "text": "a"}]})
    blocks, _ = render_blocks(event, dashboard_url="https://m.example")
    many = blocks[:-1] + [blocks[2]] * 100 + blocks[-1:]
    out = enforce_limits(many)
    validate(out)
    assert len(out) == 50 and "dashboard" in out[-1]["elements"][0]["text"]
    assert "more blocks omitted" in out[-2]["elements"][0]["text"]


# --- exactly once across outages and restarts ----------------------------------------------------------


def test_exactly_once_across_a_slack_outage_and_a_restart(engine, db_url, slack, shared) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("webhook", html_500(shared), html_500(shared), Reply(503, "rollup_error"))
    now = T0
    report = deliver_pending(engine, webhook(slack), now, CFG)
    assert (report.sent, report.retrying) == (0, 1)
    assert report.errors == [f"slack event {outbox(engine)[0].event_id}: slack webhook: HTTP 500 HTML page "
                             "'Server Error | Slack'; Slack is failing, will retry"]
    item = outbox(engine)[0]
    assert item.next_attempt_at == now + timedelta(seconds=30) and item.attempts == 1
    assert deliver_pending(engine, webhook(slack), now + timedelta(seconds=10), CFG).waiting == 1  # not due
    assert len(slack.calls("webhook")) == 1
    now += timedelta(seconds=30)
    deliver_pending(engine, webhook(slack), now, CFG)
    # "restart": a fresh engine and fresh notifiers on the same database
    engine.dispose()
    engine2 = open_store(db_url)
    try:
        now += timedelta(seconds=60)
        assert deliver_pending(engine2, webhook(slack), now, CFG).retrying == 1  # the 503
        now += timedelta(seconds=120)
        assert deliver_pending(engine2, webhook(slack), now, CFG).sent == 1
        for later in range(3):
            assert deliver_pending(engine2, webhook(slack), now + timedelta(hours=later), CFG).sent == 0
        [item] = outbox(engine2)
    finally:
        engine2.dispose()
    assert (item.status, item.attempts, item.sent_at, item.last_error) == ("sent", 4, now, None)
    assert len(slack.calls("webhook")) == 4  # three failures, one success, nothing after


def test_retryable_failures_die_after_max_attempts(engine, slack, shared) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("webhook", *[html_500(shared)] * 10)
    now = T0
    for _ in range(8):
        deliver_pending(engine, webhook(slack), now, CFG)
        now += timedelta(hours=1)
    [item] = outbox(engine)
    assert item.status == "dead" and item.attempts == CFG.max_attempts == len(slack.calls("webhook"))
    assert item.last_error.startswith("gave up after 4 attempts: slack webhook: HTTP 500")


def test_short_retry_after_is_waited_out_in_place(engine, slack) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("webhook", rate_limited(0.3))
    report = deliver_pending(engine, webhook(slack), T0, CFG)
    first, second = slack.calls("webhook")
    assert report.sent == 1 and second.at - first.at >= 0.3
    assert first.body == second.body


def test_long_retry_after_is_left_for_a_later_attempt(engine, slack) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("webhook", rate_limited(120))
    report = deliver_pending(engine, webhook(slack, max_retry_wait_seconds=1), T0, CFG)
    assert report.retrying == 1 and "Retry-After 120s" in report.errors[0]
    assert outbox(engine)[0].next_attempt_at == T0 + timedelta(seconds=120)
    assert deliver_pending(engine, webhook(slack), T0 + timedelta(seconds=119), CFG).sent == 0
    assert deliver_pending(engine, webhook(slack), T0 + timedelta(seconds=120), CFG).sent == 1
    assert len(slack.calls("webhook")) == 2


def test_timeout_is_retried(engine, slack) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("webhook", Reply(delay=1.0))
    report = deliver_pending(engine, webhook(slack, timeout=0.3), T0, CFG)
    assert report.retrying == 1 and "no answer before the timeout" in report.errors[0]
    assert deliver_pending(engine, webhook(slack), T0 + timedelta(minutes=1), CFG).sent == 1


def test_real_webhook_errors_are_dead_at_once_with_one_clear_line(engine, slack, shared) -> None:
    errors = webhook_errors(shared)
    assert {e.body for e in errors} >= {"invalid_payload", "channel_not_found", "channel_is_archived"}
    errors.append(Reply(404, "no_service"))
    keys = [f"broker{i}" for i in range(len(errors))]
    plan(engine, T0, [signal(k, T0) for k in keys])
    slack.push("webhook", *errors)
    notifiers = webhook(slack)
    report = deliver_pending(engine, notifiers, T0, CFG)
    assert report.dead == len(errors) - 1  # rollup_error is a 500: retried, not dead
    assert deliver_pending(engine, notifiers, T0 + timedelta(days=1), CFG).sent == 1
    by_error = {i.last_error.split(": ")[1]: i for i in outbox(engine) if i.status == "dead"}
    line = by_error["HTTP 400 invalid_payload"].last_error
    assert line == ("slack webhook: HTTP 400 invalid_payload: Slack could not parse the message; "
                    "this is a bug in the renderer - please report it")
    assert "create a new one and set SLACK_WEBHOOK_URL" in by_error["HTTP 404 no_service"].last_error
    assert all("\n" not in i.last_error and slack.webhook_url not in i.last_error for i in outbox(engine) if i.last_error)
    assert len(slack.calls("webhook")) == len(errors) + 1  # dead items are never tried again


# --- bot token: threads and edits ----------------------------------------------------------------------


def test_bot_posts_open_then_threads_updates_and_edits_the_parent(engine, slack) -> None:
    add_posts(engine)
    notifiers = bot(slack, routes={"楽天証券": "C-RAKUTEN"})
    plan(engine, T0, [signal("楽天証券", T0, count=4, sample_post_ids=("x:1000",))])
    assert deliver_pending(engine, notifiers, T0, CFG).sent == 1
    [post] = slack.calls("chat.postMessage")
    assert post.headers["Authorization"] == f"Bearer {slack.token}"
    assert post.json["channel"] == "C-RAKUTEN" and "thread_ts" not in post.json
    with Session(engine) as session:
        alert = session.exec(select(Alert)).one()
    assert (alert.slack_channel, alert.slack_ts) == ("C-RAKUTEN", "1742367600.000001")
    plan(engine, T0 + STEP, [signal("楽天証券", T0 + STEP, count=9)])
    plan(engine, T0 + 6 * STEP, [])  # quiet for 25 min: resolves
    assert deliver_pending(engine, notifiers, T0 + 6 * STEP, CFG).sent == 2
    calls = [(c.endpoint, c.json.get("thread_ts"), c.json.get("ts")) for c in slack.calls()]
    parent = "1742367600.000001"
    assert calls == [("chat.postMessage", None, None),
                     ("chat.update", None, parent), ("chat.postMessage", parent, None),
                     ("chat.update", None, parent), ("chat.postMessage", parent, None)]
    resolve_reply = slack.calls("chat.postMessage")[-1].json
    assert resolve_reply["reply_broadcast"] is True and resolve_reply["text"].startswith("[RESOLVED] 楽天証券: 収束 resolved after")
    edited = slack.messages[("C-RAKUTEN", parent)]
    assert edited["text"].startswith("[RESOLVED]") and "収束 RESOLVED" in edited["blocks"][0]["text"]["text"]
    assert "peak 9 reporters" in edited["blocks"][0]["text"]["text"]  # the resolve says peak, not the surge
    assert "急増" not in resolve_reply["blocks"][0]["text"]["text"]


def test_bot_rate_limit_and_permanent_errors(engine, slack) -> None:
    notifiers = bot(slack)
    plan(engine, T0, [signal("楽天証券", T0), signal("SBI証券", T0)])
    slack.push("chat.postMessage", rate_limited(0.2, api=True), Reply(200, json.dumps({"ok": True, "channel": "C-ALERTS",
                                                                                       "ts": "1.2"})),
               api_error("not_in_channel"))
    report = deliver_pending(engine, notifiers, T0, CFG)
    assert (report.sent, report.dead) == (1, 1)
    dead = next(i for i in outbox(engine) if i.status == "dead")
    assert dead.last_error == ("slack chat.postMessage to C-ALERTS: not_in_channel: the bot is not in the channel; "
                               "invite it (/invite @your-bot) or fix [slack].routes")
    bad = build_notifiers(CFG, SlackConfig(bot_token="xoxb-wrong", channel="C-ALERTS", api_url=slack.api_url))
    plan(engine, T0 + STEP, [signal("松井証券", T0 + STEP)])
    report = deliver_pending(engine, bad, T0 + STEP, CFG)
    assert report.dead == 1 and "SLACK_BOT_TOKEN was rejected" in report.errors[0]
    assert "xoxb-wrong" not in report.errors[0]


def test_bot_500_html_is_retried(engine, slack, shared) -> None:
    plan(engine, T0, [signal("楽天証券", T0)])
    slack.push("chat.postMessage", html_500(shared))
    report = deliver_pending(engine, bot(slack), T0, CFG)
    assert report.retrying == 1 and "HTTP 500" in report.errors[0] and "will retry" in report.errors[0]
    assert deliver_pending(engine, bot(slack), T0 + timedelta(minutes=1), CFG).sent == 1


def test_build_notifiers_choices(slack, tmp_path) -> None:
    assert build_notifiers(CFG, SlackConfig()) == {}
    assert set(build_notifiers(CFG, SlackConfig(), terminal=None, jsonl_path=str(tmp_path / "a.jsonl"))) == {"jsonl"}
    assert type(webhook(slack)["slack"]).__name__ == "SlackWebhookNotifier"
    both = build_notifiers(CFG, SlackConfig(webhook_url=slack.webhook_url, bot_token="xoxb-1", channel="C1"))
    assert type(both["slack"]).__name__ == "SlackBotNotifier"
    with pytest.raises(ConfigError, match="SLACK_CHANNEL"):
        build_notifiers(CFG, SlackConfig(bot_token="xoxb-1"))


def test_a_claim_held_by_a_dead_process_is_sent_at_once(engine, slack) -> None:
    """A message claimed but unsent when its process was killed went out only after claim_seconds (302 s
    late on an incident page). A claim whose owner is gone is now taken over on the next call."""
    import subprocess
    import sys

    from monitor.alerts.outbox import _claim, claim_owner, owner_is_gone

    plan(engine, T0, [signal("楽天証券", T0)])
    [item] = outbox(engine)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead = claim_owner().rsplit("/", 1)[0] + "/" + child.stdout.strip()
    assert owner_is_gone(dead)
    assert _claim(engine, item.id, 0, T0, CFG)
    with session_scope(engine) as session:
        session.get(OutboxItem, item.id).claimed_by = dead
    # a live owner's claim is respected ...
    alive = claim_owner().rsplit("/", 1)[0] + f"/{os.getppid()}"
    with session_scope(engine) as session:
        session.get(OutboxItem, item.id).claimed_by = alive
    assert deliver_pending(engine, webhook(slack), T0 + timedelta(seconds=1), CFG).sent == 0
    # ... a dead one's is not
    with session_scope(engine) as session:
        session.get(OutboxItem, item.id).claimed_by = dead
    report = deliver_pending(engine, webhook(slack), T0 + timedelta(seconds=1), CFG)
    assert report.sent == 1 and len(slack.calls("webhook")) == 1
    [item] = outbox(engine)
    assert (item.status, item.attempts, item.claimed_by) == ("sent", 2, None)


def test_delivery_sends_only_the_outbox_of_its_scope(engine, slack) -> None:
    """A backtest's outbox (replay --notify) and the live bot's never deliver each other's messages."""
    with session_scope(engine) as session:
        process_signals(session, [signal("楽天証券", T0)], T0, CFG, ["slack"], "replay:abc#1")
    assert deliver_pending(engine, webhook(slack), T0, CFG).sent == 0  # the live bot's call
    assert deliver_pending(engine, webhook(slack), T0, CFG, "replay:abc#1").sent == 1
    assert len(slack.calls("webhook")) == 1


def test_bot_looks_up_a_message_sent_before_a_crash_instead_of_sending_it_twice(engine, slack) -> None:
    """With a slow Slack, 1 kill in 12 sent a message twice: Slack had accepted it, the process died before
    recording it as sent. Each message carries its event id in Slack metadata; a retry looks first."""

    def crash_after_send() -> None:  # the state a kill between Slack's answer and our commit leaves
        with session_scope(engine) as session:
            for item in session.exec(select(OutboxItem).where(OutboxItem.status == "sent")
                                     .order_by(OutboxItem.id.desc()).limit(1)).all():
                # pending again, its claim released (the dead owner's claim is taken over at once)
                item.status, item.sent_at, item.next_attempt_at = "pending", None, item.created_at
                session.add(item)

    plan(engine, T0, [signal("楽天証券", T0)])
    assert deliver_pending(engine, bot(slack), T0, CFG).sent == 1
    [opened] = slack.calls("chat.postMessage")
    assert opened.json["metadata"]["event_payload"]["event_id"] == outbox(engine)[0].event_id
    crash_after_send()
    with session_scope(engine) as session:  # nor was the thread recorded
        alert = session.exec(select(Alert)).one()
        thread = (alert.slack_channel, alert.slack_ts)
        alert.slack_channel = alert.slack_ts = None
        session.add(alert)
    assert deliver_pending(engine, bot(slack), T0, CFG).sent == 1
    assert len(slack.calls("chat.postMessage")) == 1 and len(slack.calls("conversations.history")) == 1
    with Session(engine) as session:
        alert = session.exec(select(Alert)).one()
        assert (alert.slack_channel, alert.slack_ts) == thread  # the thread found again
    # an update in the thread: same, through conversations.replies
    plan(engine, T0 + STEP, [signal("楽天証券", T0 + STEP, count=20)])
    assert deliver_pending(engine, bot(slack), T0 + STEP, CFG).sent == 1
    assert len(slack.calls("chat.postMessage")) == 2
    crash_after_send()
    assert deliver_pending(engine, bot(slack), T0 + STEP, CFG).sent == 1
    assert len(slack.calls("chat.postMessage")) == 2 and len(slack.calls("conversations.replies")) == 1
    # a first try never looks (nothing can have been sent before it)
    assert len(slack.calls("conversations.history")) == 1
