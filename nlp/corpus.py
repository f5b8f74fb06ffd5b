"""The labeled corpus: loading, validation and the deterministic train / dev / test split.

The corpus lives in ``nlp/corpus/*.jsonl`` (one JSON object per line, see docs/labeling-guide.md).
Each record's split is decided by a stable hash of its ``id`` alone, so adding posts never moves an
existing post to another split and the test split stays untouched by tuning:

>>> split_of("vr-0001") in SPLITS
True
>>> split_of("vr-0001") == split_of("vr-0001")
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nlp.entities import BROKERS
from nlp.errors import NLPError

LABELS = ("victim_report", "incident_discussion", "irrelevant")
STYLES = ("x", "reddit", "bluesky", "5ch", "blog", "news", "qa", "chiebukuro", "line")
SPLITS = ("train", "dev", "test")
# Percent of ids per split, in SPLITS order: 70 / 15 / 15.
SPLIT_BOUNDS = (70, 85, 100)

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

CANONICAL_BROKERS = BROKERS  # the reviewed lexicon nlp/data/brokers.json

# Normalized ticker codes of DESIGN.md: TSE 4 chars (alphanumeric too), HK, Shanghai, Shenzhen, US symbols.
TICKER_RE = re.compile(
    r"^(?:[0-9][0-9A-Z]{2}[0-9A-Z]\.T|[0-9]{4}\.HK|6[08][0-9]{4}\.SS|(?:00|30)[0-9]{4}\.SZ|[A-Z]{1,5}(?:\.[A-Z])?)$"
)


class CorpusError(NLPError):
    """A corpus file or record is unusable; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    """One labeled post of the corpus."""

    id: str
    text: str
    label: str
    style: str = "x"
    brokers: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    ticker_names: tuple[str, ...] = ()
    note: str | None = None
    source: str = field(default="", compare=False)

    @property
    def split(self) -> str:
        return split_of(self.id)


def split_of(example_id: str) -> str:
    """The split of an id: a stable hash (sha256, not Python's salted ``hash``) mapped to 0..99.

    >>> sorted({split_of(f"x-{i}") for i in range(50)})
    ['dev', 'test', 'train']
    """
    bucket = int.from_bytes(hashlib.sha256(example_id.encode("utf-8")).digest()[:8], "big") % 100
    for name, bound in zip(SPLITS, SPLIT_BOUNDS, strict=True):
        if bucket < bound:
            return name
    raise AssertionError("unreachable: bounds end at 100")


