"""The whole pipeline - real NLP, detector and alert lifecycle - driven by replay in simulated time."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.cli import main
from monitor.commands.core import DEMO_STREAM
from storage.database import open_store, session_scope
from storage.models import Alert, AlertEventRow, OutboxItem, Post

SURGE_FROM = "2025-03-19T06:00:00+09:00"
SURGE_TO = "2025-03-19T20:00:00+09:00"


@pytest.fixture(scope="module")
def surge_slice(tmp_path_factory) -> Path:
    """The demo stream's incident day, with its background: enough to open, update and resolve."""
    lo, hi = datetime.fromisoformat(SURGE_FROM), datetime.fromisoformat(SURGE_TO)
    lines = [line for line in DEMO_STREAM.read_text(encoding="utf-8").splitlines()
             if lo <= datetime.fromisoformat(json.loads(line)["created_at"]) < hi]
    path = tmp_path_factory.mktemp("replay") / "surge.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _replay(path: Path, db: str, capsys) -> list[dict]:
    code = main(["replay", str(path), "--db", db, "--alerts-jsonl", "-"])
    out = capsys.readouterr().out
    assert code == 0
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_replay_opens_an_alert_for_the_surge_broker(surge_slice, sqlite_url, capsys):
    events = _replay(surge_slice, sqlite_url, capsys)
    opens = [e for e in events if e["event"] == "open"]
    assert any(e["kind"] == "broker" and e["key"] == "楽天証券" for e in opens), events
    broker_open = next(e for e in opens if e["kind"] == "broker" and e["key"] == "楽天証券")
    assert broker_open["count"] >= 3
    assert broker_open["expected"] < broker_open["count"]
    assert broker_open["sample_post_ids"] and all(k.startswith("x:") for k in broker_open["sample_post_ids"])
    assert set(broker_open) >= {"event", "kind", "key", "at", "window_start", "count", "expected", "score",
                                "tickers", "sample_post_ids"}
    # one open alert per (kind, key): no second open before a resolve
    state: dict[tuple[str, str], str] = {}
    for e in events:
        fp = (e["kind"], e["key"])
        if e["event"] == "open":
            assert state.get(fp) != "open", f"second open for {fp}"
        state[fp] = "open" if e["event"] in ("open", "update") else "resolved"


def test_sqlite_and_postgresql_give_the_same_alert_events(surge_slice, sqlite_url, pg_url, capsys):
    on_sqlite = _replay(surge_slice, sqlite_url, capsys)
    on_postgres = _replay(surge_slice, pg_url, capsys)
    assert on_sqlite == on_postgres
    assert on_sqlite


