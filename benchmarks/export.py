"""CSV export speed: `incident-monitor export --format csv` against a plain dump of the same join, same store.

The store is generated as benchmarks/query.py generates it (Japanese posts over a year, 5% victim reports,
15% incident discussion, broker mentions, search index). Timed, each as its own process from start to exit:

- ``export``: ``python -m monitor export --format csv --raw-authors --output FILE --db URL`` (every post
  with its newest annotation, brokers/tickers, mentions with spans and provenance; formula cells
  neutralised);
- the baseline: the same rows by one SQL join (posts, the newest annotation per post, the post's mentions
  folded into one column) written as CSV by the database's own client: ``sqlite3 -csv`` on SQLite,
  ``psql -c "\\copy (...) TO STDOUT CSV"`` on PostgreSQL. Where that client is not installed, Python's
  sqlite3 module with the csv module writes the baseline instead (the line says which).

Export and baseline run alternately, ``--repeat`` times each (default 3), and the best of each is
compared: a neighbour on a shared machine only ever slows a run down. Printed per backend: rows, both
best times (wall and the command's own CPU seconds: on a shared machine the wall time depends on the
neighbours, CPU much less), the ratios export / baseline (the issue's target: within 3x), the size of
both files and every run's CPU seconds; then the export's start-up (the same command with ``--limit 1``,
best of three: imports, settings, opening the store, the statement, the header) and the ratios of what
remains beyond it - the cost per row, which decides large exports. On PostgreSQL the CPU of the server
is in neither figure.

    python benchmarks/export.py                            # 100,000 posts, SQLite and PostgreSQL
    python benchmarks/export.py --posts 1000000 --backend sqlite
    python benchmarks/export.py --backend sqlite --store /tmp/export200k.sqlite --posts 200000   # kept, reused

PostgreSQL comes from TEST_DATABASE_URL or 127.0.0.1:5432/test (a private schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pgschema import pg_schema  # noqa: E402
from benchmarks.query import generate  # noqa: E402  - one generator for the research benchmarks
from storage.database import open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# The export's rows by one join: each post, its newest annotation, its mentions folded into one text column.
JOIN = {
    "sqlite": """
SELECT p.source, p.post_id AS id, p.created_at, p.author_id, p.author_handle, p.text, p.lang, p.url, p.repost_of,
       p.reply_to, p.quote_of, p.metrics, a.label, a.score, a.scores, a.model, a.tokenizer, a.dictionary,
       a.analyzed_at,
       (SELECT group_concat(m.kind || ':' || m.value || ':' || m.start || ':' || m."end", ';')
          FROM mentions m WHERE m.annotation_id = a.id) AS mentions
FROM posts p
LEFT JOIN annotations a ON a.id = (SELECT max(x.id) FROM annotations x WHERE x.post_pk = p.id)
ORDER BY p.id""",
    "postgresql": """
SELECT p.source, p.post_id AS id, p.created_at, p.author_id, p.author_handle, p.text, p.lang, p.url, p.repost_of,
       p.reply_to, p.quote_of, p.metrics, a.label, a.score, a.scores, a.model, a.tokenizer, a.dictionary,
       a.analyzed_at,
       (SELECT string_agg(m.kind || ':' || m.value || ':' || m.start || ':' || m."end", ';')
          FROM mentions m WHERE m.annotation_id = a.id) AS mentions
FROM posts p
LEFT JOIN annotations a ON a.id = (SELECT max(x.id) FROM annotations x WHERE x.post_pk = p.id)
ORDER BY p.id""",
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], stdout_path: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one command (its own CPU: a loaded machine inflates only the wall)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    if stdout_path is None:
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    else:
        with open(stdout_path, "wb") as out:
            subprocess.run(cmd, check=True, env=env, stdout=out)
    return time.perf_counter() - started, _children_cpu() - cpu


def python_baseline(db_file: str, out: Path) -> tuple[float, float]:
    """The fallback baseline: Python's sqlite3 module and csv writer over the same join (in this process)."""
    started, cpu = time.perf_counter(), time.process_time()
    con = sqlite3.connect(db_file)
    try:
        cur = con.execute(JOIN["sqlite"])
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([d[0] for d in cur.description])
            while rows := cur.fetchmany(10_000):
                writer.writerows(rows)
    finally:
        con.close()
    return time.perf_counter() - started, time.process_time() - cpu


