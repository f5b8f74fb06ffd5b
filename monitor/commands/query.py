"""`query` and `export`: the researchers' filters over the store, one filter object for both (and the API).

Both are read-only: they open an existing store and never create or migrate one. Exports meant for
sharing pseudonymise author ids with a keyed hash (``MONITOR_PSEUDONYM_KEY``) unless ``--raw-authors``;
``--dehydrated`` writes only ``source`` and ``id``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from monitor.commands import add_command
from monitor.errors import ConfigError, InputError

LABELS = ("victim_report", "incident_discussion", "irrelevant")
FORMATS = ("table", "csv", "jsonl", "parquet")
QUERY_EXAMPLE = "incident-monitor query -q 約定 --broker 楽天証券 --since 2025-03-19T00:00:00+09:00 --limit 20"
EXPORT_EXAMPLE = "incident-monitor export --label victim_report --format parquet --output victims.parquet"
PSEUDONYM_ENV = "MONITOR_PSEUDONYM_KEY"


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all optional, combined with AND)")
    group.add_argument("--since", metavar="ISO8601", help="posts created at or after this time (with offset)")
    group.add_argument("--until", metavar="ISO8601", help="posts created before this time")
    group.add_argument("--source", help="x, reddit, bluesky, 5ch or web")
    group.add_argument("--label", choices=LABELS, help="the newest annotation's label")
    group.add_argument("--broker", metavar="NAME", help="canonical broker name, e.g. 楽天証券")
    group.add_argument("--ticker", metavar="CODE", help="normalised ticker, e.g. 0700.HK")
    group.add_argument("--author", metavar="ID", help="author id as stored")
    group.add_argument("--lang", metavar="CODE", help="language code, e.g. ja")
    group.add_argument("-q", "--text", metavar="TEXT",
                       help="Japanese full-text search; one-character words work (株); parts split by spaces must all occur")


def filter_from_args(args: argparse.Namespace) -> Any:
    from monitor.records import parse_timestamp
    from storage.queries import PostFilter
    from storage.search import parse_query

    flt = PostFilter(
        since=parse_timestamp(args.since, "--since") if args.since else None,
        until=parse_timestamp(args.until, "--until") if args.until else None,
        source=args.source, label=args.label, broker=args.broker, ticker=args.ticker,
        author=args.author, lang=args.lang, q=args.text or None,
    )
    if flt.q:
        parse_query(flt.q)  # a bad search text is one clear line before any output
    return flt


def add_output_arguments(parser: argparse.ArgumentParser, default_format: str) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=FORMATS, default=default_format, help=f"default {default_format}")
    group.add_argument("--output", metavar="PATH", help="file to write (default stdout; parquet needs a file)")
    group.add_argument("--raw-authors", action="store_true",
                       help=f"keep author ids and handles as stored (default: pseudonymised with {PSEUDONYM_ENV})")
    group.add_argument("--dehydrated", action="store_true",
                       help="only source and id of each post (ID-only export for sharing under platform terms)")
    group.add_argument("--limit", type=int, metavar="N", help="at most N posts (default: all)")


def record_transform(args: argparse.Namespace) -> Any:
    """What each record goes through before it is written: dehydration, or pseudonyms unless --raw-authors."""
    from storage.export import dehydrate

    if args.dehydrated:
        return dehydrate
    if args.raw_authors or args.format == "table":  # the table shows no authors
        return None
    return pseudonymizer_from_env("exports", "export")


def pseudonymizer_from_env(who: str, verb: str) -> Any:
    """The keyed hash of ``MONITOR_PSEUDONYM_KEY`` (exports and `serve` share it, so one author has one
    pseudonym in both); one clear line when the key is missing."""
    from monitor.settings import read_secret
    from storage.export import Pseudonymizer

    key = read_secret(PSEUDONYM_ENV)
    if not key:
        raise ConfigError(
            f"{who} pseudonymise author ids with a keyed hash and {PSEUDONYM_ENV} is not set: set it (or "
            f"{PSEUDONYM_ENV}_FILE) to a long random secret, or pass --raw-authors to {verb} ids as stored"
        )
    return Pseudonymizer(key.reveal().encode("utf-8"))


def _progress(views: Iterable[Any], total: int | None, stream: Any) -> Iterator[Any]:
    """Count exported posts on stderr, in place, every 1,000 posts (only called when stderr is a terminal)."""
    n = 0
    for n, view in enumerate(views, start=1):
        if n % 1000 == 0:
            stream.write(f"\rexported {n:,}" + (f" / {total:,} posts" if total else " posts"))
            stream.flush()
        yield view
    stream.write(f"\rexported {n:,} posts{' ' * 20}\n")
    stream.flush()


def _batch_progress(batches: Iterable[Any], total: int | None, stream: Any) -> Iterator[Any]:
    """:func:`_progress` for the streamed export: counted a batch at a time."""
    n = 0
    for batch in batches:
        n += len(batch)
        stream.write(f"\rexported {n:,}" + (f" / {total:,} posts" if total else " posts"))
        stream.flush()
        yield batch
    stream.write(f"\rexported {n:,} posts{' ' * 20}\n")
    stream.flush()


def _write_posts(args: argparse.Namespace, *, order: str, out: Any = None, err: Any = None) -> int:
    from sqlmodel import Session

    from monitor.commands import settings_and_engine
    from storage.export import export

    out = out or sys.stdout
    err = err or sys.stderr
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    flt = filter_from_args(args)
    transform = record_transform(args)
    engine = settings_and_engine(args, read_only=True)[1]
    to_file = bool(args.output and args.output != "-")
    with_mentions = not args.dehydrated and args.format != "table"
    with Session(engine) as session:
        total = None
        if to_file and err.isatty():
            from storage.queries import count_posts

            total = count_posts(session, flt)
            total = min(total, args.limit) if args.limit else total
        if order == "oldest":
            n = _stream_posts(session, flt, args, transform, with_mentions, out, err if total is not None else None,
                              total)
        else:
            from storage.queries import iter_post_views

            views: Iterable[Any] = iter_post_views(session, flt, order=order, limit=args.limit,
                                                   with_mentions=with_mentions)
            if total is not None:
                views = _progress(views, total, err)
            records = (v.to_record() for v in views)
            if transform is not None:
                records = (transform(r) for r in records)
            n = export(records, args.format, args.output, out)
    if to_file:
        print(f"wrote {n} posts to {args.output}", file=err)
    return 0


def _stream_posts(session: Any, flt: Any, args: argparse.Namespace, transform: Any, with_mentions: bool, out: Any,
                  progress: Any, total: int | None) -> int:
    """Storage order (every export): one streamed statement, rows made CSV text or records a batch at a time."""
    from storage.export import Pseudonymizer, export
    from storage.stream import RowShape, csv_text_batches, post_batches, without_cycle_collection

    shape = RowShape(pseudonymizer=transform if isinstance(transform, Pseudonymizer) else None,
                     dehydrated=args.dehydrated, with_mentions=with_mentions)
    if args.format == "csv":  # each row written as one line of CSV text from the cursor's own tuples
        raw, text = csv_text_batches(session, flt, shape, limit=args.limit)
        if progress is not None:
            raw = _batch_progress(raw, total, progress)
        with without_cycle_collection():
            return export((), "csv", args.output, out, csv_text=(shape.csv_columns(), ((len(b), text(b)) for b in raw)))
    batches: Iterable[Any] = post_batches(session, flt, limit=args.limit, dehydrated=args.dehydrated)
    if progress is not None:
        batches = _batch_progress(batches, total, progress)
    with without_cycle_collection():
        records = shape.records()
        return export((r for b in batches for r in records(b)), args.format, args.output, out)


def cmd_export(args: argparse.Namespace) -> int:
    return _write_posts(args, order="oldest")


def cmd_query(args: argparse.Namespace, *, out: Any = None) -> int:
    from sqlmodel import Session

    from monitor.commands import settings_and_engine

    out = out or sys.stdout
    if args.counts:
        return _print_counts(args, out)
    if args.count:
        from storage.queries import count_posts

        flt = filter_from_args(args)
        with Session(settings_and_engine(args, read_only=True)[1]) as session:
            out.write(f"{count_posts(session, flt)}\n")
        return 0
    order = args.order or "newest"
    return _write_posts(args, order=order, out=out)


def _print_counts(args: argparse.Namespace, out: Any) -> int:
    from sqlmodel import Session

    from monitor.commands import settings_and_engine
    from monitor.durations import parse_duration
    from monitor.records import parse_timestamp
    from monitor.research import count_series
    from storage.export import json_line

    bucket = parse_duration(args.bucket)
    since = parse_timestamp(args.since, "--since") if args.since else None
    until = parse_timestamp(args.until, "--until") if args.until else None
    with Session(settings_and_engine(args, read_only=True)[1]) as session:
        series = count_series(session, args.counts, bucket, since, until, scope=args.scope)
    if args.format == "jsonl":
        for point in series:
            out.write(json_line(point.to_json()) + "\n")
    elif args.format == "csv":
        out.write("t,count,expected\n")
        for point in series:
            row = point.to_json()
            out.write(f"{row['t']},{row['count']},{'' if row['expected'] is None else row['expected']}\n")
    elif args.format == "table":
        out.write(f"{'bucket start (UTC)':<25}  {'reporters':>9}  expected\n")
        for point in series:
            row = point.to_json()
            out.write(f"{row['t']:<25}  {row['count']:>9}  {'-' if row['expected'] is None else row['expected']}\n")
    else:
        raise InputError("--counts prints table, csv or jsonl; parquet is for posts")
    return 0


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "query", "search and filter stored posts; or count them, or print the detector's "
                    "per-bucket series of distinct reporters for a key", QUERY_EXAMPLE, cmd_query)
    add_filter_arguments(p)
    add_output_arguments(p, "table")
    p.add_argument("--order", choices=("newest", "oldest", "relevance"),
                   help="newest first (default), storage order, or search relevance (with -q: ranked by bm25 / ts_rank; "
                        "a text-only search ranks its matches in batches, the newest stored first)")
    p.add_argument("--count", action="store_true", help="print only how many posts match")
    p.add_argument("--counts", metavar="KEY",
                   help="print distinct reporters of victim reports per bucket for broker:NAME, ticker:CODE or "
                        "overall - the series the detector counts - with the stored baseline's expected values")
    p.add_argument("--bucket", default="1h", metavar="DURATION", help="bucket of --counts (default 1h)")
    p.add_argument("--scope", metavar="NAME",
                   help="whose stored detector baseline gives expected values: live, replay, demo (default: newest)")

    p = add_command(subparsers, "export", "write stored posts with their labels, mentions (with spans) and label "
                    "provenance; author ids pseudonymised unless --raw-authors", EXPORT_EXAMPLE, cmd_export)
    add_filter_arguments(p)
    add_output_arguments(p, "jsonl")
