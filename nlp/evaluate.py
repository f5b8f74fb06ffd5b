"""Measure a model on labeled posts: per-class precision / recall / F1, broker and ticker micro-F1.

The numbers are plain counts, so they can be checked by hand:

>>> r = label_report(["victim_report", "irrelevant"], ["victim_report", "victim_report"])
>>> r["victim_report"]["precision"], r["victim_report"]["recall"], r["irrelevant"]["recall"]
(0.5, 1.0, 0.0)
>>> set_micro([{"A"}, set()], [{"A", "B"}, {"C"}])
{'precision': 0.333..., 'recall': 1.0, 'f1': 0.5, 'support': 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlp.corpus import LABELS, Example


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def label_report(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-label precision, recall, F1 and support, plus "macro" (unweighted mean) and "accuracy"."""
    report: dict[str, dict[str, float]] = {}
    for lab in LABELS:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred, strict=True))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred, strict=True))
        p, r, f = _prf(tp, fp, fn)
        report[lab] = {"precision": p, "recall": r, "f1": f, "support": tp + fn}
    report["macro"] = {
        k: float(np.mean([report[lab][k] for lab in LABELS])) for k in ("precision", "recall", "f1")
    }
    report["macro"]["support"] = len(gold)
    acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0
    report["accuracy"] = {"precision": acc, "recall": acc, "f1": acc, "support": len(gold)}
    return report


def set_micro(gold: Iterable[set[str]], pred: Iterable[set[str]]) -> dict[str, float]:
    """Micro-averaged precision / recall / F1 of predicted sets against gold sets, post by post."""
    tp = fp = fn = 0
    for g, p in zip(gold, pred, strict=True):
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    prec, rec, f1 = _prf(tp, fp, fn)
    return {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}


def best_labels(probs: np.ndarray) -> list[str]:
    return [LABELS[i] for i in np.argmax(probs, axis=1)]


@dataclass
class EvalResult:
    """Everything `nlp eval` prints, also usable from tests and notebooks."""

    split: str
    n: int
    models: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # name -> label_report
    brokers: dict[str, float] | None = None
    tickers_by_code: dict[str, float] | None = None
    errors: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (id, gold, predicted) of the main model

    def format(self) -> str:
        lines = [f"split: {self.split}  posts: {self.n}"]
        for name, rep in self.models.items():
            lines.append("")
            lines.append(f"{name}")
            lines.append(f"  {'label':<22}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
            for key in (*LABELS, "macro", "accuracy"):
                row = rep[key]
                lines.append(
                    f"  {key:<22}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{int(row['support']):>9d}"
                )
        for title, micro in (
            ("broker micro-F1", self.brokers),
            ("ticker-by-code micro-F1", self.tickers_by_code),
        ):
            if micro is None:
                continue
            lines.append("")
            if not micro["support"]:
                lines.append(f"{title}: not scored (no gold mentions in these posts)")
                continue
            lines.append(
                f"{title}: P {micro['precision']:.3f}  R {micro['recall']:.3f}  F1 {micro['f1']:.3f}"
                f"  (gold mentions {int(micro['support'])})"
            )
        return "\n".join(lines)


def evaluate(
    examples: Sequence[Example],
    model: str | Path | None = None,
    *,
    split: str = "dev",
    compare: bool = True,
    entities: bool = True,
) -> EvalResult:
    """Score the model (and, with ``compare``, each candidate stored beside it) on ``examples``."""
    from nlp.classify import load_classifier
    from nlp.views import classifier_input

    texts = [classifier_input(ex.text) for ex in examples]
    gold = [ex.label for ex in examples]
    main = load_classifier(model)
    result = EvalResult(split=split, n=len(examples))
    from nlp.entities import brokers_of, extract
    from nlp.views import has_japanese

    mentions = [extract(ex.text) for ex in examples]
    # The pipeline's scope rule: a post without Japanese that names no broker is irrelevant, model unasked.
    out = [not has_japanese(t) and not brokers_of(m) for t, m in zip(texts, mentions, strict=True)]

    def scoped(probs: np.ndarray) -> np.ndarray:
        probs = np.array(probs, dtype=np.float32)
        probs[out] = np.eye(len(LABELS), dtype=np.float32)[LABELS.index("irrelevant")]
        return probs

    pred = best_labels(scoped(main.predict_proba(texts)))
    result.models[f"shipped {main.model_version}: {_DESCRIPTION.get(main.use, main.use)}"] = label_report(
        gold, pred
    )
    result.errors = [(ex.id, g, p) for ex, g, p in zip(examples, gold, pred, strict=True) if g != p]
    if compare and main.use != "hf-torch":
        for use in ("tfidf", "words", "cascade", "transformer", "ensemble"):
            if use == main.use or not _has_candidate(main.path, use):
                continue
            other = load_classifier(main.path, use=use)
            name = f"beside it: {_DESCRIPTION[use]}"
            result.models[name] = label_report(gold, best_labels(scoped(other.predict_proba(texts))))
    if entities:
        result.brokers = set_micro(
            [set(ex.brokers) for ex in examples], [set(brokers_of(m)) for m in mentions]
        )
        result.tickers_by_code = set_micro(
            [set(ex.tickers) for ex in examples],
            [{m.value for m in ms if m.kind == "ticker" and m.by == "code"} for ms in mentions],
        )
    return result


_DESCRIPTION = {
    "tfidf": "TF-IDF + logistic regression (baseline)",
    "transformer": "tiny BERT / fine-tuned transformer (ONNX)",
    "ensemble": "ensemble of baseline and transformer",
    "hf-torch": "Hugging Face checkpoint (torch)",
    "words": "TF-IDF of chars and Sudachi words + logistic regression (every post through Sudachi)",
    "cascade": "cascade: baseline first, Sudachi words model for the posts it is unsure of",
}


def _has_candidate(directory: Path, use: str) -> bool:
    import json

    if use in ("ensemble", "cascade"):
        try:
            cfg = json.loads((directory / "classifier.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if use == "cascade":
            stages = cfg.get("cascade") or {}
            return bool(stages) and all((directory / stages.get(k, "-")).is_dir() for k in ("first", "second"))
        weights = cfg.get("weights") or cfg.get("ensemble_weights") or {}
        return bool(weights) and all((directory / c).is_dir() for c in weights)
    return (directory / use).is_dir()
