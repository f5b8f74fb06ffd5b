"""Synthetic report streams for benchmarking and testing the detector (seeded: every run sees one stream).

Each scenario is eight simulated days of background - incident discussion with a daily rhythm and a few
sporadic victim reports - plus one situation: a sudden surge, a slow build, one report reposted by hundreds
(and pasted by dozens), an outage complaint storm, a news day, a ticker cluster. Two more replay the shapes
of issue #8 on eleven days of background: a sparse surge (first-hand reports at minutes 0, 14, 25, 35, 44,
53, 59, 66, 70, ... at a broker with two reports in the previous eleven days) and a sparse slow build (one
report every 20-35 minutes for ten hours at a broker that saw about one every four days).
``incident_keys`` are the keys where an alert is right; an alert on any other key is a false alert.

Benchmark-only code: the runtime package never imports it (tests import it from ``benchmarks``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from monitor.detect.counting import DISCUSSION, VICTIM, KeyId, report_keys
from monitor.events import Report

JST = timezone(timedelta(hours=9))
START = datetime(2025, 3, 10, 0, 0, tzinfo=JST)
DAYS = 8
BROKERS = [
    "楽天証券",
    "SBI証券",
    "マネックス証券",
    "松井証券",
    "三菱UFJ eスマート証券",
    "SMBC日興証券",
    "野村證券",
]
BROKER_WEIGHTS = [5, 5, 2, 1, 1, 1, 1]
TICKERS = ["2269.HK", "0700.HK", "1810.HK", "9988.HK", "600519.SS", "7203.T"]

_OPEN = [
    "朝起きたら",
    "さっきログインしたら",
    "昼休みに確認したら",
    "通知が来て見たら",
    "夜アプリを開いたら",
    "週明けに見たら",
    "妻の口座を見たら",
    "仕事終わりに確認したら",
    "取引履歴を見たら",
    "メールが来たので確認したら",
]
_WHAT = [
    "保有株が全部売られていた",
    "知らない中国株が買われていた",
    "身に覚えのない注文が入っていた",
    "パスワードが勝手に変更されていた",
    "登録メールアドレスが変わっていた",
    "米国株が売却されて香港株に変わっていた",
    "預り金がほぼゼロになっていた",
    "知らない端末からのログイン履歴があった",
    "信用取引で見知らぬ銘柄を買われていた",
    "投資信託が解約されていた",
]
_AFTER = [
    "コールセンターに電話中",
    "警察に相談する",
    "手が震えてる",
    "被害額は数百万",
    "サポートに連絡がつかない",
    "二段階認証はしていなかった",
    "同じ人いますか",
    "本当に最悪",
    "とりあえず口座をロックした",
    "怖すぎる",
]
_TALK = [
    "不正アクセスのニュース見た",
    "フィッシングメールに注意",
    "対応が遅すぎる",
    "二段階認証を設定しよう",
    "被害が広がってるらしい",
    "公式から注意喚起が出た",
    "パスキーにした方がいい",
    "補償はどうなるんだろう",
    "また乗っ取りの話",
    "記事になってる",
]


@dataclass
class Scenario:
    name: str
    description: str
    reports: list[Report]
    incident_keys: set[KeyId] = field(default_factory=set)
    primary: KeyId | None = None  # the key whose alert delay is measured
    incident_start: datetime | None = None  # first report of the incident
    start: datetime = START
    end: datetime = START + timedelta(days=DAYS)

    @property
    def weeks(self) -> float:
        return (self.end - self.start).total_seconds() / (7 * 86400)


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def post(
        self,
        t: datetime,
        label: str,
        brokers: tuple[str, ...] = (),
        tickers: tuple[str, ...] = (),
        *,
        author: str | None = None,
        text: str | None = None,
        repost_of: str | None = None,
    ) -> Report:
        self.n += 1
        source = self.rng.choice(["x", "x", "x", "bluesky", "reddit"])
        pid = f"{source}:{1900000000000000000 + self.n}"
        who = author or f"{source}:u{self.rng.randrange(10**9)}"
        body = text if text is not None else self.text(label, brokers, tickers)
        return Report(
            pid, source, who, t, label, body, brokers, tickers, repost_of, f"https://example.org/{self.n}"
        )

    def text(self, label: str, brokers: tuple[str, ...], tickers: tuple[str, ...]) -> str:
        r = self.rng
        name = brokers[0] if brokers else "証券口座"
        code = f" {tickers[0]}" if tickers else ""
        if label == VICTIM:
            return (
                f"{r.choice(_OPEN)}{name}で{r.choice(_WHAT)}{code}。{r.choice(_AFTER)} #{r.randrange(10**6)}"
            )
        return f"{name}{code}の件、{r.choice(_TALK)}。{r.choice(_TALK)} ({r.randrange(10**6)})"

    def broker(self) -> str:
        return self.rng.choices(BROKERS, BROKER_WEIGHTS)[0]


def _diurnal(t: datetime) -> float:
    """Relative activity by hour of day in Japan: low at 4 am, high around 10 pm."""
    h = t.astimezone(JST).hour + t.minute / 60
    return 0.25 + 0.75 * (0.5 - 0.5 * math.cos((h - 4) / 24 * 2 * math.pi)) ** 2 * 2


def background(
    gen: _Gen, discussion_per_day: float = 120, victims_per_day: float = 3, days: float = DAYS
) -> list[Report]:
    """Discussion with a daily rhythm and sporadic victim reports at random brokers."""
    out = []
    t = START
    step = timedelta(minutes=5)
    while t < START + timedelta(days=days):
        f = _diurnal(t)
        for _ in range(_poisson(gen.rng, discussion_per_day / 288 * f)):
            b = gen.broker()
            tick = (gen.rng.choice(TICKERS),) if gen.rng.random() < 0.1 else ()
            out.append(gen.post(t + gen.rng.random() * step, DISCUSSION, (b,), tick))
        for _ in range(_poisson(gen.rng, victims_per_day / 288 * f)):
            b = gen.broker()
            tick = (gen.rng.choice(TICKERS),) if gen.rng.random() < 0.3 else ()
            out.append(gen.post(t + gen.rng.random() * step, VICTIM, (b,), tick))
        t += step
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


INCIDENT_AT = START + timedelta(days=6, hours=14)


def sudden_surge(seed: int = 1) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    inc = []
    for i in range(12):
        t = INCIDENT_AT + timedelta(minutes=40 * (i / 12) ** 1.5 + g.rng.random())
        tick = (g.rng.choice(TICKERS[:3]),) if g.rng.random() < 0.5 else ()
        inc.append(g.post(t, VICTIM, ("楽天証券",), tick))
    return _scenario(
        "sudden surge", "12 victims at one broker within 40 min", reports, inc, ("broker", "楽天証券")
    )


def slow_build(seed: int = 2) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    inc = []
    for i in range(15):
        t = INCIDENT_AT + timedelta(hours=12 * math.sqrt((i + g.rng.random()) / 15))
        inc.append(g.post(t, VICTIM, ("SBI証券",)))
    return _scenario(
        "slow build", "15 victims at one broker over 12 h, accelerating", reports, inc, ("broker", "SBI証券")
    )


def viral_repost(seed: int = 3) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    original = g.post(INCIDENT_AT, VICTIM, ("マネックス証券",), ("1810.HK",))
    noise = [original]
    for _ in range(300):
        t = INCIDENT_AT + timedelta(minutes=180 * g.rng.random() ** 2)
        noise.append(g.post(t, VICTIM, original.brokers, original.tickers, repost_of=original.post_key))
    for i in range(40):  # copypasta: the same text pasted by other accounts, with small edits
        t = INCIDENT_AT + timedelta(minutes=5 + 120 * g.rng.random())
        noise.append(
            g.post(t, VICTIM, original.brokers, original.tickers, text=original.text + "!!"[: i % 3])
        )
    return _scenario(
        "viral repost", "one report reposted 300 times and pasted by 40 accounts", reports + noise, []
    )


def outage_storm(seed: int = 4) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    for i in range(500):  # irrelevant complaints never reach the detector; a few are mislabelled
        t = INCIDENT_AT + timedelta(minutes=120 * g.rng.random())
        label = VICTIM if i < 2 else ("irrelevant" if i % 10 else DISCUSSION)
        reports.append(
            g.post(t, label, ("楽天証券",), text=f"楽天証券アプリ落ちてる？ログインできない {g.rng.random()}")
        )
    return _scenario(
        "outage storm", "500 outage complaints at one broker in 2 h (2 mislabelled as victims)", reports, []
    )


def news_day(seed: int = 5) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    for _ in range(400):
        t = INCIDENT_AT - timedelta(hours=6) + timedelta(hours=18 * g.rng.random())
        reports.append(g.post(t, DISCUSSION, ("SBI証券",)))
    return _scenario("news day", "400 discussion posts about one broker in 18 h, no victims", reports, [])


def ticker_cluster(seed: int = 6) -> Scenario:
    g = _Gen(seed)
    reports = background(g)
    inc = []
    for i in range(5):
        t = INCIDENT_AT + timedelta(minutes=45 * i + 10 * g.rng.random())
        inc.append(g.post(t, VICTIM, (BROKERS[i % 3],), ("2269.HK",)))
    scen = _scenario(
        "ticker cluster",
        "5 victims at 3 brokers name one ticker over 3 h",
        reports,
        inc,
        ("ticker", "2269.HK"),
    )
    scen.incident_keys = {
        ("ticker", "2269.HK"),
        ("overall", "overall"),
    }  # 1-2 reports per broker is no broker incident
    return scen


def _scenario(
    name: str, description: str, reports: list[Report], incident: list[Report], primary: KeyId | None = None
) -> Scenario:
    keys: set[KeyId] = set()
    for r in incident:
        keys.update(report_keys(r))
    return Scenario(
        name,
        description,
        sorted(reports + incident, key=lambda r: (r.created_at, r.post_key)),
        keys,
        primary,
        min((r.created_at for r in incident), default=None),
    )


# ------------------------------------------------------------------ the two shapes of issue #8
HISTORY_DAYS = 11  # days of history before the incident
# first-hand reports at one broker, minutes after the first, as the issue lists them (then it goes on)
SURGE_MINUTES = (0, 14, 25, 35, 44, 53, 59, 66, 70, 78, 83, 91, 97, 104, 112, 118, 131, 140, 152, 167)


def _quiet_broker(reports: list[Report], broker: str, keep: int, g: _Gen, days: float) -> list[Report]:
    """Drop the background's victim reports at ``broker`` and put back exactly ``keep`` of them, spread over
    the history, so the broker's baseline is the issue's (2 in 11 days, or one every four days)."""
    out = [r for r in reports if not (r.label == VICTIM and broker in r.brokers)]
    for i in range(keep):
        t = START + timedelta(days=days * (i + 0.5) / keep, minutes=g.rng.randrange(600))
        out.append(g.post(t, VICTIM, (broker,)))
    return out


def sparse_surge(seed: int = 7, history_days: int = HISTORY_DAYS) -> Scenario:
    """Issue #8's surge: distinct first-hand reporters at :data:`SURGE_MINUTES` after 2 reports in 11 days."""
    g = _Gen(seed)
    broker = "松井証券"
    at = START + timedelta(days=history_days, hours=14)
    reports = _quiet_broker(background(g, days=history_days + 1), broker, 2, g, history_days)
    inc = [
        g.post(at + timedelta(minutes=m, seconds=g.rng.randrange(50)), VICTIM, (broker,))
        for m in SURGE_MINUTES
    ]
    scen = _scenario(
        "sparse surge",
        "reports at min 0,14,25,35,44,... after 2 in 11 days",
        reports,
        inc,
        ("broker", broker),
    )
    scen.end = START + timedelta(days=history_days + 1)
    return scen