def _string_list(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of strings")
    return tuple(value)


def parse_record(
    obj: object, *, source: str = "", strict_labels: bool = True, default_id: str | None = None
) -> Example:
    """Validate one decoded JSON record and return it as an Example (ValueError names the problem).

    >>> parse_record({"id": "a-1", "text": "楽天証券で勝手に売られた", "label": "victim_report"}).label
    'victim_report'
    >>> parse_record({"id": "a-1", "text": "x", "label": "spam"})
    Traceback (most recent call last):
    ...
    ValueError: 'label' must be one of victim_report, incident_discussion, irrelevant, not 'spam'

    With ``default_id`` (an evaluation file, where nothing is stored), a record without ``id`` takes it:

    >>> parse_record({"text": "x", "label": "irrelevant"}, default_id="eval.jsonl:3").id
    'eval.jsonl:3'
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    ex_id = obj.get("id")
    if ex_id is None and default_id is not None:
        ex_id = default_id
    if isinstance(ex_id, int) and not isinstance(ex_id, bool):
        ex_id = str(ex_id)
    if not isinstance(ex_id, str) or not ex_id.strip():
        raise ValueError("'id' must be a non-empty string")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'text' must be a non-empty string")
    label = obj.get("label")
    if label not in LABELS and (strict_labels or label is not None):
        raise ValueError(f"'label' must be one of {', '.join(LABELS)}, not {label!r}")
    style = obj.get("style", "x")
    if style not in STYLES:
        raise ValueError(f"'style' must be one of {', '.join(STYLES)}, not {style!r}")
    brokers = _string_list(obj.get("brokers"), "brokers")
    unknown = [b for b in brokers if b not in CANONICAL_BROKERS]
    if unknown:
        raise ValueError(f"'brokers' has non-canonical names {unknown} (use the DESIGN.md list)")
    tickers = _string_list(obj.get("tickers"), "tickers")
    ticker_names = _string_list(obj.get("ticker_names"), "ticker_names")
    bad = [t for t in (*tickers, *ticker_names) if not TICKER_RE.match(t)]
    if bad:
        raise ValueError(f"tickers {bad} are not normalized codes (e.g. 7203.T, 0700.HK, 600519.SS, TSLA)")
    note = obj.get("note")
    if note is not None and not isinstance(note, str):
        raise ValueError("'note' must be a string when present")
    return Example(
        id=ex_id, text=text, label=label or "", style=style, brokers=brokers, tickers=tickers,
        ticker_names=ticker_names, note=note, source=source,
    )  # fmt: skip


def read_jsonl(
    path: Path, *, strict_labels: bool = True, ids_optional: bool = False
) -> tuple[list[Example], list[str]]:
    """Read one labeled JSONL file; returns the examples and a list of 'path:line: problem' strings.

    ``ids_optional`` (evaluation files): a record without ``id`` is named by its file and line number.
    """
    examples: list[Example] = []
    problems: list[str] = []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [f"{path}: cannot read ({exc.strerror or exc})"]
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            problems.append(f"{where}: not UTF-8")
            continue
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            default_id = f"{path.name}:{lineno}" if ids_optional else None
            examples.append(
                parse_record(obj, source=where, strict_labels=strict_labels, default_id=default_id)
            )
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return examples, problems


def corpus_files(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """Expand files and directories (every *.jsonl inside, sorted) into a file list."""
    if paths is None:
        paths = [CORPUS_DIR]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        else:
            files.append(p)
    return files


def validate_corpus(paths: Iterable[str | Path] | None = None) -> tuple[list[Example], list[str]]:
    """Every example and every problem (bad JSON, bad field, duplicate id) across the files."""
    examples: list[Example] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    files = corpus_files(paths)
    for path in files:
        got, bad = read_jsonl(path)
        problems.extend(bad)
        for ex in got:
            if ex.id in seen:
                problems.append(f"{ex.source}: duplicate id {ex.id!r} (first at {seen[ex.id]})")
                continue
            seen[ex.id] = ex.source
            examples.append(ex)
    return examples, problems


def load_corpus(split: str | None = None, paths: Sequence[str | Path] | None = None) -> list[Example]:
    """Load the labeled corpus (default ``nlp/corpus/*.jsonl``), optionally one split of it.

    Raises CorpusError naming the first bad file:line (and how many more there are).
    """
    if split is not None and split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    files = corpus_files(paths)
    if not files:
        where = ", ".join(str(p) for p in (paths or [CORPUS_DIR]))
        raise CorpusError(f"no corpus files (*.jsonl) found in {where}: pass --corpus PATH")
    missing = [f for f in files if not f.exists()]
    if missing:
        raise CorpusError(f"{missing[0]}: corpus file not found; check the path")
    examples, problems = validate_corpus(files)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CorpusError(f"{problems[0]}{more}; fix the record or remove it")
    if split is not None:
        examples = [ex for ex in examples if ex.split == split]
    return examples


def load_labeled_file(path: str | Path) -> list[Example]:
    """Every record of one labeled JSONL file scored whole (``nlp eval --file``), in file order.

    Unlike the corpus, ``id`` is optional here (nothing is stored or split): a record without one is named
    ``FILE-NAME:LINE``. Each line still needs ``text`` and ``label``; CorpusError names the first bad
    FILE:LINE, how many more there are, and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: file not found; check the --file path")
    examples, problems = read_jsonl(path, ids_optional=True)
    seen: dict[str, str] = {}
    for ex in examples:
        if ex.id in seen:
            problems.append(f"{ex.source}: duplicate id {ex.id!r} (first at {seen[ex.id]})")
        seen.setdefault(ex.id, ex.source)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise CorpusError(
            f'{problems[0]}{more}; every line needs a JSON object with "text" and "label" '
            f'({", ".join(LABELS)}); "id" is optional'
        )
    return examples
