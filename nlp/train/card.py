"""The model card written beside every trained model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_card(out: Path, config: dict[str, Any]) -> None:
    dev, speed, eligible = config["dev"], config["posts_per_s"], set(config["eligible"])
    names = {"tfidf": "TF-IDF + logistic regression baseline", "transformer": "tiny BERT (ONNX)",
             "ensemble": "weighted ensemble of the baseline and the tiny BERT",
             "words": "TF-IDF of chars and Sudachi words (voice markers) + logistic regression",
             "cascade": "cascade: the baseline for every post, the Sudachi words model for the posts it is unsure of"}  # fmt: skip
    rows = "\n".join(
        f"| {names.get(c, c)} | {v['victim_report_f1']:.3f} | {v['macro_f1']:.3f} | {speed.get(c, 0)} | "
        f"{'yes' if c in eligible else 'no'} |"
        for c, v in dev.items()
    )
    use = config["use"]
    better = [c for c in dev if c != use and dev[c]["victim_report_f1"] > dev[use]["victim_report_f1"]]
    why = (
        f"The shipped classifier is the {names[use]} because it has the best victim_report F1 on the dev split "
        f"({dev[use]['victim_report_f1']:.3f}) among the candidates fast enough for the 2,000 posts/s budget of the "
        "NLP stage"
    )
    if better:
        why += (
            "; "
            + ", ".join(
                f"the {names[c]} scored {dev[c]['victim_report_f1']:.3f} but classifies only {speed[c]} posts/s"
                for c in better
            )  # fmt: skip
            + f" against {speed[use]} posts/s"
        )
    why += "; the test split was not used to choose."
    tradeoff = config.get("victim_tradeoff") or []
    threshold = (
        "No victim_report decision threshold was tuned: the label is the plain argmax."
        if not tradeoff
        else "The victim_report decision threshold is a shift of its log-odds: the one chosen on the dev split (the "
        "best dev F1; within 0.005 of it, the smallest shift, as dev cannot tell those apart), "
        f"{config.get('victim_bias_dev', config['victim_bias']):+.2f}, plus a fixed offset of "
        f"{config.get('victim_bias_offset', 0.0):+.2f} for real pages (capped at +1.00), where the models under-call "
        "victim reports at their dev threshold (`victim_bias_offset`, README 'Measured'): "
        f"{config['victim_bias']:+.2f}. Precision / recall on dev for every shift tried:\n\n"
        "| shift | dev precision | dev recall | dev F1 |\n| --- | --- | --- | --- |\n"
        + "\n".join(
            f"| {r['bias']:+.2f}{_mark(r['bias'], config)} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |"
            for r in tradeoff
        )
    )
    spec = config.get("tfidf_spec") or {}
    features = (
        f"Baseline features: char 1-{spec.get('ngram_max', 3)}-gram TF-IDF of the views {', '.join(spec.get('views', []))}"
        + (
            f", plus the dense '{', '.join(spec['dense'])}' block (nlp/features.py) x{spec.get('dense_scale', 1.0)}"
            if spec.get("dense")
            else ""
        )  # fmt: skip
        + f"; train split extended with {config['augmented_posts']} generated reported-speech / third-person posts."
    )
    words = config.get("words_spec") or {}
    if words:
        features += (
            f"\n\nWords model features: the views {', '.join(words['views'])}; 'words' are Sudachi (sudachidict_core, "
            "split mode C) normalized forms of the writer's own words (quotations collapsed to 「」), word 1-3-grams, "
            "with markers after passive / causative auxiliaries, first-person and close-person nouns (and a following "
            "possessive の), honorific close-person nouns (ご主人: someone else's) and reportive endings (らしい, "
            "とのこと, the hearsay そう; nlp/features.py `word_tokens`)."
        )
    if "event" in (*spec.get("views", []), *words.get("views", [])):
        features += (
            "\n\nThe 'event' view (nlp/features.py `event_view`) is the writer's own sentences that tell an event "
            "(勝手に, 売られ, 身に覚え, 被害, 出金...), outside quotations unless the writer frames a quotation as "
            "their own or a close person's, so a case told in one sentence of a long text keeps its weight; a text "
            "that is one quotation and nothing else is read as it stands."
        )
    cascade = config.get("cascade") or {}
    if cascade:
        features += (
            f"\n\nCascade: every post is read by the baseline; a post whose highest baseline probability is below "
            f"{cascade['confidence']} goes to the words model, whose probabilities it then gets "
            f"({cascade['dev_share']:.0%} of dev posts). Sudachi runs only for those posts, and only their "
            "annotations name the Sudachi dictionary."
        )
    card = f"""# {config["name"]}@{config["version"]}

{why}

Trained by `incident-monitor nlp train` on {config["train_posts"]} posts (train split), compared on
{config["dev_posts"]} posts (dev split), seed {config["seed"]}, transformer base: {config["base"]}. The version
is a hash of the training inputs (labelled posts, seed and settings: {config["data_version"]}) and of what
training made of them (vocabularies, weights, the choices below), with no date: the same data, seed and code
give the same version and the same weights, and a change that changes the weights changes the version.

| candidate | dev victim_report F1 | dev macro F1 | classifier posts/s (same run) | eligible |
| --- | --- | --- | --- | --- |
{rows}

{features}

{threshold}

Inference runs on numpy / scikit-learn / SudachiPy (and onnxruntime with the saved fast tokenizer for a
transformer): no torch. Weights are plain arrays (`tfidf/weights.npz`, `words/weights.npz`,
`transformer/model.onnx`); nothing is unpickled at load time. Posts are classified as the classifier view
of nlp/views.py sees them: no links, @handles, emoji or `RT @user:` prefixes.
Measure it with `incident-monitor nlp eval --split test` (report the test figures; do not tune on them).
"""
    (out / "model_card.md").write_text(card, encoding="utf-8")


def _mark(bias: float, config: dict[str, Any]) -> str:
    pairs = (("dev choice", "victim_bias_dev"), ("shipped", "victim_bias"))
    marks = [name for name, key in pairs if config.get(key) == bias]
    return f" ({', '.join(marks)})" if marks else ""
