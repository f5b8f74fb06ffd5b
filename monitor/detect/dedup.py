"""Near-duplicate texts (copypasta posted by several accounts) found with MinHash LSH from ``datasketch``.

Two reports whose normalized texts share most character n-grams are linked; the counter then treats the
authors they join as one reporter, so a pasted template does not look like a crowd.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

from nlp.normalize import normalize

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"[@＠][A-Za-z0-9_]+")
_URL_TOKEN = re.compile(r"<url:[^>]*>")  # how nlp.normalize marks a link
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def normalize_text(text: str) -> str:
    """Fold a post's text so that trivially edited copies compare equal.

    >>> normalize_text("楽天証券で 勝手に 買われた!! https://t.co/x @taro")
    '楽天証券で勝手に買われた'
    >>> normalize_text("ＳＢＩ証券") == normalize_text("SBI証券".lower())
    True
    """
    # nlp's normalizer folds Japanese variants (width, kana, repeated marks); links it marks are dropped.
    folded = _URL_TOKEN.sub(" ", normalize(_nfkc(text)).text)
    folded = _MENTION.sub(" ", _URL.sub(" ", folded))
    return _NOISE.sub("", folded).lower()


def shingles(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the normalized text; a text shorter than n is its own single shingle.

    >>> sorted(shingles("abcd", 3))
    ['abc', 'bcd']
    >>> shingles("ab", 3)
    {'ab'}
    """
    t = normalize_text(text)
    if len(t) <= n:
        return {t}
    return {t[i : i + n] for i in range(len(t) - n + 1)}


class NearDuplicates:
    """Finds, among a batch of texts, the pairs whose estimated Jaccard similarity reaches ``threshold``.

    Signatures are cached by key (a post key), so the overlapping batches that successive detector calls
    pass are hashed once. The cache is a speed-up only: results do not depend on it.

    >>> nd = NearDuplicates(threshold=0.7)
    >>> texts = {"a": "楽天証券で勝手に中国株を買われた。全部売られてた", "b": "楽天証券で勝手に中国株を買われた。全部売られてた!!",
    ...          "c": "SBI証券のログイン履歴に知らない端末がある"}
    >>> nd.neighbours(list(texts), list(texts.values()))
    {'a': ['b'], 'b': ['a'], 'c': []}
    """

    def __init__(
        self, threshold: float = 0.7, num_perm: int = 64, shingle_chars: int = 3, cache_size: int = 50_000
    ):
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_chars = shingle_chars
        probe = MinHashLSH(threshold=threshold, num_perm=num_perm)  # its band layout costs a numeric
        self._params = (probe.b, probe.r)  # integration: work it out once, not per batch
        self._cache: dict[str, MinHash] = {}
        self._cache_size = cache_size
        # Drawing the permutations is most of what a new MinHash costs; the same seed draws the same ones,
        # so draw them once and share them (signatures are unchanged).
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations = (template.permutations, template.scheme)
        # The keys of the previous call: their index, signatures and near-duplicate links among them.
        self._lsh = MinHashLSH(num_perm=num_perm, params=self._params)
        self._sigs: dict[str, MinHash] = {}
        self._links: dict[str, set[str]] = {}

    def signature(self, key: str, text: str) -> MinHash:
        sig = self._cache.get(key)
        if sig is None:
            permutations, scheme = self._permutations
            sig = MinHash(num_perm=self.num_perm, seed=1, permutations=permutations, scheme=scheme)
            sig.update_batch([s.encode("utf-8") for s in sorted(shingles(text, self.shingle_chars))])
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # crude but bounded; a miss only costs a re-hash
            self._cache[key] = sig
        return sig

    def neighbours(self, keys: Sequence[str], texts: Sequence[str]) -> dict[str, list[str]]:
        """For each key, the other keys whose text is a near-duplicate of its text (sorted).

        Whether two texts are near-duplicates depends on the pair alone (their signatures share an LSH band
        and their estimated Jaccard similarity reaches the threshold), so the index and the links found are
        kept between calls: a call drops the keys that left, and only keys new since the previous call are
        queried and inserted. Successive detector calls pass windows that mostly overlap, so a call costs
        what entered the window, not the whole window; the answer is the one a fresh index would give.
        """
        out: dict[str, list[str]] = {k: [] for k in keys}
        wanted: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            wanted.setdefault(k, t)
        for gone in [k for k in self._links if k not in wanted]:
            self._lsh.remove(gone)
            for other in self._links.pop(gone):
                self._links[other].discard(gone)
            del self._sigs[gone]
        for k, t in wanted.items():
            if k in self._links:
                continue
            sig = self.signature(k, t)
            found = {c for c in self._lsh.query(sig) if sig.jaccard(self._sigs[c]) >= self.threshold}
            for c in found:
                self._links[c].add(k)
            self._links[k] = found
            self._sigs[k] = sig
            self._lsh.insert(k, sig)
        if len(wanted) < 2:
            return out
        for k in out:
            out[k] = sorted(self._links[k])
        return out
