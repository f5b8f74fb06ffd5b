"""`incident-monitor nlp classify | train | eval`: the NLP stage from the command line.

``classify`` follows the JSONL contract of DESIGN.md: one output line per input line, in order; a line
that is not JSON or lacks ``id``/``text`` becomes ``{"id": ..., "error": "..."}`` and the run goes on;
the exit status is 1 at the end when any line failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, Any

from monitor.errors import InputError, ModelError
from monitor.settings import load_settings
from storage.export import json_line
from storage.records import loads, rejected_value, storable_text

CLASSIFY_EXAMPLE = "Example: incident-monitor nlp classify posts.jsonl > labels.jsonl"
TRAIN_EXAMPLE = "Example: incident-monitor nlp train --output models/victim-clf --epochs 12"
EVAL_EXAMPLE = "Example: incident-monitor nlp eval --split test"
# Posts per analyze_batch call: amortizes the classifier call while keeping output latency low on a pipe.
CLASSIFY_BATCH = 256


def register(subparsers: argparse._SubParsersAction) -> None:
    nlp_parser = subparsers.add_parser(
        "nlp",
        help="classify posts, train and evaluate the classifier. " + CLASSIFY_EXAMPLE,
        description="The Japanese NLP stage: classify posts, train and evaluate the classifier. "
        + CLASSIFY_EXAMPLE,
    )
    sub = nlp_parser.add_subparsers(dest="nlp_command", metavar="COMMAND", required=True)

    classify = sub.add_parser(
        "classify",
        help="label JSONL posts (id, text) and extract brokers and tickers. " + CLASSIFY_EXAMPLE,
        description=(
            "Read JSONL objects with `id` and `text` (stdin by default) and write one JSON result per input "
            "line, in order: label, score, scores, brokers, tickers, mentions, model. A bad line gives "
            '{"id": ..., "error": "..."} and the run goes on; the exit status is 1 if any line failed. '
            + CLASSIFY_EXAMPLE
        ),
    )
    classify.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSONL input (default: stdin)")
    classify.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: [nlp] model, else the bundled one)"
    )
    classify.add_argument(
        "--securities", nargs="+", metavar="FILE", default=(),
        help="official listed-company files read once beside the bundled master (JPX data_j.xls, EDINET code "
        "list CSV, HK/Shanghai/Shenzhen lists) so every listed code counts",
    )  # fmt: skip
    classify.add_argument(
        "--batch",
        type=int,
        default=CLASSIFY_BATCH,
        metavar="N",
        help=f"posts per batch (default {CLASSIFY_BATCH})",
    )
    # --config gives [nlp] model, securities_files and onnx_threads; no store is read, so no --db.
    classify.set_defaults(handler=run_classify, shared_options=("config",))

    train = sub.add_parser(
        "train",
        help="train the classifier on the labeled corpus and write a model directory. " + TRAIN_EXAMPLE,
        description=(
            "Fit the TF-IDF + logistic-regression baseline and a small transformers model on the train split, "
            "compare them on the dev split (never test), and write a model directory that uses the better one "
            "(or their ensemble). Needs the train extra: pip install 'incident-monitor[train]'. "
            + TRAIN_EXAMPLE
        ),
    )
    train.add_argument(
        "--corpus", nargs="+", metavar="PATH", default=None,
        help="labeled JSONL files or directories (default: the bundled nlp/corpus/)",
    )  # fmt: skip
    train.add_argument(
        "--base", metavar="MODEL", default=None,
        help="Hugging Face model id or local checkpoint to fine-tune (default: a tiny BERT trained from scratch)",
    )  # fmt: skip
    train.add_argument(
        "--output",
        metavar="DIR",
        default="victim-clf",
        help="model directory to write (default ./victim-clf)",
    )
    train.add_argument(
        "--epochs", type=int, default=None, metavar="N", help="transformer epochs (default 12)"
    )
    train.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default 13)")
    train.add_argument(
        "--candidates", default="tfidf,words", metavar="LIST",
        help="which candidates to fit, comma-separated: tfidf (char n-grams), words (Sudachi words; with tfidf "
        "also the cascade of the two), transformer (default tfidf,words)",
    )  # fmt: skip
    train.add_argument(
        "--reviewed", action="store_true",
        help="also train on the human labels stored by `label import` (split by a hash of the post id, as the corpus)",
    )  # fmt: skip
    # reads the corpus and writes a directory; --reviewed also reads the human labels from the store
    train.set_defaults(handler=run_train, shared_options=("db", "config"))

    ev = sub.add_parser(
        "eval",
        help="per-class precision/recall/F1, baseline beside it, broker and ticker micro-F1. " + EVAL_EXAMPLE,
        description=(
            "Score a model on the dev or test split of the corpus, or on any labeled JSONL file: per-class "
            "precision, recall and F1 of the shipped choice and of every candidate stored beside it (the "
            "TF-IDF baseline, the transformer), broker micro-F1 and ticker-by-code micro-F1. " + EVAL_EXAMPLE
        ),
    )
    ev.add_argument("--model", metavar="DIR", default=None,
                    help="model directory (default: [nlp] model, else the bundled one)")
    ev.add_argument(
        "--split", choices=("dev", "test"), default="dev", help="corpus split to score (default dev)"
    )
    ev.add_argument("--corpus", nargs="+", metavar="PATH", default=None, help="corpus files or directories")
    ev.add_argument(
        "--file", metavar="FILE", default=None,
        help="a labeled JSONL file to score whole instead: one object a line with text and label (id optional)",
    )  # fmt: skip
    ev.add_argument(
        "--reviewed", action="store_true", help="score on the stored posts people labeled (`label import`)"
    )
    ev.add_argument("--errors", type=int, default=0, metavar="N", help="also list up to N misclassified ids")
    # --config gives [nlp] model; --db (or the config's store) is read by --reviewed
    ev.set_defaults(handler=run_eval, shared_options=("db", "config"))


# --------------------------------------------------------------------------------------------------
# classify


def _open_input(name: str) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc}); check the path", path=name) from None


def _parse_line(raw: bytes) -> tuple[Any, str | None, str | None]:
    """Returns (id, text, error)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 (byte {exc.start})"
    if not line.strip():
        return None, None, "empty line; expected a JSON object with id and text"
    try:
        # Hostile values (JSON nested 100k deep, a 4,300-digit integer, NaN) come back as markers that
        # fail the checks below, so the line gets its error row instead of ending the run.
        obj = loads(line)
    except json.JSONDecodeError as exc:
        return None, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:
        return None, None, f"invalid JSON ({' '.join(str(exc).split())[:200]})"
    if (reason := rejected_value(obj)) is not None:
        return None, None, f"unreadable line: {reason}"
    if not isinstance(obj, dict):
        return None, None, f"expected a JSON object, got {type(obj).__name__}"
    post_id = obj.get("id")
    if post_id is None or (isinstance(post_id, str) and not post_id):
        return None, None, "missing 'id'"
    if (reason := rejected_value(post_id)) is not None:
        return None, None, f"'id' is unreadable: {reason}"
    if not isinstance(post_id, (str, int)) or isinstance(post_id, bool):
        return None, None, f"'id' must be a string or an integer, got {type(post_id).__name__}"
    if isinstance(post_id, str):
        post_id = storable_text(post_id)  # a lone surrogate could not be written back out as UTF-8
    if "text" not in obj or obj["text"] is None:
        return post_id, None, "missing 'text'"
    if (reason := rejected_value(obj["text"])) is not None:
        return post_id, None, f"'text' is unreadable: {reason}"
    if not isinstance(obj["text"], str):
        return post_id, None, f"'text' must be a string, got {type(obj['text']).__name__}"
    return post_id, storable_text(obj["text"]), None


