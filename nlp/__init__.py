"""Japanese NLP for incident-monitor: normalize, classify and extract brokers and tickers.

A pure text library: it imports neither ``monitor`` nor ``storage``. Heavy parts (the classifier, the
Sudachi dictionary) load lazily, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlp.corpus import LABELS

if TYPE_CHECKING:
    from nlp.pipeline import Analysis, Analyzer

__all__ = ["LABELS", "Analysis", "Analyzer"]


def __getattr__(name: str) -> Any:
    # Importing `nlp` stays cheap (no onnxruntime, no Sudachi) until the pipeline is used.
    if name in ("Analysis", "Analyzer"):
        from nlp import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'nlp' has no attribute {name!r}")
