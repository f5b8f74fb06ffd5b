"""Analyze throughput with 1 and 2 `work analyze` processes on one PostgreSQL backlog, and a check that no
post was analysed twice.

Each run stores N posts (the demo stream's texts, repeated with new ids) in a fresh PostgreSQL schema, then
starts the workers as separate processes (`incident-monitor work analyze --once`) and times from their
start until the last one exits (model loading included, as a deployment pays it). Each worker reports how
many posts it classified and how many annotations it stored; the sums must equal N, and so must the stored
annotations. The 1-worker run is the baseline; the 2-worker line prints its speed-up against it. On a
machine with fewer free cores than workers there is no speed-up to see.

    python benchmarks/scaleout.py                 # 4000 posts
    python benchmarks/scaleout.py --posts 20000 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pgschema import base_url, pg_schema  # noqa: E402
from monitor.ingest import store_records  # noqa: E402
from monitor.records import PostRecord  # noqa: E402
from storage.database import open_store, session_scope  # noqa: E402
from storage.models import Annotation  # noqa: E402


def run(base: str, posts: int, workers: int) -> tuple[float, list[tuple[int, int]], int]:
    with pg_schema(base, prefix="scale") as url:
        if url is None:
            raise SystemExit("the scale-out benchmark needs PostgreSQL (set TEST_DATABASE_URL)")
        engine = open_store(url)
        texts = [json.loads(line)["text"] for line in
                 (REPO / "monitor" / "demo" / "stream.jsonl").read_text(encoding="utf-8").splitlines()]
        t0 = datetime.fromisoformat("2025-03-01T00:00:00+09:00")
        with session_scope(engine) as s:
            store_records(s, [PostRecord(source="x", id=str(10**15 + i), created_at=t0 + timedelta(seconds=i),
                                         author_id=str(i % 5000), text=texts[i % len(texts)]) for i in range(posts)])
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "monitor", "work", "analyze", "--once", "--db", url],
                                  env=env, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
        outs = [p.communicate()[1] for p in procs]
        seconds = time.perf_counter() - started
        counts = []
        for p, out in zip(procs, outs, strict=True):
            m = re.search(r"classified (\d+) posts, stored (\d+) annotations", out)
            if p.returncode != 0 or m is None:
                raise SystemExit(f"a worker failed:\n{out[-2000:]}")
            counts.append((int(m.group(1)), int(m.group(2))))
        with engine.connect() as conn:
            annotations = conn.execute(sa.select(sa.func.count()).select_from(Annotation.__table__)).scalar_one()
        engine.dispose()
        return seconds, counts, annotations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (the first is the baseline)")
    args = parser.parse_args()
    base = base_url()
    print(f"{'workers':>7} {'posts':>7} {'seconds':>8} {'posts/s':>8} {'speed-up':>8}  per worker classified/stored  "
          "analysed twice")
    baseline = None
    for n in [int(w) for w in args.workers.split(",")]:
        seconds, counts, annotations = run(base, args.posts, n)
        rate = args.posts / seconds
        baseline = baseline or rate
        classified = sum(c for c, _ in counts)
        twice = classified - annotations
        ok = "none" if twice == 0 and annotations == args.posts else f"{twice} (FAIL: {annotations} annotations)"
        print(f"{n:>7} {args.posts:>7} {seconds:>8.1f} {rate:>8.0f} {rate / baseline:>7.2f}x  "
              f"{' '.join(f'{c}/{s}' for c, s in counts):<30} {ok}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