def classify_stream(
    stream: IO[bytes], out: IO[str], analyzer, batch: int = CLASSIFY_BATCH
) -> tuple[int, int]:
    """Classify every line of ``stream`` into ``out``; returns (lines, failed lines)."""
    from nlp.errors import NLPError

    lines = failed = 0
    pending: list[tuple[Any, str | None, str | None]] = []  # (id, text, error) in input order

    def flush() -> None:
        nonlocal failed
        good = [i for i, (_, text, err) in enumerate(pending) if err is None]
        results: dict[int, dict[str, Any]] = {}
        try:
            for i, analysis in zip(good, analyzer.analyze_batch([pending[i][1] for i in good]), strict=True):
                results[i] = analysis.to_json(pending[i][0])
        except NLPError:
            # One bad post must not sink its batch: redo it post by post to find the culprit.
            for i in good:
                try:
                    results[i] = analyzer.analyze(pending[i][1]).to_json(pending[i][0])
                except NLPError as exc:
                    results[i] = {"id": pending[i][0], "error": str(exc)}
        for i, (post_id, _, err) in enumerate(pending):
            row = results[i] if err is None else {"id": post_id, "error": err}
            if "error" in row:
                failed += 1
            out.write(json_line(row) + "\n")
        out.flush()
        pending.clear()

    for lineno, raw in enumerate(stream, start=1):
        lines += 1
        post_id, text, err = _parse_line(raw)
        pending.append((post_id, text, f"line {lineno}: {err}" if err else None))
        if len(pending) >= max(1, batch):
            flush()
    if pending:
        flush()
    return lines, failed


