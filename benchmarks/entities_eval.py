"""Micro precision / recall / F1 of the entity extractor on the labeled corpus, per split.

Run: python benchmarks/entities_eval.py [--splits train,dev] [--errors dev] [--limit 40]

Brokers are scored against the gold ``brokers`` field; tickers by code against ``tickers`` (mentions with
``by="code"``); tickers by name against ``ticker_names`` (names whose code is not also given by code;
informational: writers fill it only when sure, so its precision is a lower bound). Sets per post, micro-averaged over posts. The test split is left out unless
named: it is scored once, at the end, never for tuning.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from nlp.corpus import SPLITS, load_corpus
from nlp.entities import brokers_of, extract


def _micro(pairs: Iterable[tuple[set[str], set[str]]]) -> tuple[float, float, float, int, int, int]:
    tp = fp = fn = 0
    for gold, pred in pairs:
        tp += len(gold & pred)
        fp += len(pred - gold)
        fn += len(gold - pred)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f, tp, fp, fn


def _predict(text: str) -> tuple[set[str], set[str], set[str]]:
    mentions = extract(text)
    brokers = set(brokers_of(mentions))
    by_code = {m.value for m in mentions if m.kind == "ticker" and m.by == "code"}
    # Gold ticker_names holds companies named ONLY by name: a name beside its own code counts as by code.
    by_name = {m.value for m in mentions if m.kind == "ticker" and m.by == "name"} - by_code
    return brokers, by_code, by_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="train,dev", help="comma-separated splits (train,dev,test)")
    parser.add_argument("--errors", default="", help="print the differing posts of these splits")
    parser.add_argument("--limit", type=int, default=60, help="at most this many error lines per field")
    args = parser.parse_args()
    splits = [s for s in args.splits.split(",") if s]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        parser.error(f"unknown split {unknown[0]!r}: use {', '.join(SPLITS)}")
    show = {s for s in args.errors.split(",") if s}
    print(f"{'split':6} {'field':16} {'posts':>5} {'P':>6} {'R':>6} {'F1':>6} {'tp':>5} {'fp':>4} {'fn':>4}")
    for split in splits:
        examples = load_corpus(split)
        preds = [_predict(ex.text) for ex in examples]
        fields = [
            ("brokers", [set(ex.brokers) for ex in examples], [p[0] for p in preds]),
            ("tickers-by-code", [set(ex.tickers) for ex in examples], [p[1] for p in preds]),
            ("tickers-by-name", [set(ex.ticker_names) for ex in examples], [p[2] for p in preds]),
        ]
        for name, gold, pred in fields:
            p, r, f, tp, fp, fn = _micro(zip(gold, pred, strict=True))
            print(f"{split:6} {name:16} {len(examples):5} {p:6.3f} {r:6.3f} {f:6.3f} {tp:5} {fp:4} {fn:4}")
        if split in show:
            for name, gold, pred in fields:
                shown = 0
                for ex, g, q in zip(examples, gold, pred, strict=True):
                    if g != q and shown < args.limit:
                        shown += 1
                        extra, missed = sorted(q - g), sorted(g - q)
                        print(f"  [{name}] {ex.id} +{extra} -{missed}: {ex.text[:160]!r}")


if __name__ == "__main__":
    main()
