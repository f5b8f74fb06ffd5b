"""Posts per second of normalize() + extract() beside SudachiPy tokenization of the same posts.

Run: python benchmarks/entities_speed.py [--posts 3000] [--repeat 3]

Posts are the project's labeled corpus (nlp/corpus/*.jsonl) cycled to the requested count, so the mix of
lengths, brokers, codes and hard negatives is that of realistic posts. One core, best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nlp.entities import extract
from nlp.normalize import normalize
from nlp.tokenize import get_tokenizer

CORPUS = Path(__file__).resolve().parents[1] / "nlp" / "corpus"
FALLBACK = [
    "楽天証券で勝手に中国株を買われた。香港株の00700と02269、もう最悪😭 #楽天証券",
    "SBIから「ログインがありました」ってメール、2時15分。暗証番号1234は変えた",
    "楽天市場で2000円のお買い物、楽天カードで払った",
    "トヨタ(7203)を売られて【2269】を買われてた https://t.co/abc",
]


def _posts(count: int) -> list[str]:
    texts = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                texts.append(json.loads(line)["text"])
            except (ValueError, KeyError, TypeError):
                continue
    texts = texts or FALLBACK
    return [texts[i % len(texts)] for i in range(count)]


def _rate(fn, posts: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for text in posts:
            fn(text)
        best = min(best, time.perf_counter() - start)
    return len(posts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    posts = _posts(args.posts)
    tokenizer = get_tokenizer()
    for text in posts[:100]:  # warm caches and the lazily built regexes
        extract(text)
        tokenizer.tokens(text, "C")
    chars = sum(map(len, posts)) / len(posts)
    normalize_rate = _rate(normalize, posts, args.repeat)
    extract_rate = _rate(extract, posts, args.repeat)
    sudachi_rate = _rate(lambda t: tokenizer.tokens(t, "C"), posts, args.repeat)
    print(f"posts: {len(posts)} (mean {chars:.0f} chars), one core, best of {args.repeat}")
    print(f"normalize only          {normalize_rate:10,.0f} posts/s  {1e6 / normalize_rate:7.1f} us/post")
    print(f"normalize + extract     {extract_rate:10,.0f} posts/s  {1e6 / extract_rate:7.1f} us/post")
    print(f"baseline: Sudachi C     {sudachi_rate:10,.0f} posts/s  {1e6 / sudachi_rate:7.1f} us/post")
    print(f"ratio extract / Sudachi {extract_rate / sudachi_rate:.2f}")


if __name__ == "__main__":
    main()
