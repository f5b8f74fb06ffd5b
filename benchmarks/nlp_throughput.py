"""Posts per second of the whole NLP stage (normalize + classify + extract) beside Sudachi alone.

Both run in this process on the same 10,000 posts (the labeled corpus, cycled), so the ratio holds
however busy the machine is. Peak memory: tracemalloc (Python allocations during the run) and the
process's maximum resident set size (includes the ONNX / Sudachi native memory), measured in a
separate pass so tracing does not slow the timed one.

    python benchmarks/nlp_throughput.py [--posts 10000] [--batch 256] [--model DIR]

Run it on two cores as the target says: taskset -c 0,1 python benchmarks/nlp_throughput.py
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nlp.corpus import load_corpus  # noqa: E402
from nlp.pipeline import Analyzer  # noqa: E402
from nlp.tokenize import get_tokenizer  # noqa: E402


def posts(n: int) -> list[str]:
    texts = [ex.text for ex in load_corpus()]
    # Suffixes keep the posts distinct, so no layer can win by caching repeated inputs.
    return [f"{t} #{i}" for i, t in zip(range(n), itertools.cycle(texts), strict=False)]


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    data = posts(args.posts)
    chars = sum(len(t) for t in data)
    start = time.perf_counter()
    analyzer = Analyzer.load(args.model)
    analyzer.analyze_batch(data[:64])  # start-up: the model, the lexicons, the Sudachi dictionary
    t_startup = time.perf_counter() - start
    tok = get_tokenizer()
    tok.tokens(data[0], "C")

    import sudachipy

    raw = sudachipy.Dictionary(dict="core").tokenizer(mode=sudachipy.SplitMode.C)
    raw.tokenize(data[0])

    def sudachi_only(texts):
        for t in texts:
            raw.tokenize(t)

    def wrapper_only(texts):
        for t in texts:
            tok.tokens(t, "C")

    def stage(texts):
        for s in range(0, len(texts), args.batch):
            analyzer.analyze_batch(texts[s : s + args.batch])

    t_sudachi = timed(sudachi_only, data)
    t_wrapper = timed(wrapper_only, data)
    t_stage = timed(stage, data)
    # tracemalloc slows every allocation down, so memory is measured in a separate, untimed pass.
    tracemalloc.start()
    stage(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n = len(data)
    print(f"posts: {n} (mean {chars / n:.0f} chars), batch {args.batch}, model {analyzer.model_version} "
          f"({analyzer.classifier.use})")  # fmt: skip
    print(f"SudachiPy tokenize alone (C):  {n / t_sudachi:10.0f} posts/s  ({t_sudachi:.2f} s)")
    print(f"nlp.tokenize tokens() (C):     {n / t_wrapper:10.0f} posts/s  ({t_wrapper:.2f} s)")
    print(f"full NLP stage:                {n / t_stage:10.0f} posts/s  ({t_stage:.2f} s)")
    with_startup = n / (t_stage + t_startup)
    print(f"full NLP stage incl. start-up: {with_startup:10.0f} posts/s  (start-up {t_startup:.2f} s)")
    routed = sum(a.dictionary != "" for a in analyzer.analyze_batch(data[:2000])) / min(n, 2000)
    print(f"posts read by the Sudachi stage of the cascade: {routed:.1%}")
    print(
        f"ratio full stage / SudachiPy alone: {t_sudachi / t_stage:.2f} (posts/s of the stage per posts/s of Sudachi)"
    )
    print(f"peak memory: tracemalloc {peak / 2**20:.1f} MiB during the stage; max RSS {rss_mb:.0f} MiB")
    target = 2000
    print(f"target >= {target} posts/s including start-up: {'met' if with_startup >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
