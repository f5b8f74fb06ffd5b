"""A small analysed store for the research tests (query, export, API, dashboard): posts stored through the
real ingest path, annotations and mentions written as the analyzer would store them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from monitor.ingest import store_records
from monitor.records import parse_post
from storage.database import session_scope
from storage.models import Annotation, Mention, Post

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)  # 15:00 JST on the incident day

# (id, minutes after T0, author, text, label, brokers with spans, tickers)
POSTS = [
    ("1", 0, "u1", "楽天証券で勝手に中国株を買われた", "victim_report", [("楽天証券", 0, 4)], []),
    ("2", 5, "u2", "身に覚えのない約定が楽天証券の口座にある", "victim_report", [("楽天証券", 10, 14)], []),
    ("3", 10, "u3", "株価が上がった。トヨタ(7203)を買い増し", "irrelevant", [], [("7203.T", 12, 16)]),
    ("4", 15, "u4", "ＳＢＩ証券にログインされて00700を買われた", "victim_report", [("SBI証券", 0, 5)], [("0700.HK", 13, 18)]),
    ("5", 20, "u5", "中国の話ではなく国株という言葉", "irrelevant", [], []),
    ("6", 25, "u1", "楽天証券 約定 約定 約定 通知が止まらない", "victim_report", [("楽天証券", 0, 4)], []),
    ("7", 30, "u6", "=HYPERLINK(\"http://evil\") 楽天証券の件、ニュースになってる", "incident_discussion", [("楽天証券", 26, 30)], []),
    ("8", 35, "u7", "Bluesky でも報告: 楽天証券で不正な約定", "victim_report", [("楽天証券", 14, 18)], []),
]


def post_json(pid: str, minutes: int, author: str, text: str) -> dict:
    source = "bluesky" if text.startswith("Bluesky") else "x"
    return {"source": source, "id": pid, "created_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "author_id": author, "author_handle": f"h_{author}", "text": text, "lang": "ja",
            "url": f"https://x.com/h_{author}/status/{pid}" if source == "x" else None}


def build_store(engine, model: str = "victim-clf@test") -> None:
    with session_scope(engine) as session:
        store_records(session, [parse_post(post_json(pid, m, a, t)) for pid, m, a, t, *_ in POSTS])
    with session_scope(engine) as session:
        for pid, _m, _a, _t, label, brokers, tickers in POSTS:
            post = session.exec(select(Post).where(Post.post_id == pid)).one()
            ann = Annotation(post_pk=post.id, label=label, score=0.9, scores={label: 0.9}, model=model,
                             tokenizer="char-ngrams", dictionary="sudachidict_core@test", analyzed_at=T0)
            session.add(ann)
            session.flush()
            for kind, items in (("broker", brokers), ("ticker", tickers)):
                for value, start, end in items:
                    session.add(Mention(annotation_id=ann.id, post_pk=post.id, kind=kind, value=value,
                                        surface=post.text[start:end], start=start, end=end,
                                        by="code" if kind == "ticker" else None))


def add_detector_state_and_alert(engine, scope: str = "replay") -> None:
    """The detector run over the fixture's reports (its state stored as the pipeline stores it) and one
    broker alert with its open and update events, in the alert-event contract shape."""
    from monitor.detect.detector import Detector
    from monitor.events import Report
    from storage.models import Alert, AlertEventRow, StateEntry

    reports = [Report(f"{post_json(pid, m, a, t)['source']}:{pid}", "x", f"x:{a}", T0 + timedelta(minutes=m),
                      label, t, tuple(b for b, *_ in brokers), tuple(c for c, *_ in tickers))
               for pid, m, a, t, label, brokers, tickers in POSTS]
    detector = Detector()
    now = T0 - timedelta(days=1)
    while now <= T0 + timedelta(hours=2):
        detector.evaluate(now, [r for r in reports if r.created_at <= now])
        now += timedelta(minutes=30)
    opened = T0 + timedelta(minutes=20)
    with session_scope(engine) as session:
        session.add(StateEntry(key=f"detector:{scope}", value=detector.to_state(), updated_at=T0))
        alert = Alert(fingerprint="broker:楽天証券", kind="broker", key="楽天証券", status="firing", first_seen=T0,
                      opened_at=opened, window_start=T0, count=3, max_count=4, expected=0.2, score=9.5,
                      tickers=[], sample_post_ids=["x:1", "x:2", "x:6"])
        session.add(alert)
        session.flush()
        for event, at, count in (("open", opened, 3), ("update", opened + timedelta(minutes=15), 4)):
            session.add(AlertEventRow(alert_id=alert.id, event=event, at=at, payload={
                "event": event, "kind": "broker", "key": "楽天証券", "at": at.isoformat(),
                "window_start": T0.isoformat(), "count": count, "expected": 0.2, "score": 9.5, "tickers": [],
                "sample_post_ids": ["x:1", "x:2", "x:6"]}))