def run_classify(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the analyzer pulls in the NLP stack and monitor.detect (scipy), and
    # every command's parser imports this module.
    from monitor.analyze import load_analyzer

    nlp_settings = load_settings(getattr(args, "config", None)).nlp
    analyzer = load_analyzer(
        args.model or nlp_settings.model,
        tuple(getattr(args, "securities", ()) or nlp_settings.securities_files),
        nlp_settings.onnx_threads,
    )
    stream = _open_input(args.file)
    try:
        lines, failed = classify_stream(stream, sys.stdout, analyzer, args.batch)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if failed:
        print(f'{failed} of {lines} lines failed; see their "error" fields', file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# train / eval


def _corpus_error(exc: Exception) -> InputError:
    return InputError(str(exc))


def reviewed_examples(args: argparse.Namespace) -> list:
    """The stored posts people labeled, as corpus examples (id = source:post_id)."""
    from sqlmodel import Session

    from monitor.commands import settings_and_engine
    from nlp.corpus import Example
    from storage.labels import reviewed_posts

    with Session(settings_and_engine(args, read_only=True)[1]) as session:
        reviewed = reviewed_posts(session)
    styles = {"x": "x", "reddit": "reddit", "bluesky": "bluesky"}
    return [
        Example(id=r.post.key, text=r.post.text, label=r.label, style=styles.get(r.post.source, "x"),
                note=f"human label by {', '.join(r.labelers)}")
        for r in reviewed
    ]  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from nlp.corpus import CorpusError
    from nlp.errors import NLPError
    from nlp.train import TrainConfig, TrainError, train

    cfg = TrainConfig()
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError("--epochs must be 1 or more")
        cfg = replace(cfg, epochs=args.epochs)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    candidates = tuple(c.strip() for c in args.candidates.split(",") if c.strip())
    unknown = [c for c in candidates if c not in ("tfidf", "words", "transformer")]
    if unknown or not candidates:
        raise InputError(f"--candidates: unknown {unknown or 'empty list'}; use tfidf, words, transformer")
    examples = None
    if args.reviewed:
        from nlp.corpus import load_corpus

        try:
            corpus = load_corpus(paths=args.corpus)
        except CorpusError as exc:
            raise _corpus_error(exc) from None
        reviewed = reviewed_examples(args)
        if not reviewed:
            raise InputError("--reviewed: no human labels stored yet; run `incident-monitor label import` first")
        known = {ex.id for ex in corpus}
        examples = corpus + [ex for ex in reviewed if ex.id not in known]
        print(f"training with {len(reviewed)} human-labeled stored posts beside {len(corpus)} corpus posts",
              file=sys.stderr)  # fmt: skip
    try:
        report = train(
            args.output, corpus=args.corpus, examples=examples, base=args.base, cfg=cfg, candidates=candidates,
            log=lambda msg: print(msg, file=sys.stderr),
        )  # fmt: skip
    except CorpusError as exc:
        raise _corpus_error(exc) from None
    except TrainError as exc:
        raise ModelError(str(exc)) from None
    except NLPError as exc:
        raise ModelError(str(exc)) from None
    print(
        f"wrote {report.output} (uses {report.use}, version {report.version}); see {Path(report.output) / 'model_card.md'}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from nlp.corpus import CorpusError, load_corpus, load_labeled_file
    from nlp.errors import NLPError
    from nlp.evaluate import evaluate

    try:
        if args.reviewed:
            examples = reviewed_examples(args)
            split = "human-labeled stored posts"
        elif args.file:
            examples = load_labeled_file(args.file)
            split = args.file
        else:
            examples = load_corpus(args.split, paths=args.corpus)
            split = args.split
    except CorpusError as exc:
        raise _corpus_error(exc) from None
    if not examples and args.reviewed:
        raise InputError("--reviewed: no human labels stored yet; run `incident-monitor label import` first")
    if not examples:
        raise InputError(f"no labeled posts in {split}; check --corpus / --file")
    try:
        result = evaluate(examples, args.model or load_settings(getattr(args, "config", None)).nlp.model, split=split)
    except NLPError as exc:
        raise ModelError(str(exc)) from None
    print(result.format())
    if args.errors:
        print("")
        print("misclassified (id, gold, predicted):")
        for ex_id, gold, pred in result.errors[: args.errors]:
            print(f"  {ex_id}\t{gold}\t{pred}")
    return 0
