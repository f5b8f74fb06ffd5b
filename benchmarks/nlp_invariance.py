"""Label flips per invariance edit (nlp/checklist.py) on a corpus split, beside the unedited run.

Run: python benchmarks/nlp_invariance.py [--split test] [--model DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nlp.checklist import flip_rates  # noqa: E402
from nlp.corpus import load_corpus  # noqa: E402
from nlp.pipeline import Analyzer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    examples = load_corpus(args.split)
    analyzer = Analyzer.load(args.model)
    results = flip_rates(analyzer, [ex.text for ex in examples])
    print(f"split {args.split}: {len(examples)} posts, model {analyzer.model_version}; target <= 2.0% per edit")
    for r in results:
        print(f"  {r.edit:<28} flips {len(r.flipped):>3} ({r.rate(len(examples)):.1%})  brokers lost {len(r.lost_broker)}")
    worst = max(r.rate(len(examples)) for r in results)
    print(f"worst edit: {worst:.1%} -> {'met' if worst <= 0.02 else 'NOT met'}")


if __name__ == "__main__":
    main()
