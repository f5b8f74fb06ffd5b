"""The whole `nlp train` run: fit the candidates on train, choose on dev, write a model directory.

Both candidates are fitted on the train split and compared on the dev split only (the test split is never
looked at here); the better one - or a weighted ensemble of the two, when that is better still on dev - is
what the written model directory uses. Both candidates are kept in the directory so ``nlp eval`` can report
them side by side. The jobs live in their own modules: augment (generated train posts), baseline (TF-IDF),
tokenizer + transformer + export (the tiny BERT to ONNX), select (speed rule, threshold) and card.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from nlp.classify import CONFIG_NAME, FORMAT_VERSION, Cascade, Ensemble, TfidfLogReg, routed_probs
from nlp.corpus import LABELS, Example, load_corpus
from nlp.train.augment import reported_speech, third_person
from nlp.train.baseline import fit_tfidf
from nlp.train.card import write_card
from nlp.train.config import CANDIDATES, Log, TrainConfig, TrainError, seed_everything, victim_f1
from nlp.train.select import BIAS_GRID, choose_cascade, choose_victim_bias, eligible_candidates, throughput
from nlp.train.transformer import fit_transformer


@dataclass
class TrainReport:
    output: Path
    use: str
    dev: dict[str, tuple[float, float]]  # candidate -> (victim_report F1, macro F1) on dev
    weights: dict[str, float]
    version: str
    n_train: int
    n_dev: int


def data_version(examples: Sequence[Example], seed: int, settings: str = "") -> str:
    """What a training run is given: a hash of the labeled data, the seed and the training settings - no
    date, so the same data, seed and settings always give the same hash (:func:`model_version` adds what the
    run made of them).

    >>> ex = [Example("a", "text", "irrelevant")]
    >>> data_version(ex, 13) == data_version(list(ex), 13), data_version(ex, 13) == data_version(ex, 14)
    (True, False)
    """
    h = hashlib.sha256(f"{seed}\n{settings}\n".encode())
    for ex in sorted(examples, key=lambda e: e.id):
        h.update(f"{ex.id}\t{ex.label}\t{ex.text}\n".encode())
    return h.hexdigest()[:12]


def model_version(inputs: str, artifacts: Mapping[str, bytes]) -> str:
    """The model version: a hash of the inputs (:func:`data_version`) and of what training made of them -
    the saved candidates' files (vocabularies, idf, weights) and the choices that decide a prediction.

    The inputs alone did not name one model: a code or library change that changes the weights (a
    vocabulary tie-break, a new scikit-learn) left the version as it was. Still no date: the same data, seed,
    settings and code give the same version.

    >>> model_version("abc", {"tfidf/weights.npz": b"1"}) == model_version("abc", {"tfidf/weights.npz": b"1"})
    True
    >>> model_version("abc", {"tfidf/weights.npz": b"1"}) == model_version("abc", {"tfidf/weights.npz": b"2"})
    False
    """
    h = hashlib.sha256(f"{inputs}\n".encode())
    for name in sorted(artifacts):
        h.update(f"{name}\t{len(artifacts[name])}\n".encode())
        h.update(artifacts[name])
    return h.hexdigest()[:12]


def _artifacts(out: Path, candidates: Sequence[str], choices: Mapping[str, object]) -> dict[str, bytes]:
    # Every file the candidates saved (not stray files of an earlier run in `out`) and the choices that
    # classifier.json adds; not the measured posts/s, which change from run to run and decide nothing
    # once `use` is chosen.
    paths = [p for c in candidates for p in (out / c).rglob("*") if p.is_file()]
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in paths}
    return {**files, "choices": json.dumps(choices, sort_keys=True).encode()}


def train(
    output: str | Path,
    *,
    corpus: Sequence[str | Path] | None = None,
    examples: Sequence[Example] | None = None,
    base: str | None = None,
    cfg: TrainConfig | None = None,
    name: str = "victim-clf",
    candidates: Sequence[str] = CANDIDATES,
    log: Log = print,
) -> TrainReport:
    """Fit the candidates on train, choose on dev, write a model directory to ``output``."""
    from nlp.views import VIEW_VERSION, classifier_input

    cfg = cfg or TrainConfig()
    seed_everything(cfg.seed)
    data = list(examples) if examples is not None else load_corpus(paths=corpus)
    # In id order, as data_version hashes them: the generated posts pick train posts by position, so the
    # order of the corpus files (or of --corpus paths) must not change the model behind one version.
    tr = sorted((ex for ex in data if ex.split == "train"), key=lambda ex: ex.id)
    dv = [ex for ex in data if ex.split == "dev"]
    if len(tr) < 10 or len({ex.label for ex in tr}) < len(LABELS) or not dv:
        raise TrainError(
            f"too little data: {len(tr)} train / {len(dv)} dev posts; every label needs train posts and dev must "
            "not be empty (add posts to the corpus)"
        )
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    extra = reported_speech(tr, cfg.augment_ratio, cfg.seed) + third_person(
        tr, cfg.third_person_ratio, cfg.seed
    )
    x_tr = [classifier_input(ex.text) for ex in (*tr, *extra)]
    x_dv = [classifier_input(ex.text) for ex in dv]
    y_tr, y_dv = [ex.label for ex in (*tr, *extra)], [ex.label for ex in dv]
    log(f"train {len(tr)} posts (+{len(extra)} reported-speech variants), dev {len(dv)} posts -> {out}")

    models: dict[str, Any] = {}
    probs: dict[str, np.ndarray] = {}
    if "tfidf" in candidates:
        log("baseline: TF-IDF + logistic regression")
        models["tfidf"] = fit_tfidf(x_tr, y_tr, x_dv, y_dv, cfg, log)
        models["tfidf"].save(out / "tfidf")
        models["tfidf"] = TfidfLogReg.load(out / "tfidf")  # score what was saved, not what is in memory
    if "words" in candidates:
        log("words: TF-IDF of chars and Sudachi words (with voice markers) + logistic regression")
        models["words"] = fit_tfidf(x_tr, y_tr, x_dv, y_dv, cfg, log, views=cfg.words_views)
        models["words"].save(out / "words")
        models["words"] = TfidfLogReg.load(out / "words")
    if "transformer" in candidates:
        log(f"transformer: {'fine-tuning ' + base if base else 'tiny BERT from scratch'}")
        models["transformer"] = fit_transformer(x_tr, y_tr, x_dv, y_dv, out / "transformer", cfg, base, log)
    for cand, m in models.items():
        probs[cand] = m.predict_proba(x_dv)
    dev = {cand: victim_f1(y_dv, p) for cand, p in probs.items()}
    weights: dict[str, float] = {}
    cascade: dict[str, object] = {}
    if "tfidf" in models and "words" in models:
        confidence, share, rows = choose_cascade(y_dv, probs["tfidf"], probs["words"], cfg.cascade_max_share)
        for row in rows:
            log(f"  cascade confidence {row['confidence']:.2f}: {row['share']:.0%} of dev read by words, "
                f"dev victim F1 {row['f1']:.3f}{'  <- chosen' if row['confidence'] == confidence else ''}")  # fmt: skip
        cascade = {"first": "tfidf", "second": "words", "confidence": confidence, "dev_share": round(share, 4)}
        models["cascade"] = Cascade(models["tfidf"], models["words"], confidence)
        probs["cascade"] = routed_probs(probs["tfidf"], probs["words"], confidence)
        dev["cascade"] = victim_f1(y_dv, probs["cascade"])
    if "tfidf" in models and "transformer" in models:
        best_w, best_score = None, None
        for w in np.linspace(0.1, 0.9, 9):
            mix = w * probs["tfidf"] + (1 - w) * probs["transformer"]
            score = victim_f1(y_dv, mix)
            if best_score is None or score > best_score:
                best_w, best_score = float(w), score
        assert best_w is not None and best_score is not None  # the loop above runs nine times
        dev["ensemble"] = best_score
        weights = {"tfidf": round(best_w, 2), "transformer": round(1 - best_w, 2)}
    speed = throughput(models, x_dv)
    eligible = eligible_candidates(speed, cfg)
    # An ensemble must beat both members clearly to be worth its double cost at inference.
    ranked = sorted(
        (c for c in dev if c in eligible),
        key=lambda c: (dev[c][0] - (0.01 if c == "ensemble" else 0.0), dev[c][1]),
        reverse=True,
    )
    use = ranked[0]
    for cand in dev:
        note = "" if cand in eligible else "  (too slow for the stage budget: not eligible)"
        log(f"dev {cand:<12} victim_report F1 {dev[cand][0]:.3f}  macro F1 {dev[cand][1]:.3f}  "
            f"{speed[cand]:.0f} posts/s{note}")  # fmt: skip
    log(f"selected: {use}")
    chosen = cast(np.ndarray, sum(w * probs[c] for c, w in weights.items())) if use == "ensemble" else probs[use]
    dev_bias, tradeoff = choose_victim_bias(y_dv, chosen) if cfg.tune_victim_bias else (0.0, [])
    # Real pages tell a case more obliquely than the corpus, and every model so far under-called victim
    # reports there at its dev threshold, so the shipped shift is the dev choice plus a fixed offset.
    bias = min(BIAS_GRID[-1], round(dev_bias + cfg.victim_bias_offset, 2)) if tradeoff else 0.0
    for row in tradeoff:
        mark = "  <- dev choice" if row["bias"] == dev_bias else ""
        mark += f"  <- shipped (dev choice + offset {cfg.victim_bias_offset:+.2f})" if row["bias"] == bias else ""
        log(f"  victim bias {row['bias']:+.2f}: dev P {row['precision']:.3f} R {row['recall']:.3f} "
            f"F1 {row['f1']:.3f}{mark}")  # fmt: skip
    # "train-order:id": models trained before the train posts were sorted must not share a version with these.
    settings = (cfg, tuple(candidates), base or "scratch", VIEW_VERSION, FORMAT_VERSION, "train-order:id")
    inputs = data_version(data, cfg.seed, repr(settings))
    choices = {
        "use": use,
        "weights": weights if use == "ensemble" else {},
        "cascade": cascade,
        "victim_bias": bias,
    }
    version = model_version(inputs, _artifacts(out, sorted(c for c in models if c != "cascade"), choices))
    config = {
        "format": FORMAT_VERSION, "name": name, "version": version, "data_version": inputs, "use": use,
        "weights": weights if use == "ensemble" else {},
        "candidates": sorted(c for c in models if c != "cascade"), "dev": {c: {"victim_report_f1": round(v[0], 4), "macro_f1": round(v[1], 4)}
                                              for c, v in dev.items()},
        "ensemble_weights": weights, "base": base or "scratch", "train_posts": len(tr), "dev_posts": len(dv),
        "victim_bias": bias, "victim_bias_dev": dev_bias, "victim_bias_offset": cfg.victim_bias_offset,
        "victim_tradeoff": tradeoff,
        "tfidf_spec": {**models["tfidf"].spec.__dict__, "views": list(models["tfidf"].spec.views),
                       "dense": list(models["tfidf"].spec.dense)} if "tfidf" in models else {},
        "cascade": cascade, "words_spec": {"views": list(cfg.words_views)} if "words" in models else {},
        "seed": cfg.seed, "augmented_posts": len(extra), "posts_per_s": {c: round(v) for c, v in speed.items()}, "eligible": sorted(eligible),
    }  # fmt: skip
    (out / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    write_card(out, config)
    if use == "ensemble":
        Ensemble([(models[c], w) for c, w in weights.items()])  # fails now rather than at load time
    return TrainReport(out, use, dev, weights, version, len(tr), len(dv))
