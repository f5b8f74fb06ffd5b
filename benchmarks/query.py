"""Research queries on a large generated store, on SQLite and PostgreSQL: full-text search, a 30-day counts
series, and an API request end to end, beside a plain ``LIKE '%...%'`` scan run in the same process.

What is timed (each repeated ``--repeat`` times, p50 / p95 in ms):
- search, first page of 20, ranked (``order=relevance``) and newest first, for a one-character (株), a
  two-character (約定), a phrase (勝手に中国株) and a rare word (出金停止, 0.05% of posts) query, through
  ``storage.queries.find_posts``;
- the baseline: the same first page newest first with ``text LIKE '%q%'`` and no index;
- ``monitor.research.count_series`` for ``broker:楽天証券``, 1h buckets over 30 days;
- ``GET /api/posts?q=約定`` against a real uvicorn server on loopback (HTTP, auth, JSON included).
Then the size of the search index per million posts.

Posts are generated (Japanese templates, brokers, tickers, filler) over 365 days with a realistic label
mix (5% victim reports, 15% incident discussion) and bulk-inserted with the index built by the same
``storage.search.index_posts`` that ingest calls.

    python benchmarks/query.py                      # 100,000 posts
    python benchmarks/query.py --posts 1000000      # the issue's size (several minutes per backend)
    python benchmarks/query.py --backend sqlite
    python benchmarks/query.py --backend sqlite --posts 200000 --store /tmp/bench200k.sqlite   # kept, reused
    python benchmarks/query.py --backend postgresql --posts 200000 --pg-schema bench200k      # kept, reused

PostgreSQL comes from TEST_DATABASE_URL or 127.0.0.1:5432/test (a private schema, dropped afterwards unless
``--pg-schema`` names one to keep).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlmodel import Session  # noqa: E402

from benchmarks.pgschema import pg_schema  # noqa: E402
from storage.database import open_store  # noqa: E402
from storage.models import Annotation, Mention, Post  # noqa: E402
from storage.queries import PostFilter, find_posts  # noqa: E402
from storage.search import index_posts  # noqa: E402

BROKERS = ["楽天証券", "SBI証券", "マネックス証券", "松井証券", "auカブコム証券", "野村證券", "大和証券", "SMBC日興証券"]
VICTIM = ["{b}で勝手に中国株を買われた", "{b}の口座に不正ログインされて保有株を全部売られた", "身に覚えのない約定が{b}にある",
          "{b}のパスワードを変えられて出金された", "知らない香港株{t}を大量に買われた、{b}"]
DISCUSSION = ["{b}の不正アクセス、ニュースになってる", "フィッシングメールが{b}を名乗って届いた、注意", "{b}が補償の方針を発表",
              "乗っ取り被害が増えているらしい。二段階認証を"]
OTHER = ["今日は日経平均が上がった", "{b}でNISAの積立を設定した", "決算発表で株価が急落", "ドル円が動いている", "米国株の配当が入った",
         "新しいスマホを買った", "ランチはラーメン", "{t}の決算が楽しみ", "雨の日は在宅勤務", "口座開設のキャンペーン中",
         "約定が遅い気がする", "ポイント投資を始めた"]
FILLER = ["本当に", "困った", "どうしよう", "みんなも気をつけて", "まじか", "（続く）", "今朝", "さっき", "ずっと", "なんで"]
TICKERS = ["00700", "02269", "7203", "600519", "TSLA"]
END = datetime(2025, 12, 31, tzinfo=UTC)
QUERIES = {"one character": "株", "two characters": "約定", "phrase": "勝手に中国株", "rare word": "出金停止"}


def generate(engine: sa.Engine, n: int, batch: int = 20_000, seed: int = 7) -> float:
    rng = random.Random(seed)
    started = time.perf_counter()
    span = 365 * 86400
    post_t, ann_t, men_t = Post.__table__, Annotation.__table__, Mention.__table__  # type: ignore[attr-defined]
    for lo in range(0, n, batch):
        posts, anns, mens, texts = [], [], [], []
        for i in range(lo, min(n, lo + batch)):
            roll = rng.random()
            broker = rng.choice(BROKERS)
            ticker = rng.choice(TICKERS)
            if roll < 0.05:
                label, template = "victim_report", rng.choice(VICTIM)
            elif roll < 0.20:
                label, template = "incident_discussion", rng.choice(DISCUSSION)
            else:
                label, template = "irrelevant", rng.choice(OTHER)
            text = template.format(b=broker, t=ticker) + " " + " ".join(rng.sample(FILLER, 2))
            if rng.random() < 0.0005:  # a rare word: where an index pays and a LIKE scan reads everything
                text += " 出金停止"
            pk = i + 1
            posts.append({"id": pk, "source": "x", "post_id": str(10**18 + i), "author_id": str(rng.randrange(n // 3 + 1)),
                          "created_at": END - timedelta(seconds=span * (n - i) / n), "utc_offset_min": 540,
                          "text": text, "lang": "ja", "metrics": {}, "ingested_at": END, "author_handle": None,
                          "url": None, "repost_of": None, "reply_to": None, "quote_of": None, "raw_page_id": None})
            anns.append({"id": pk, "post_pk": pk, "label": label, "score": 0.9, "scores": {label: 0.9},
                         "model": "bench@1", "dictionary": "sudachidict_core@bench", "analyzed_at": END})
            start = text.find(broker)
            if start >= 0:
                mens.append({"annotation_id": pk, "post_pk": pk, "kind": "broker", "value": broker, "surface": broker,
                             "start": start, "end": start + len(broker), "by": None})
            texts.append((pk, text))
        with engine.begin() as conn:
            conn.execute(sa.insert(post_t), posts)
            conn.execute(sa.insert(ann_t), anns)
            if mens:
                conn.execute(sa.insert(men_t), mens)
            index_posts(conn, texts)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('posts', 'id'), (SELECT max(id) FROM posts))")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def timed(fn, repeat: int) -> tuple[float, float, float]:
    """p50 and p95 wall time, and p50 CPU time of this process, in ms.

    On a loaded machine wall time grows with the load; this process's CPU time does not. For SQLite it is
    all of the work (the database runs in this process); for PostgreSQL only the client's share.
    """
    fn()  # warm the caches once, as a running server has them
    samples, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    samples.sort()
    return (statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))],
            statistics.median(cpu))


def like_first_page(engine: sa.Engine, q: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM posts WHERE text LIKE :p ORDER BY created_at DESC, id DESC LIMIT 20"),
                            {"p": f"%{q}%"}).all()


def index_bytes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return int(conn.exec_driver_sql(
                "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'post_search%'").scalar() or 0)
        return int(conn.exec_driver_sql("SELECT pg_total_relation_size('post_search')").scalar())


def table_bytes(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return int(conn.exec_driver_sql("SELECT SUM(pgsize) FROM dbstat WHERE name = 'posts'").scalar() or 0)
        return int(conn.exec_driver_sql("SELECT pg_total_relation_size('posts')").scalar())


def api_request(engine: sa.Engine, repeat: int) -> tuple[float, float]:
    import httpx
    import uvicorn

    from monitor.api.app import create_app
    from monitor.api.config import ApiConfig
    from storage.export import Pseudonymizer

    app = create_app(engine, ApiConfig(tokens="bench", query_timeout_ms=30_000), pseudonymizer=Pseudonymizer(b"bench"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/posts"
    try:
        with httpx.Client(headers={"Authorization": "Bearer bench"}) as client:
            def call() -> None:
                response = client.get(url, params={"q": "約定", "limit": 20})
                response.raise_for_status()
            return timed(call, repeat)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def run(url: str, n: int, repeat: int) -> None:
    from monitor.research import count_series

    engine = open_store(url)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(Post.__table__)).scalar_one()  # type: ignore[attr-defined]
    if stored == n:
        print(f"\n== {engine.dialect.name}: reusing the {n:,} posts already in the store", flush=True)
    elif stored:
        raise SystemExit(f"the store holds {stored:,} posts, not {n:,}: give --posts {stored} or another --store")
    else:
        print(f"\n== {engine.dialect.name}: generating {n:,} posts ...", flush=True)
        seconds = generate(engine, n)
        print(f"generated and indexed in {seconds:.1f} s ({n / seconds:,.0f} posts/s)")
    rows = []
    if hasattr(os, "getloadavg"):
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    for name, q in QUERIES.items():
        for order in ("relevance", "newest"):
            def search(q: str = q, order: str = order) -> None:
                with Session(engine) as s:
                    find_posts(s, PostFilter(q=q), limit=20, order=order)
            rows.append((f"search {name} ({q}), {order}", *timed(search, repeat)))
        rows.append((f"  baseline LIKE '%{q}%', newest", *timed(lambda q=q: like_first_page(engine, q), repeat)))

    def counts() -> None:
        with Session(engine) as s:
            count_series(s, "broker:楽天証券", timedelta(hours=1), END - timedelta(days=30), END)
    rows.append(("counts broker:楽天証券, 1h x 30 days", *timed(counts, repeat)))
    rows.append(("API GET /api/posts?q=約定 (uvicorn, HTTP)", *api_request(engine, repeat)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu_note = "all the work" if engine.dialect.name == "sqlite" else "client side only"
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} CPUs; cpu = this process's CPU time ({cpu_note})")
    print(f"{'what':<48} {'p50 ms':>9} {'p95 ms':>9} {'cpu p50':>9}")
    for what, p50, p95, cpu in rows:
        print(f"{what:<48} {p50:>9.1f} {p95:>9.1f} {cpu:>9.1f}")
    for name, q in QUERIES.items():
        fast = [r for r in rows if r[0].startswith(f"search {name}") and r[0].endswith("newest")][0]
        like = [r for r in rows if r[0] == f"  baseline LIKE '%{q}%', newest"][0]
        print(f"ratio LIKE / index, {name}, p50: {like[1] / fast[1]:.1f}x")
    size = index_bytes(engine)
    print(f"search index: {size / 2**20:,.1f} MiB for {n:,} posts = {size / n * 1e6 / 2**30:,.2f} GiB per million "
          f"posts ({size / max(1, table_bytes(engine)):.2f}x the posts table)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--store", type=Path, help="SQLite file to keep and reuse (generated when missing)")
    parser.add_argument("--pg-schema", metavar="NAME",
                        help="PostgreSQL schema to keep and reuse (generated when missing; default a private one, dropped)")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both") and args.store:
        run(f"sqlite:///{args.store.resolve()}", args.posts, args.repeat)
    elif args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.sqlite", args.posts, args.repeat)
    if args.backend in ("postgresql", "both"):
        if args.pg_schema and not args.pg_schema.isidentifier():
            raise SystemExit(f"--pg-schema {args.pg_schema!r}: use letters, digits and underscores")
        with pg_schema(name=args.pg_schema, keep=bool(args.pg_schema)) as url:
            if url is not None:
                run(url, args.posts, args.repeat)


if __name__ == "__main__":
    main()
