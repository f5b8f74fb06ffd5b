"""`label queue`, `label import`: the labeling loop that turns a deployment's own posts into training data.

``queue`` annotates what the model has not seen yet, then writes the stored posts it is least sure of plus a
seeded random sample (JSONL or CSV) with an empty ``label`` field for a person to fill. ``import`` stores the
filled-in labels with the labeler and the time, in their own table beside the model's annotations, so a
re-classification never overwrites them. ``nlp train --reviewed`` trains with them and ``nlp eval --reviewed``
measures on them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.commands import add_command, settings_and_engine
from monitor.errors import InputError
from storage.export import json_line

QUEUE_EXAMPLE = "incident-monitor label queue --output review.csv --least-sure 100 --random 50"
IMPORT_EXAMPLE = "incident-monitor label import review.csv --labeler aiko"
QUEUE_FIELDS = ("id", "label", "note", "text", "model_label", "model_score", "reason", "brokers", "created_at", "url")
LABELS = ("victim_report", "incident_discussion", "irrelevant")


def _format_of(path: str, given: str | None) -> str:
    if given:
        return given
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def cmd_queue(args: argparse.Namespace, *, out: Any = None) -> int:
    from sqlmodel import Session

    from monitor.analyze import analyze_pending, load_analyzer
    from storage.labels import review_queue
    from storage.queries import mentions_by_annotation

    engine = settings_and_engine(args)[1]
    analyzer = load_analyzer(args.model)
    analyze_pending(engine, analyzer)  # the queue is about what this model thinks of every stored post
    with Session(engine) as session:
        items = review_queue(session, analyzer.model_version, least_sure=args.least_sure, sample=args.random,
                             seed=args.seed)  # fmt: skip
        found = mentions_by_annotation(session, [i.annotation.id for i in items])  # type: ignore[misc]
    rows: list[dict[str, Any]] = [
        {
            "id": i.post.key, "label": "", "note": "", "text": i.post.text, "model_label": i.annotation.label,
            "model_score": round(i.annotation.score, 4), "reason": i.reason,
            "brokers": found.get(i.annotation.id, {}).get("broker", []),  # type: ignore[arg-type]
            "created_at": i.post.created_at.isoformat(), "url": i.post.url or "",
        }
        for i in items
    ]  # fmt: skip
    fmt = _format_of(args.output, args.format)
    stream = out if out is not None else sys.stdout if args.output == "-" else None
    handle = stream or open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=QUEUE_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "brokers": " ".join(row["brokers"])})
        else:
            for row in rows:
                handle.write(json_line(row) + "\n")
    finally:
        if stream is None:
            handle.close()
    where = "stdout" if args.output == "-" else args.output
    print(f"wrote {len(rows)} posts to review ({sum(r['reason'] == 'least_sure' for r in rows)} least sure, "
          f"{sum(r['reason'] == 'random' for r in rows)} random) to {where}; model {analyzer.model_version}; "
          "fill in 'label' and run `incident-monitor label import`", file=sys.stderr)  # fmt: skip
    return 0


def _rows(path: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row, problem) for every non-empty row of a JSONL or CSV file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc}); check the path", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 (byte {exc.start}); save the file as UTF-8", path=path) from None
    out: list[tuple[int, dict[str, Any] | None, str | None]] = []
    if path.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "id" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise InputError("a CSV of labels needs the columns 'id' and 'label' (as `label queue` writes)",
                             path=path)  # fmt: skip
        for row in reader:
            out.append((reader.line_num, dict(row), None))
        return out
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append((lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        out.append((lineno, obj, None) if isinstance(obj, dict) else (lineno, None, "expected a JSON object"))
    return out


def _labeled_at(value: Any, now: datetime) -> datetime:
    if value in (None, ""):
        return now
    stamp = datetime.fromisoformat(str(value))
    if stamp.tzinfo is None:
        raise ValueError(f"labeled_at {value!r} has no UTC offset; write e.g. 2025-03-21T09:30:00+09:00")
    return stamp


def cmd_import(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    from storage.database import session_scope
    from storage.labels import upsert_human_label
    from storage.queries import get_posts_by_keys

    now = now or datetime.now(UTC)
    rows = _rows(args.file)
    engine = settings_and_engine(args)[1]
    problems: list[str] = []
    stored = changed = skipped = 0
    with session_scope(engine) as session:
        posts = get_posts_by_keys(session, [str(r.get("id", "")) for _, r, _ in rows if r])
        for lineno, row, problem in rows:
            where = f"{args.file}:{lineno}"
            if problem or row is None:
                problems.append(f"{where}: {problem}")
                continue
            label = str(row.get("label") or "").strip()
            if not label:
                skipped += 1  # not reviewed yet
                continue
            if label not in LABELS:
                problems.append(f"{where}: label {label!r} is not one of {', '.join(LABELS)}")
                continue
            post = posts.get(str(row.get("id", "")))
            if post is None:
                problems.append(f"{where}: no stored post {row.get('id')!r}; ids are source:post_id as `label queue` "
                                "writes them")  # fmt: skip
                continue
            labeler = str(row.get("labeler") or args.labeler or "").strip()
            if not labeler:
                problems.append(f"{where}: no labeler; pass --labeler NAME or fill a 'labeler' column")
                continue
            try:
                stamp = _labeled_at(row.get("labeled_at"), now)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            note = str(row.get("note") or "").strip() or None
            changed += upsert_human_label(session, post, label=label, labeler=labeler[:128], labeled_at=stamp,
                                          note=note)  # fmt: skip
            stored += 1
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"stored {stored} human labels ({changed} new or changed), {skipped} rows without a label skipped, "
          f"{len(problems)} bad rows")  # fmt: skip
    return 1 if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser(
        "label", help=f"review queue and human labels (the labeling loop). Example: {QUEUE_EXAMPLE}",
        description=f"The labeling loop: export the posts to review, import human labels.\n\nExample: {QUEUE_EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = label.add_subparsers(dest="label_command", metavar="COMMAND", required=True)

    p = add_command(sub, "queue", "write the stored posts the model is least sure of, plus a random sample, for "
                    "people to label (posts not annotated yet are classified first)", QUEUE_EXAMPLE, cmd_queue)  # fmt: skip
    p.add_argument("--output", default="-", metavar="PATH", help="file to write (default: stdout)")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None,
                   help="jsonl or csv (default: csv for a .csv file, else jsonl)")  # fmt: skip
    p.add_argument("--least-sure", type=int, default=100, metavar="N", help="lowest-scored posts (default 100)")
    p.add_argument("--random", type=int, default=50, metavar="N", help="random sample of the rest (default 50)")
    p.add_argument("--seed", type=int, default=13, metavar="N", help="seed of the random sample (default 13)")
    p.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the bundled one)")

    p = add_command(sub, "import", "store human labels from a filled-in queue file (JSONL or CSV: id, label; "
                    "optional labeler, labeled_at, note) beside the model's annotations", IMPORT_EXAMPLE, cmd_import)  # fmt: skip
    p.add_argument("file", metavar="FILE", help="JSONL or .csv file with id and label per row")
    p.add_argument("--labeler", default=None, metavar="NAME", help="who labeled (unless a 'labeler' column says)")
