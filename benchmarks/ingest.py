"""Posts per second from raw X search pages to stored rows, on SQLite and PostgreSQL.

What is timed (per page of 100 Japanese posts, the size X returns): json.loads of the body, parsing each
tweet with includes.users into a Post record, then ``store_page`` = one transaction holding the raw page,
an idempotent upsert of the posts and the cursor. The baseline, run in the same process on the same
rows, is a plain SQLAlchemy executemany INSERT of the already-parsed rows, one transaction per page, with
no raw page, no conflict handling and no cursor - the floor any ingest path pays. A second pass of the
same pages (every post a duplicate) shows what a repeated page costs.

    python benchmarks/ingest.py                 # 50 pages x 100 posts
    python benchmarks/ingest.py --pages 200     # more pages
    TEST_DATABASE_URL=postgresql://... python benchmarks/ingest.py

PostgreSQL comes from TEST_DATABASE_URL or 127.0.0.1:5432/test and is skipped with a note when absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pgschema import pg_schema  # noqa: E402
from monitor.collectors.base import store_page  # noqa: E402
from monitor.ingest import post_row_values  # noqa: E402
from monitor.records import x_page_users, x_tweet_to_record  # noqa: E402
from storage.database import open_store  # noqa: E402
from storage.models import Post  # noqa: E402

PHRASES = [
    "{b}の口座に不正ログインされて保有株を全部売られた。身に覚えのない中国株を買われている",
    "{b}で勝手に取引されてた…パスワード変えたのに乗っ取りとか怖すぎる",
    "家族の{b}口座が乗っ取られて、知らない香港株00700を大量に買われた",
]
BROKERS = ["楽天証券", "SBI証券", "マネックス証券", "松井証券"]


def make_pages(pages: int, per_page: int = 100) -> list[str]:
    bodies = []
    for p in range(pages):
        data, users = [], {}
        for j in range(per_page):
            i = p * per_page + j
            author = str(5000 + i % 997)
            users[author] = {"id": author, "username": f"user{author}", "name": f"投資家{author}"}
            data.append({
                "id": str(1902345678901234567 + i), "author_id": author, "lang": "ja",
                "created_at": f"2025-03-19T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000Z",
                "text": PHRASES[i % 3].format(b=BROKERS[i % 4]) + f" #{i}",
                "public_metrics": {"retweet_count": 0, "reply_count": 1, "like_count": i % 7, "quote_count": 0},
            })
        meta = {"newest_id": data[-1]["id"], "oldest_id": data[0]["id"], "result_count": per_page, "next_token": f"t{p}"}
        bodies.append(json.dumps({"data": data, "includes": {"users": list(users.values())}, "meta": meta},
                                 ensure_ascii=False))
    return bodies


def run_pipeline(engine: sa.Engine, bodies: list[str]) -> float:
    start = time.perf_counter()
    for n, body in enumerate(bodies):
        page = json.loads(body)
        users = x_page_users(page)
        records = [x_tweet_to_record(t, users) for t in page["data"]]
        store_page(engine, source="x", endpoint="https://api.x.com/2/tweets/search/recent?bench", body=body,
                   records=records, cursor_name="bench", cursor_value=page["meta"]["newest_id"],
                   cursor_extra={"next_token": page["meta"]["next_token"], "page": n})
    return time.perf_counter() - start


def run_baseline(engine: sa.Engine, bodies: list[str]) -> float:
    now = datetime.now(UTC)
    prepared = []
    for body in bodies:  # parsing is not part of the baseline: it measures the bare insert floor
        page = json.loads(body)
        users = x_page_users(page)
        prepared.append([post_row_values(x_tweet_to_record(t, users), None, now) for t in page["data"]])
    insert = sa.insert(Post.__table__)
    start = time.perf_counter()
    for rows in prepared:
        with engine.begin() as conn:
            conn.execute(insert, rows)
    return time.perf_counter() - start


def run_upsert_executemany(engine: sa.Engine, bodies: list[str]) -> float:
    """What store_records could do: the same idempotent upsert + RETURNING, sent as executemany so
    SQLAlchemy compiles it once (insertmanyvalues) instead of compiling a 100-row VALUES list per page."""
    from sqlalchemy.dialects import postgresql, sqlite

    table = Post.__table__
    dialect_insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = (dialect_insert(table).on_conflict_do_nothing(index_elements=["source", "post_id"])
            .returning(table.c.source, table.c.post_id))
    now = datetime.now(UTC)
    start = time.perf_counter()
    for body in bodies:
        page = json.loads(body)
        users = x_page_users(page)
        rows = [post_row_values(x_tweet_to_record(t, users), None, now) for t in page["data"]]
        with engine.begin() as conn:
            conn.execute(stmt, rows).all()
    return time.perf_counter() - start


def clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in ("posts", "raw_pages", "cursors"):
            conn.execute(sa.text(f"DELETE FROM {table}"))


def bench(name: str, url: str, bodies: list[str]) -> None:
    engine = open_store(url)
    posts = sum(len(json.loads(b)["data"]) for b in bodies)
    clear(engine)
    base = run_baseline(engine, bodies)
    clear(engine)
    ours = run_pipeline(engine, bodies)
    repeat = run_pipeline(engine, bodies)
    clear(engine)
    upsert_only = run_upsert_executemany(engine, bodies)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(Post)).scalar_one()
    assert stored == posts, (stored, posts)
    print(f"{name:<11} {posts:>6} posts  raw page -> rows: {posts / ours:>8,.0f} posts/s   "
          f"repeated pages: {posts / repeat:>8,.0f} posts/s   plain executemany: {posts / base:>8,.0f} posts/s   "
          f"ratio ours/baseline: {base / ours:.2f}")
    print(f"{'':<11} parse + upsert only (no raw page, no cursor): {posts / upsert_only:>8,.0f} posts/s, "
          f"ratio to baseline {base / upsert_only:.2f}")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50, help="pages of 100 posts (default 50)")
    args = parser.parse_args()
    bodies = make_pages(args.pages)
    with tempfile.TemporaryDirectory() as tmp:
        bench("SQLite", f"sqlite:///{tmp}/bench.sqlite", bodies)
    with pg_schema() as url:
        if url is not None:
            bench("PostgreSQL", url, bodies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