def baseline(url: str, backend: str, out: Path) -> tuple[tuple[float, float], str]:
    if backend == "sqlite":
        db_file = url.removeprefix("sqlite:///")
        if shutil.which("sqlite3"):
            return timed(["sqlite3", "-csv", "-header", db_file, JOIN["sqlite"]], out), "sqlite3 -csv"
        return python_baseline(db_file, out), "Python sqlite3 + csv (no sqlite3 CLI here)"
    if not shutil.which("psql"):
        return (float("nan"), float("nan")), "no psql client here"
    parts = urlparse(url.replace("postgresql+psycopg", "postgresql"))
    options = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("options", "")
    env = {**os.environ, "PGOPTIONS": unquote(options)}
    conninfo = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = " ".join(JOIN["postgresql"].split())
    return timed(["psql", "-X", "-q", conninfo, "-c", f"\\copy ({query}) TO STDOUT WITH CSV HEADER"], out, env), \
        "psql \\copy ... CSV"


def run(url: str, backend: str, n: int, workdir: Path, fresh: bool, repeat: int = 1) -> None:
    engine = open_store(url)
    if fresh:
        seconds = generate(engine, n)
        print(f"{backend}: generated {n:,} posts in {seconds:.0f} s", flush=True)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM posts").scalar_one()
    engine.dispose()
    exported = workdir / f"export-{backend}.csv"
    plain = workdir / f"baseline-{backend}.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def command(output: Path, *more: str) -> list[str]:
        return [sys.executable, "-m", "monitor", "export", "--format", "csv", "--raw-authors", "--output",
                str(output), "--db", url, *more]

    # Export and baseline alternate, `repeat` times each; the best of each is compared (on a shared machine
    # a run is only ever slowed by its neighbours, so the fastest is the closest to the code's own cost).
    exports, baselines, how = [], [], ""
    for _ in range(repeat):
        exports.append(timed(command(exported), env=env))
        times, how = baseline(url, backend, plain)
        baselines.append(times)
    t_export, c_export = min(t for t, _ in exports), min(c for _, c in exports)
    t_base, c_base = min(t for t, _ in baselines), min(c for _, c in baselines)
    # Start-up: the same command for one row (imports, settings, opening the store, the statement, the header).
    starts = [timed(command(workdir / "one-row.csv", "--limit", "1"), env=env) for _ in range(3)]
    t_start, c_start = min(t for t, _ in starts), min(c for _, c in starts)
    best = f"best of {repeat}: " if repeat > 1 else ""
    print(f"{backend:<10} {rows:>9,} rows   {best}export {t_export:7.1f} s wall / {c_export:6.1f} s CPU "
          f"({rows / t_export:,.0f} rows/s, {exported.stat().st_size / 2**20:.0f} MiB)   baseline {t_base:6.1f} s "
          f"wall / {c_base:6.1f} s CPU ({how}, {plain.stat().st_size / 2**20 if plain.exists() else 0:.0f} MiB)   "
          f"ratio {t_export / t_base:.2f}x wall, {c_export / max(c_base, 1e-9):.2f}x CPU", flush=True)
    if repeat > 1:
        print(f"{'':<10} every run, export / baseline CPU s: "
              + ", ".join(f"{e[1]:.1f} / {b[1]:.1f}" for e, b in zip(exports, baselines, strict=True)), flush=True)
    print(f"{'':<10} start-up (one row, best of 3) {t_start:.2f} s wall / {c_start:.2f} s CPU   rows beyond "
          f"start-up: {(t_export - t_start) / t_base:.2f}x wall, {(c_export - c_start) / max(c_base, 1e-9):.2f}x CPU",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000, help="posts in the generated store (default 100,000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--store", type=Path, help="SQLite file to keep and reuse (generated when missing)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of the export and of the baseline, alternating; the best of each is compared "
                             "(default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        workdir = Path(tmp)
        if args.backend in ("sqlite", "both"):
            store = args.store.resolve() if args.store else workdir / "bench.sqlite"
            run(f"sqlite:///{store}", "sqlite", args.posts, workdir, fresh=not store.exists(), repeat=args.repeat)
        if args.backend in ("postgresql", "both"):
            with pg_schema() as url:
                if url is not None:
                    run(url, "postgresql", args.posts, workdir, fresh=True, repeat=args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
