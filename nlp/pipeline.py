"""The NLP stage in one call: normalize, classify, extract brokers and tickers.

>>> from nlp import Analyzer
>>> analyzer = Analyzer.load()                                   # the bundled model, offline
>>> a = analyzer.analyze("楽天証券の口座に不正ログインされて、保有株を勝手に売られた")
>>> a.label in LABELS, a.brokers
(True, ['楽天証券'])
>>> sorted(a.to_json("p1"))
['brokers', 'id', 'label', 'mentions', 'model', 'score', 'scores', 'tickers']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlp.classify import TextClassifier, load_classifier
from nlp.corpus import LABELS
from nlp.entities import Mention, brokers_of, extract_traced, tickers_of
from nlp.errors import TextError
from nlp.normalize import normalize
from nlp.securities import SecuritiesMaster
from nlp.tokenize import DICTIONARY_VERSION
from nlp.views import classifier_view, has_japanese

# Scores are rounded for the JSON line: more digits carry no information and bloat every output line.
SCORE_DIGITS = 4


@dataclass(frozen=True)
class Analysis:
    """The NLP annotation of one post."""

    label: str
    score: float
    scores: dict[str, float]
    brokers: list[str]
    tickers: list[str]
    mentions: list[Mention] = field(default_factory=list)
    model: str = ""
    # What ran for this post besides the model: the Sudachi dictionary ("" when Sudachi did not run) and
    # how the first model split the text ("char-ngrams", "subword").
    dictionary: str = ""
    tokenizer: str = ""

    def to_json(self, id: str) -> dict[str, Any]:  # noqa: A002 - the contract's field name
        """Exactly one ``nlp classify`` output line (DESIGN.md), ready for json.dumps."""
        return {
            "id": id,
            "label": self.label,
            "score": self.score,
            "scores": dict(self.scores),
            "brokers": list(self.brokers),
            "tickers": list(self.tickers),
            "mentions": [m.to_json() for m in self.mentions],
            "model": self.model,
        }


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TextError(f"text must be a string, got {type(text).__name__}; pass the post's text field")
    return text


class Analyzer:
    """Normalizer, classifier and extractor bound together; create once with :meth:`load`."""

    def __init__(self, classifier: TextClassifier, master: SecuritiesMaster | None = None) -> None:
        self.classifier = classifier
        self.master = master or SecuritiesMaster.bundled()
        self.model_version = classifier.model_version

    @classmethod
    def load(
        cls, model: str | Path | None = None, securities: Sequence[str | Path] = (), threads: int | None = None
    ) -> Analyzer:
        """The bundled model (``None``) or a model directory from ``incident-monitor nlp train``.

        ``securities`` names official listed-company files (JPX ``data_j.xls``, the EDINET code list CSV,
        HK / Shanghai / Shenzhen lists) read once here, beside the bundled master, so every TSE code counts
        as listed when tickers are extracted. ``threads``: ONNX Runtime threads (None: onnxruntime decides).
        """
        master = SecuritiesMaster.load(*securities) if securities else SecuritiesMaster.bundled()
        return cls(load_classifier(model, threads=threads), master)

    def analyze(self, text: str) -> Analysis:
        return self.analyze_batch([text])[0]

    def analyze_batch(self, texts: Sequence[str]) -> list[Analysis]:
        """Analyze many posts at once: one classifier call for the whole batch is the fast path."""
        texts = [_check_text(t) for t in texts]
        # Normalized once: the classifier reads its view of the text, the extractor the text and its offsets.
        normalized = [normalize(t) for t in texts]
        traced = [extract_traced(t, self.master, normalized=n) for t, n in zip(texts, normalized, strict=True)]
        mentions = [found for found, _ in traced]
        views = [classifier_view(n, t) for n, t in zip(normalized, texts, strict=True)]
        # Posts in other languages that name no broker are out of scope: irrelevant without asking the model
        # (it was trained on Japanese and English posts about brokers, and would guess on K-pop fan posts).
        # The language is read from the classifier's view, so a Japanese hashtag appended to an English post
        # (… #つぶやき) does not bring it into scope.
        in_scope = [
            has_japanese(v) or any(m.kind == "broker" for m in ms) for v, ms in zip(views, mentions, strict=True)
        ]
        asked = [i for i, keep in enumerate(in_scope) if keep]
        probs = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        probs[:, LABELS.index("irrelevant")] = 1.0
        sudachi = np.zeros(len(texts), dtype=bool)
        if asked:
            probs[asked], sudachi[asked] = self.classifier.predict([views[i] for i in asked])
        out: list[Analysis] = []
        sudachi |= np.array([ran for _, ran in traced], dtype=bool)
        for row, found, ran in zip(probs, mentions, sudachi, strict=True):
            best = int(np.argmax(row))
            scores = {lab: round(float(p), SCORE_DIGITS) for lab, p in zip(LABELS, row, strict=True)}
            out.append(
                Analysis(
                    label=LABELS[best],
                    score=scores[LABELS[best]],
                    scores=scores,
                    brokers=brokers_of(found),
                    tickers=tickers_of(found),
                    mentions=found,
                    model=self.model_version,
                    # Provenance names what ran for this post: the Sudachi dictionary only when it did.
                    dictionary=DICTIONARY_VERSION if ran else "",
                    tokenizer=self.classifier.tokenizer,
                )  # fmt: skip
            )
        return out
