"""The counts series (`query --counts`, `/api/counts`, the dashboard) is the series the detector counted.

`monitor.research.count_series` reads one key's victim reports with a narrowed, column-only SQL load; the
detector reads every report of its window through the pipeline's `ReportWindow`. On a generated store with
repeat authors, two sources, reposts (by id and 「RT @…」 text), copypasta, several brokers and tickers per
post and an older model's annotations, both must give the same distinct-reporter count in every bucket, on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from monitor.analyze import ReportWindow, load_reports
from monitor.detect.counting import bucket_counts, bucket_index, reporter_groups
from monitor.detect.detector import Detector
from monitor.ingest import store_records
from monitor.records import parse_post
from monitor.research import count_series
from storage.database import session_scope
from storage.models import Annotation, Mention, Post

START = datetime(2025, 3, 19, 0, 0, tzinfo=UTC)
HOURS = 8
MODEL, OLD_MODEL = "victim-clf@2", "victim-clf@1"
BROKERS = ["楽天証券", "SBI証券", "マネックス証券"]
TICKERS = ["0700.HK", "7203.T"]
TEMPLATES = ["{b}で勝手に中国株を買われた。全部売られてた", "{b}の口座に知らない端末からログインされた", "身に覚えのない約定が{b}にある",
             "{b}のパスワードを変えられて出金された", "香港株を大量に買われた {b} 最悪"]
LABELS = ["victim_report"] * 6 + ["incident_discussion"] * 2 + ["irrelevant"]


def _generate(engine, n: int = 180, seed: int = 11) -> None:
    rng = random.Random(seed)
    records, analysis = [], []
    for i in range(n):
        broker_names = rng.sample(BROKERS, rng.choice([0, 1, 1, 1, 2]))
        tickers = rng.sample(TICKERS, rng.choice([0, 0, 1]))
        text = rng.choice(TEMPLATES).format(b=broker_names[0] if broker_names else "証券口座")
        text += "".join(f" {b}" for b in broker_names[1:])
        roll = rng.random()
        if roll < 0.3:
            pass  # copypasta: the template word for word
        elif roll < 0.5:
            text += "!!"  # a near copy
        else:
            text += f" {rng.choice(['本当に困った', 'みんなも気をつけて', 'どうしよう', 'サポートに電話した', '今朝'])}{i}"
        repost_of = None
        if rng.random() < 0.08:
            repost_of = str(rng.randrange(max(1, i)))
        elif rng.random() < 0.05:
            text = f"RT @h{rng.randrange(30)}: {text}"
        source = "bluesky" if rng.random() < 0.2 else "x"
        created = START + timedelta(seconds=rng.randrange(HOURS * 3600))
        if i % 37 == 0:
            created = START + timedelta(hours=rng.randrange(1, HOURS))  # exactly on a bucket boundary
        records.append(parse_post({
            "source": source, "id": str(i), "created_at": created.isoformat(), "author_id": f"u{rng.randrange(40)}",
            "text": text, "lang": "ja", "repost_of": repost_of,
        }))
        analysis.append((source, str(i), text, rng.choice(LABELS), rng.choice(LABELS), broker_names, tickers))
    with session_scope(engine) as session:
        store_records(session, records)
    with session_scope(engine) as session:
        pks = {(p.source, p.post_id): p.id for p in session.exec(select(Post)).all()}
        for model in (OLD_MODEL, MODEL):  # the older model's labels and mentions must never count
            for source, pid, text, label, old_label, broker_names, tickers in analysis:
                pk = pks[(source, pid)]
                ann = Annotation(post_pk=pk, label=label if model == MODEL else old_label, score=0.9, scores={},
                                 model=model, tokenizer="char-ngrams", dictionary="", analyzed_at=START)
                session.add(ann)
                session.flush()
                names = broker_names if model == MODEL else BROKERS[:1]
                for kind, values in (("broker", names), ("ticker", tickers)):
                    for value in values:
                        start = max(0, text.find(value))
                        session.add(Mention(annotation_id=ann.id, post_pk=pk, kind=kind, value=value,
                                            surface=value, start=start, end=start + len(value)))


class _Recording(Detector):
    """The detector, recording the distinct reporters it counted for each (key, closed bucket)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, str], dict[int, int]] = {}

    def _close_bucket(self, b, keyed, neighbours):  # type: ignore[no-untyped-def]
        start, end = b * self.bucket, (b + 1) * self.bucket
        for key, kr in keyed.items():
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            count = len(reporter_groups(kr.between(epoch + start, epoch + end, False), neighbours))
            if count:
                self.seen.setdefault(key, {})[b] = count
        super()._close_bucket(b, keyed, neighbours)


def test_counts_series_is_the_series_the_detector_counted(engine):
    _generate(engine)
    detector = _Recording()
    window = ReportWindow(MODEL, detector.lookback)
    now = START
    while now <= START + timedelta(hours=HOURS) + detector.bucket:
        with Session(engine) as session:
            detector.evaluate(now, window.refresh(session, now))
        now += detector.bucket
    keys = [("overall", "overall"), *(("broker", b) for b in BROKERS), *(("ticker", t) for t in TICKERS)]
    until = START + timedelta(hours=HOURS)
    with Session(engine) as session:
        for kind, value in keys:
            key = "overall" if kind == "overall" else f"{kind}:{value}"
            series = count_series(session, key, detector.bucket, START, until)
            got = {bucket_index(p.t, detector.bucket): p.count for p in series if p.count}
            assert got == detector.seen.get((kind, value), {}), key
        assert sum(detector.seen[("broker", "楽天証券")].values()) > 20  # the store is not trivially empty
        # The same holds for buckets longer than the detector's: counted by monitor.detect over every report.
        reports = load_reports(session, MODEL, START, until)
        hourly = bucket_counts([r for r in reports if r.created_at < until], timedelta(hours=1),
                               detector._dedup.neighbours([r.post_key for r in reports], [r.text for r in reports]))  # noqa: SLF001
        for kind, value in keys:
            key = "overall" if kind == "overall" else f"{kind}:{value}"
            series = count_series(session, key, timedelta(hours=1), START, until)
            assert {bucket_index(p.t, timedelta(hours=1)): p.count for p in series if p.count} == hourly[(kind, value)]
