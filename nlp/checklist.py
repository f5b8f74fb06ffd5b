"""CheckList-style invariance edits: changes to a post that must not change its label or hide its broker.

A link, an @mention, a repost prefix, emoji or an appended hashtag say nothing about whose account was used.
:func:`flip_rates` applies each edit to every text and counts the labels (and broker sets) that change.
``tests/test_nlp_invariance.py`` holds the shipped model to at most 2% per edit on the test split, and
``benchmarks/nlp_invariance.py`` prints the rates.

>>> sorted(INVARIANCE_EDITS)[:3]
['@mention and link', '@mention prefixed', 'RT prefix']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

INVARIANCE_EDITS: dict[str, Callable[[str], str]] = {
    "t.co link appended": lambda t: f"{t} https://t.co/Xk3bQ9zLmA",
    "@mention prefixed": lambda t: f"@kabu_taro88 {t}",
    "@mention and link": lambda t: f"@kabu_taro88 {t} https://t.co/Xk3bQ9zLmA",
    "RT prefix": lambda t: f"RT @kabu_taro88: {t}",
    "emoji appended": lambda t: f"{t}😱😱",
    "hashtag appended": lambda t: f"{t} #つぶやき",
    "quoted-post link appended": lambda t: f"{t} https://x.com/kabu_taro88/status/1902345678901234567",
}


@dataclass(frozen=True)
class EditResult:
    edit: str
    flipped: tuple[int, ...]  # indexes of texts whose label changed
    lost_broker: tuple[int, ...]  # indexes of texts that lost a broker

    def rate(self, n: int) -> float:
        return len(self.flipped) / n if n else 0.0


def flip_rates(analyzer: Any, texts: Sequence[str]) -> list[EditResult]:
    """Run ``analyzer`` (an nlp.Analyzer) on the texts and on every edit of them."""
    base = analyzer.analyze_batch(list(texts))
    out = []
    for name, edit in INVARIANCE_EDITS.items():
        edited = analyzer.analyze_batch([edit(t) for t in texts])
        flipped = tuple(i for i, (a, b) in enumerate(zip(base, edited, strict=True)) if a.label != b.label)
        lost = tuple(i for i, (a, b) in enumerate(zip(base, edited, strict=True)) if set(a.brokers) - set(b.brokers))
        out.append(EditResult(name, flipped, lost))
    return out