def sparse_slow_build(seed: int = 8, history_days: int = HISTORY_DAYS) -> Scenario:
    """Issue #8's slow build: one report every 20-35 min for 10 h, against about one every four days."""
    g = _Gen(seed)
    broker = "SMBC日興証券"
    at = START + timedelta(days=history_days, hours=14)
    reports = _quiet_broker(
        background(g, days=history_days + 1), broker, max(1, history_days // 4), g, history_days
    )
    inc = []
    t = at
    while t < at + timedelta(hours=10):
        inc.append(g.post(t, VICTIM, (broker,)))
        t += timedelta(minutes=20 + 15 * g.rng.random())
    scen = _scenario(
        "slow build 10h",
        "1 report every 20-35 min for 10 h vs ~1 per 4 days",
        reports,
        inc,
        ("broker", broker),
    )
    scen.end = START + timedelta(days=history_days + 1)
    return scen


def all_scenarios() -> list[Scenario]:
    return [
        sudden_surge(),
        slow_build(),
        sparse_surge(),
        sparse_slow_build(),
        viral_repost(),
        outage_storm(),
        news_day(),
        ticker_cluster(),
    ]


def post_records(scen: Scenario) -> list[dict]:
    """The scenario as DESIGN.md Post records (what ``replay`` reads), for runs through the real pipeline:
    the analyzer labels the texts itself. Every post is written as an X post (the ids are X-like)."""
    out = []
    for r in scen.reports:
        pid = r.post_key.split(":", 1)[1]
        author = r.author_key.split(":", 1)[1]
        out.append(
            {
                "source": "x",
                "id": pid,
                "created_at": r.created_at.astimezone(JST).isoformat(),
                "author_id": author,
                "author_handle": author,
                "text": r.text,
                "lang": "ja",
                "url": f"https://x.com/i/web/status/{pid}",
                "repost_of": r.repost_of.split(":", 1)[-1] if r.repost_of else None,
            }
        )
    return out