def test_replaying_twice_stores_no_duplicates(surge_slice, db_url, capsys):
    """A second replay of the same file says so in one line with the way out; --rerun backtests again
    over the stored posts in a scope of its own and gives the same events."""
    events = _replay(surge_slice, db_url, capsys)
    engine = open_store(db_url)
    with Session(engine) as s:
        first = s.exec(select(sa.func.count()).select_from(Post)).one()
    assert main(["replay", str(surge_slice), "--db", db_url, "--alerts-jsonl", "-"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a finished replay" in err[0], err
    assert "fresh --db" in err[0] and "--rerun" in err[0]
    code = main(["replay", str(surge_slice), "--db", db_url, "--alerts-jsonl", "-", "--rerun"])
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 0 and again == events
    with Session(engine) as s:
        assert s.exec(select(sa.func.count()).select_from(Post)).one() == first
        scopes = set(s.exec(select(Alert.scope)).all())
    engine.dispose()
    assert first == len(surge_slice.read_text(encoding="utf-8").splitlines())
    assert len(scopes) == 2 and all(sc.startswith("replay:") for sc in scopes)


def test_a_file_imported_before_is_not_replayed_without_rerun(surge_slice, sqlite_url, capsys):
    assert main(["import", str(surge_slice), "--db", sqlite_url]) == 0
    capsys.readouterr()
    assert main(["replay", str(surge_slice), "--db", sqlite_url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already stored here" in err[0] and "--rerun" in err[0], err


def _live_alert(engine) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Rows of the live scope: alerts, their events, their outbox items (everything a replay must not touch)."""
    with Session(engine) as s:
        alerts = [(a.id, a.status, a.count, a.updated_at, a.resolved_at, a.extra)
                  for a in s.exec(select(Alert).where(Alert.scope == "live").order_by(Alert.id)).all()]
        ids = [a[0] for a in alerts]
        events = [(e.id, e.event, e.at, e.payload) for e in s.exec(
            select(AlertEventRow).where(AlertEventRow.alert_id.in_(ids)).order_by(AlertEventRow.id)).all()]
        outbox = [(o.id, o.status, o.attempts, o.next_attempt_at) for o in s.exec(
            select(OutboxItem).where(OutboxItem.event_id.in_([e[0] for e in events])).order_by(OutboxItem.id)).all()]
    return alerts, events, outbox


def test_a_replay_leaves_a_firing_live_alert_and_its_events_untouched(surge_slice, db_url, capsys):
    """Issue 8 item 4: a backtest into the live store must neither resolve, update nor page the live alert
    (before scopes, the replay's planner loaded the live episode and resolved it in simulated time)."""
    from datetime import timedelta

    from monitor.alerts import AlertsConfig, process_signals
    from monitor.events import Signal

    engine = open_store(db_url)
    config = AlertsConfig(group_wait_minutes=0)
    now = datetime.fromisoformat("2025-03-19T12:00:00+09:00")  # inside the replayed surge
    with session_scope(engine) as session:
        sig = Signal("broker", "楽天証券", now, timedelta(minutes=30), now - timedelta(minutes=30), count=6,
                     expected=0.2, score=9.0, firing=True)
        opened = process_signals(session, [sig], now, config, ["slack"])
    assert [e.event for e in opened] == ["open"]
    before = _live_alert(engine)
    assert before[0][0][1] == "firing" and len(before[2]) == 1

    events = _replay(surge_slice, db_url, capsys)
    assert any(e["event"] == "open" and e["key"] == "楽天証券" for e in events)  # the replay has its own
    assert _live_alert(engine) == before
    with Session(engine) as s:
        replayed = s.exec(select(Alert).where(Alert.scope != "live")).all()
    assert replayed and all(a.scope.startswith("replay:") for a in replayed)
    engine.dispose()


def test_a_killed_replay_resumes_from_its_clock_and_never_reopens(surge_slice, sqlite_url, capsys):
    """Re-running a killed replay used to restart the clock: alerts resolved before they opened and opened
    again. Now it resumes at the stored clock, and the events of both runs add up to one clean run."""
    from monitor.pipeline import open_pipeline

    clean = _replay(surge_slice, f"sqlite:///{Path(sqlite_url[10:]).with_name('clean.sqlite')}", capsys)
    opens_at = min(e["at"] for e in clean if e["event"] == "open")

    class Killed(Exception):
        pass

    def kill_after_first_open(cycle) -> None:
        if any(e.event == "open" for e in cycle.events):
            raise Killed

    first: list[dict] = []
    pipeline = open_pipeline(sqlite_url, event_sinks=[lambda e: first.append(json.loads(json.dumps(e.to_json())))],
                             scope="replay")
    with pytest.raises(Killed):
        pipeline.replay(surge_slice, on_cycle=kill_after_first_open)
    assert first and max(e["at"] for e in first) == opens_at
    pipeline.engine.dispose()
    rest = _replay(surge_slice, sqlite_url, capsys)
    combined = first + [e for e in rest if e not in first]
    assert combined == clean
    assert sum(e["event"] == "open" for e in first + rest) == sum(e["event"] == "open" for e in clean)


def test_a_replay_killed_between_state_saves_catches_up_to_the_same_events(surge_slice, sqlite_url, capsys):
    """A replay stores its detector state once per hour of stream time; killed some cycles after a save, it
    re-runs detection from the stored state to its clock (alerting nothing) and then goes on as one clean
    run would have."""
    from monitor.pipeline import REPLAY_STATE_EVERY, ReplayRun, open_pipeline

    clean = _replay(surge_slice, f"sqlite:///{Path(sqlite_url[10:]).with_name('clean.sqlite')}", capsys)
    opens_at = min(e["at"] for e in clean if e["event"] == "open")

    class Killed(Exception):
        pass

    seen = {"after_open": 0}

    def kill_a_while_after_the_first_open(cycle) -> None:
        if seen["after_open"] or any(e.event == "open" for e in cycle.events):
            seen["after_open"] += 1
        if seen["after_open"] == 8:  # mid-hour: the stored state is older than the clock
            raise Killed

    first: list[dict] = []
    pipeline = open_pipeline(sqlite_url, event_sinks=[lambda e: first.append(json.loads(json.dumps(e.to_json())))],
                             scope="replay")
    with pytest.raises(Killed):
        pipeline.replay(surge_slice, on_cycle=kill_a_while_after_the_first_open)
    assert first and min(e["at"] for e in first if e["event"] == "open") == opens_at
    import hashlib

    run = ReplayRun.load(pipeline.engine, hashlib.sha256(surge_slice.read_bytes()).hexdigest())
    assert run is not None and run.clock is not None and run.state_clock is not None
    assert run.state_clock < run.clock and run.clock - run.state_clock < REPLAY_STATE_EVERY  # a catch-up is due
    pipeline.engine.dispose()
    rest = _replay(surge_slice, sqlite_url, capsys)
    combined = first + [e for e in rest if e not in first]
    assert combined == clean


def test_two_replays_into_one_store_get_a_clear_error(surge_slice, db_url, capsys):
    from storage.locks import acquire

    engine = open_store(db_url)
    other = acquire(engine, "replay")  # a replay in progress elsewhere
    assert other is not None
    try:
        assert main(["replay", str(surge_slice), "--db", db_url]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another replay is running against this store" in err[0], err
    finally:
        other.release()
    assert main(["replay", str(surge_slice), "--db", db_url]) == 0
    engine.dispose()


def test_replay_reports_bad_lines_and_keeps_going(surge_slice, sqlite_url, tmp_path, capsys):
    lines = surge_slice.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    bad = json.loads(lines[5])
    bad["created_at"] = "yesterday"
    broken.write_text("\n".join([*lines[:5], json.dumps(bad), '{"source": "x"', *lines[5:]]) + "\n", encoding="utf-8")
    code = main(["replay", str(broken), "--db", sqlite_url, "--alerts-jsonl", "-"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{broken}:6: created_at 'yesterday' is not an ISO 8601 timestamp" in captured.err
    assert f"{broken}:7: not valid JSON" in captured.err
    assert any(json.loads(x)["event"] == "open" for x in captured.out.splitlines())


@pytest.mark.slow
def test_demo_prints_its_alerts_and_posts_them_to_slack(tmp_path, capsys, monkeypatch):
    """`make demo` end to end: the surge pages once on the terminal and on a (loopback) Slack webhook,
    updates follow, and the decoys - a news day and a login outage at SBI証券, a viral retweet - stay quiet."""
    from slack_server import SlackServer

    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    events = tmp_path / "events.jsonl"
    with SlackServer() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        code = main(["demo", "--db", f"sqlite:///{tmp_path / 'demo.sqlite'}", "--alerts-jsonl", str(events)])
        posted = [call.json for call in slack.calls("webhook")]
    out = capsys.readouterr().out
    assert code == 0
    assert "== Demo summary ==" in out and "sent to Slack" in out
    summary = out.split("== Demo summary ==")[1]
    assert " JST (+09:00)  open " in summary  # the one time style of messages and `alerts list`
    rows = [json.loads(x) for x in events.read_text(encoding="utf-8").splitlines()]
    opened = {(e["kind"], e["key"]) for e in rows if e["event"] == "open"}
    assert ("broker", "楽天証券") in opened
    assert not any(key == "SBI証券" for _, key in opened)
    paged = [e for e in rows if e.get("notified")]
    assert len(posted) == len(paged) >= 2  # exactly one Slack message per notified event
    first = json.dumps(posted[0], ensure_ascii=False)
    assert "楽天証券" in first and "https://x.com/" in first

    # the commands the summary suggests work as printed (with no pseudonym key set)
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    suggested = [line.strip().split()[1:] for line in summary.split("Explore it")[1].splitlines()
                 if line.strip().startswith("incident-monitor ")]
    assert len(suggested) == 2
    for argv in suggested:
        assert main(argv) == 0, argv
        assert capsys.readouterr().out.strip()


def test_report_window_equals_a_fresh_query_while_posts_are_annotated(surge_slice, sqlite_url):
    """The in-memory window topped up by annotation id must see exactly what a full query sees."""
    from datetime import timedelta

    from monitor.analyze import ReportWindow, analyze_pending, load_analyzer, load_reports
    from monitor.ingest import import_file

    engine = open_store(sqlite_url)
    import_file(engine, surge_slice)
    analyzer = load_analyzer(None)
    lookback = timedelta(hours=6, minutes=5)
    window = ReportWindow(analyzer.model_version, lookback)
    now = datetime.fromisoformat("2025-03-19T12:00:00+09:00")
    seen_any = False
    while now <= datetime.fromisoformat(SURGE_TO):
        analyze_pending(engine, analyzer, batch=40, limit=40)  # annotation trickles in, as in the live bot
        with Session(engine) as session:
            cached = window.refresh(session, now)
            fresh = load_reports(session, analyzer.model_version, now - lookback, now)
        assert [r.post_key for r in cached] == [r.post_key for r in fresh]
        seen_any = seen_any or bool(fresh)
        now += timedelta(minutes=20)
    assert seen_any


def test_a_restarted_bot_keeps_its_detector_baseline(surge_slice, sqlite_url):
    """The live pipeline stores its detector state each cycle; a new process resumes from it."""
    from datetime import timedelta

    from monitor.ingest import import_file
    from monitor.pipeline import Pipeline
    from monitor.settings import load_settings

    settings = load_settings(env={})
    engine = open_store(sqlite_url)
    import_file(engine, surge_slice)
    first = Pipeline(engine, settings)
    now = datetime.fromisoformat("2025-03-19T08:00:00+09:00")
    for _ in range(6):
        first.run_cycle(now)
        now += timedelta(minutes=5)
    restarted = Pipeline(engine, settings, analyzer=first.analyzer)
    assert restarted.detector.to_state() == first.detector.to_state()
    assert restarted.detector.to_state()["last_closed"] is not None
    # and it carries on from there: the next cycle gives the same signals in both
    assert restarted.run_cycle(now).signals == first.detect(now)


def test_detector_state_is_written_once_per_bucket(surge_slice, sqlite_url):
    """The whole detector state was serialised and rewritten every cycle; it changes only when a bucket
    closes, so a cycle every minute writes it once per 5-minute bucket."""
    from datetime import timedelta

    from monitor.ingest import import_file
    from monitor.pipeline import Pipeline
    from monitor.settings import load_settings
    from storage.models import StateEntry

    engine = open_store(sqlite_url)
    import_file(engine, surge_slice)
    pipeline = Pipeline(engine, load_settings(env={}))
    start = datetime.fromisoformat("2025-03-19T08:00:00+09:00")
    stamps = []
    for minute in range(10):
        pipeline.run_cycle(start + timedelta(minutes=minute))
        with Session(engine) as s:
            stamps.append(s.get(StateEntry, "detector:live").updated_at)
    assert stamps[:5] == [start] * 5
    assert stamps[5:] == [start + timedelta(minutes=5)] * 5


def test_a_text_style_repost_of_a_victim_report_keeps_the_label_but_is_never_a_reporter(sqlite_url, tmp_path):
    from monitor.analyze import analyze_pending, load_analyzer, load_reports
    from monitor.detect.counting import counts_as_reporter
    from monitor.ingest import import_file

    victim = "楽天証券で寝てる間に持ち株を全部売られて、知らない香港株を買われてた。電話もつながらない"
    rows = [
        {"id": "1", "source": "x", "created_at": "2025-03-19T10:00:00+09:00", "author_id": "a", "text": victim},
        {"id": "2", "source": "x", "created_at": "2025-03-19T10:05:00+09:00", "author_id": "b",
         "text": f"RT @a_handle: {victim}"},
    ]  # fmt: skip
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    engine = open_store(sqlite_url)
    import_file(engine, path)
    analyzer = load_analyzer(None)
    analyze_pending(engine, analyzer)
    with Session(engine) as session:
        reports = {r.post_key: r for r in load_reports(session, analyzer.model_version)}
    assert reports["x:1"].label == reports["x:2"].label == "victim_report"
    assert reports["x:2"].is_repost and not counts_as_reporter(reports["x:2"]) and counts_as_reporter(reports["x:1"])


def test_annotations_name_the_model_tokenizer_and_dictionary_that_ran(surge_slice, db_url, capsys):
    """Provenance on SQLite and PostgreSQL: every stored annotation names its model and the tokenizer of the
    model that ran first; the Sudachi dictionary only for the posts Sudachi read."""
    from nlp.tokenize import DICTIONARY_VERSION
    from storage.models import Annotation

    _replay(surge_slice, db_url, capsys)
    engine = open_store(db_url)
    with Session(engine) as s:
        rows = s.exec(select(Annotation.model, Annotation.tokenizer, Annotation.dictionary)).all()
    engine.dispose()
    assert rows
    assert {tokenizer for _, tokenizer, _ in rows} == {"char-ngrams"}  # the shipped cascade's first stage
    assert all(model.startswith("victim-clf@") for model, _, _ in rows)
    assert {dictionary for _, _, dictionary in rows} <= {"", DICTIONARY_VERSION}
