"""process_signals / deliver_pending against the real store, on SQLite and PostgreSQL (the ``engine`` fixture)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from monitor.alerts import AlertsConfig, JsonlNotifier, TerminalNotifier, deliver_pending, process_signals
from monitor.alerts.silences import create_silence, expire_silence
from monitor.events import AlertEvent, Signal
from storage.database import session_scope
from storage.models import Alert, AlertEventRow, OutboxItem, Post

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
CFG = AlertsConfig(group_wait_minutes=10, resolve_after_minutes=20, cooldown_minutes=30,
                   repeat_interval_minutes=120, dashboard_url="https://monitor.example")


def signal(kind: str, key: str, at: datetime, *, count: int = 5, firing: bool = True,
           samples: tuple[str, ...] = ("x:101", "x:102", "bluesky:abc"), **kw) -> Signal:
    return Signal(kind, key, at, timedelta(minutes=30), at - timedelta(minutes=30), count=count, expected=0.4,
                  score=11.5, firing=firing, sample_post_ids=samples, first_seen=at - timedelta(minutes=4), **kw)


def add_posts(engine) -> None:
    with session_scope(engine) as session:
        session.add(Post(source="x", post_id="101", created_at=T0, author_id="1", text="楽天証券で勝手に中国株を買われた\n最悪",
                         url="https://x.com/taro/status/101"))
        session.add(Post(source="x", post_id="102", created_at=T0, author_id="2", text="ログインされて保有株が全部売られてる"))
        session.add(Post(source="bluesky", post_id="abc", created_at=T0, author_id="3", text="SBIも？" * 200))


def cycle(engine, now: datetime, signals: list[Signal], notifiers=("slack", "jsonl"), config=CFG) -> list[AlertEvent]:
    with session_scope(engine) as session:
        return process_signals(session, signals, now, config, list(notifiers))


def run_open(engine, key: str = "楽天証券", **kw) -> list[AlertEvent]:
    events = []
    for i in range(3):
        events += cycle(engine, T0 + i * STEP, [signal("broker", key, T0 + i * STEP, **kw)])
    return events


def test_open_is_committed_with_its_outbox_rows_and_the_message_evidence(engine) -> None:
    add_posts(engine)
    events = run_open(engine, tickers=("2269.HK",))
    assert [e.event for e in events] == ["open"]
    event = events[0]
    assert event.at == T0 + 2 * STEP and event.count == 5 and event.tickers == ("2269.HK",)
    with Session(engine) as session:
        alert = session.exec(select(Alert)).one()
        row = session.exec(select(AlertEventRow)).one()
        outbox = session.exec(select(OutboxItem).order_by(OutboxItem.notifier)).all()
    assert (alert.status, alert.fingerprint, alert.opened_at) == ("firing", "broker:楽天証券", T0 + 2 * STEP)
    assert {k: v for k, v in row.payload.items() if k != "extra"} == event.to_json()
    posts = row.payload["extra"]["posts"]
    assert posts[0] == {"key": "x:101", "text": "楽天証券で勝手に中国株を買われた 最悪",
                        "url": "https://x.com/taro/status/101", "created_at": T0.isoformat()}
    assert posts[1]["url"] == "https://x.com/i/web/status/102"  # no stored URL: the canonical X link
    assert posts[2]["url"] is None and len(posts[2]["text"]) == CFG.sample_chars and posts[2]["text"].endswith("…")
    assert [o.notifier for o in outbox] == ["jsonl", "slack"]
    assert all(o.status == "pending" and o.event_id == row.id and o.next_attempt_at == event.at for o in outbox)
    assert event.extra["event_id"] == row.id and event.extra["alert_id"] == alert.id


def test_pending_survives_a_restart_and_a_flap_leaves_nothing(engine) -> None:
    cycle(engine, T0, [signal("broker", "SBI証券", T0)])
    with Session(engine) as session:
        assert session.exec(select(Alert.status)).all() == ["pending"]
    cycle(engine, T0 + STEP, [signal("broker", "SBI証券", T0 + STEP, firing=False)])
    for i in range(2, 12):
        assert cycle(engine, T0 + i * STEP, []) == []
    with Session(engine) as session:
        assert session.exec(select(Alert)).all() == []
        assert session.exec(select(OutboxItem)).all() == []


def test_one_open_alert_per_fingerprint_and_a_new_row_per_episode(engine) -> None:
    t, events = T0, []
    for burst in range(2):
        for _ in range(4):
            events += cycle(engine, t, [signal("broker", "楽天証券", t, count=5 + burst)])
            with Session(engine) as session:
                open_rows = session.exec(select(Alert).where(Alert.status.in_(("pending", "firing")))).all()
            assert len(open_rows) <= 1
            t += STEP
        t += timedelta(minutes=60)  # quiet long enough to resolve ...
        events += cycle(engine, t, [])
        t += CFG.cooldown  # ... and to pass the cooldown
    assert [e.event for e in events] == ["open", "resolve", "open", "resolve"]
    with Session(engine) as session:
        alerts = session.exec(select(Alert).order_by(Alert.id)).all()
        per_alert = {a.id: [r.event for r in session.exec(
            select(AlertEventRow).where(AlertEventRow.alert_id == a.id).order_by(AlertEventRow.id))] for a in alerts}
    assert [a.status for a in alerts] == ["resolved", "resolved"]
    assert list(per_alert.values()) == [["open", "resolve"], ["open", "resolve"]]


def test_silence_records_events_but_writes_no_outbox_rows_until_it_is_lifted(engine) -> None:
    with session_scope(engine) as session:
        silence_id = create_silence(session, kind="broker", key="楽天証券", duration=timedelta(hours=1), now=T0,
                                    comment="known incident, PR team already on it").id
    events = run_open(engine)
    assert [(e.event, e.extra["silenced"], e.extra["silence_id"]) for e in events] == [("open", True, silence_id)]
    with Session(engine) as session:
        assert session.exec(select(AlertEventRow)).one().payload["extra"]["silenced"] is True
        assert session.exec(select(OutboxItem)).all() == []
    with session_scope(engine) as session:
        expire_silence(session, silence_id, T0 + 3 * STEP)
    later = T0 + 3 * STEP
    events = cycle(engine, later, [signal("broker", "楽天証券", later, count=12)])
    assert [(e.event, e.extra["silenced"]) for e in events] == [("update", False)]
    with Session(engine) as session:
        assert len(session.exec(select(OutboxItem)).all()) == 2


def test_ticker_folded_into_open_broker_alert_owes_no_notification(engine) -> None:
    run_open(engine, tickers=("0700.HK",))
    t = T0 + 3 * STEP
    events = []
    for i in range(3):
        at = t + i * STEP
        events += cycle(engine, at, [signal("broker", "楽天証券", at, tickers=("0700.HK",)),
                                     signal("ticker", "2269.HK", at, brokers=("楽天証券",))])
    assert [(e.event, e.kind, e.extra["inhibited_by"]) for e in events] == [("open", "ticker", ["broker:楽天証券"])]
    with Session(engine) as session:
        broker = session.exec(select(Alert).where(Alert.kind == "broker")).one()
        ticker_event = session.exec(select(AlertEventRow).where(AlertEventRow.event == "open")
                                    .order_by(AlertEventRow.id.desc())).first()
        assert session.exec(select(OutboxItem).where(OutboxItem.event_id == ticker_event.id)).all() == []
    assert broker.tickers == ["0700.HK", "2269.HK"] and broker.extra["folded_tickers"] == ["2269.HK"]


def test_terminal_and_jsonl_get_each_event_exactly_once(engine, tmp_path) -> None:
    add_posts(engine)
    path = tmp_path / "alerts.jsonl"
    out = io.StringIO()
    notifiers = {"terminal": TerminalNotifier(out), "jsonl": JsonlNotifier(path)}
    events = run_open(engine, tickers=("2269.HK",))
    later = T0 + 3 * STEP
    events += cycle(engine, later, [signal("broker", "楽天証券", later, count=9)], notifiers=list(notifiers))
    events += cycle(engine, later + timedelta(minutes=40), [], notifiers=list(notifiers))
    for _ in range(2):  # a second pass finds nothing owed
        deliver_pending(engine, notifiers, later + timedelta(hours=1), CFG)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [e.to_json() for e in events]
    assert [line["event"] for line in lines] == ["open", "update", "resolve"]
    # the open was planned for slack and jsonl only: it owes the terminal nothing
    text = out.getvalue()
    assert "[OPEN]" not in text
    assert text.count("[UPDATE] 楽天証券: 9 reporters") == 1 and text.count("[RESOLVED] 楽天証券") == 1
    assert "https://x.com/i/web/status/101" in text  # canonical link, never the record's url
    with Session(engine) as session:
        statuses = session.exec(select(OutboxItem.notifier, OutboxItem.status)).all()
    assert sorted(statuses) == [("jsonl", "sent")] * 3 + [("slack", "pending")] + [("terminal", "sent")] * 2
