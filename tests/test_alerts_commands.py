"""`alerts list / show / silence / unsilence` through the real CLI entry point, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from monitor.alerts import AlertsConfig, process_signals
from monitor.cli import build_parser, main
from monitor.events import Signal
from storage.database import session_scope
from storage.models import OutboxItem, Silence


def test_help_of_every_alerts_command_ends_with_an_example() -> None:
    parser = build_parser()
    alerts = parser._subparsers._group_actions[0].choices["alerts"]
    commands = alerts._subparsers._group_actions[0].choices
    assert set(commands) == {"list", "show", "silence", "unsilence"}
    for sub in commands.values():
        assert sub.description.splitlines()[-1].startswith("Example: incident-monitor alerts ")


def test_silence_list_unsilence_round_trip(engine, db_url, capsys) -> None:
    assert main(["alerts", "silence", "--kind", "broker", "--key", "楽天証券", "--for", "2h",
                 "--comment", "statement already out", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("silence 1: broker 楽天証券 muted until ")
    with Session(engine) as session:
        silence = session.exec(select(Silence)).one()
    assert silence.expires_at - silence.created_at == timedelta(hours=2) and silence.comment == "statement already out"

    # while it is active, the pipeline records the alert but owes Slack nothing
    now = silence.created_at + timedelta(minutes=1)
    with session_scope(engine) as session:
        events = process_signals(session, [Signal("broker", "楽天証券", now, timedelta(minutes=15), now, 6, 0.2, 9.0,
                                                  True)], now, AlertsConfig(group_wait_minutes=0), ["slack"])
    assert events[0].extra["silenced"] is True
    with Session(engine) as session:
        assert session.exec(select(OutboxItem)).all() == []

    assert main(["alerts", "list", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "firing" in out and "楽天証券" in out and "active silences:" in out and "# statement already out" in out
    assert main(["alerts", "list", "--format", "json", "--status", "all", "--db", db_url]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind"], r["key"], r["status"], r["count"]) for r in rows] == [("broker", "楽天証券", "firing", 6)]

    assert main(["alerts", "unsilence", "1", "--db", db_url]) == 0
    assert capsys.readouterr().out == "silence 1 (broker 楽天証券) ended\n"
    with Session(engine) as session:
        assert session.exec(select(Silence)).one().expires_at <= datetime.now(UTC)
    assert main(["alerts", "list", "--db", db_url]) == 0
    assert "active silences" not in capsys.readouterr().out


def test_bad_input_is_one_clear_line(engine, db_url, capsys) -> None:
    assert main(["alerts", "unsilence", "42", "--db", db_url]) == 1
    err = capsys.readouterr().err
    assert err == "error: no silence with id 42: see the ids with `incident-monitor alerts list`\n"
    assert main(["alerts", "silence", "--key", "楽天証券", "--for", "forever", "--db", db_url]) == 1
    assert capsys.readouterr().err.startswith("error: duration 'forever' not understood")
    assert main(["alerts", "silence", "--key", " ", "--for", "1h", "--db", db_url]) == 1
    assert capsys.readouterr().err.startswith("error: silence key is empty")
    assert main(["alerts", "silence", "--key", "*", "--for", "365d", "--db", db_url]) == 1
    assert "at most 90 days" in capsys.readouterr().err


def _signal(key: str, at: datetime, count: int, firing: bool = True) -> Signal:
    return Signal("broker", key, at, timedelta(minutes=15), at - timedelta(minutes=15), count, 0.2, 9.0, firing)


def test_list_is_newest_opened_first_and_show_prints_one_alerts_events(engine, db_url, capsys) -> None:
    t0 = datetime(2025, 3, 19, 5, 0, tzinfo=UTC)
    cfg = AlertsConfig(group_wait_minutes=0, resolve_after_minutes=20)
    steps = [
        (t0, [_signal("楽天証券", t0, 3)]),
        (t0 + timedelta(minutes=10), [_signal("楽天証券", t0 + timedelta(minutes=10), 9)]),  # grew: update
        (t0 + timedelta(minutes=30), [_signal("SBI証券", t0 + timedelta(minutes=30), 1)]),  # opened later
        (t0 + timedelta(minutes=40), [_signal("SBI証券", t0 + timedelta(minutes=40), 1)]),  # 楽天証券 resolves
    ]
    for now, signals in steps:
        with session_scope(engine) as session:
            process_signals(session, signals, now, cfg, [])

    assert main(["alerts", "list", "--status", "all", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "reporters now/peak" in lines[0] and "opened" in lines[0] and "resolved" in lines[0]
    assert ["SBI証券" in lines[1], "楽天証券" in lines[2]] == [True, True]  # newest opened first
    assert "2025-03-19 14:00 JST (+09:00)" in lines[2] and "/9" in lines[2]

    assert main(["alerts", "show", "broker:楽天証券", "--db", db_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("alert ") and "broker:楽天証券 (resolved)" in out[0] and "peak 9 reporters" in out[0]
    rows = [line.split()[4] for line in out[2:]]  # date, time, JST, (+09:00), event
    assert rows == ["open", "update", "resolve"]
    assert out[2].startswith("2025-03-19 14:00 JST (+09:00)")

    assert main(["alerts", "show", "楽天証券", "--format", "json", "--db", db_url]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["open", "update", "resolve"] and events[1]["count"] == 9

    assert main(["alerts", "show", "broker:松井証券", "--db", db_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no alert 'broker:松井証券'" in err and "alerts list --status all" in err
