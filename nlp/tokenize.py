"""SudachiPy tokenization with ``sudachidict_core``, loaded lazily once per process.

Call sites name the split mode every time (``"A"`` short units, ``"B"`` middle, ``"C"`` named entities as
one unit), because the right unit depends on the use: the classifier's features and full-text search want
different granularity. Words are compared on ``normalized_form()`` (``附属`` and ``付属``, ``ログイン`` and
``ログイン`` spelled otherwise, map to one form).

Sudachi refuses input over 49,149 UTF-8 bytes, so long text is cut into chunks at line ends, sentence ends or
spaces (never inside a word when one of those is near) and token offsets are shifted back.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from nlp.errors import ModelLoadError, TextError

__all__ = ["DICTIONARY_VERSION", "SplitMode", "Token", "Tokenizer", "get_tokenizer"]

SplitMode = Literal["A", "B", "C"]

_DICT_PACKAGE = "sudachidict_core"
_MAX_CHUNK_BYTES = 16_000  # well under Sudachi's 49,149-byte limit, so a chunk of 4-byte characters fits
_BREAK = re.compile(r"[\n。!?！？]|\s")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _dictionary_version() -> str:
    try:
        return f"{_DICT_PACKAGE}@{metadata.version(_DICT_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return f"{_DICT_PACKAGE}@missing"


#: Dictionary package and version, recorded with every annotation, e.g. ``"sudachidict_core@20250825"``.
DICTIONARY_VERSION: str = _dictionary_version()


@dataclass(frozen=True)
class Token:
    """One morpheme; ``begin``/``end`` are character offsets in the text given to :meth:`Tokenizer.tokens`."""

    surface: str
    normalized_form: str
    pos: tuple[str, ...]
    begin: int
    end: int


class Tokenizer:
    """A Sudachi dictionary shared by the process, with one Sudachi tokenizer per thread and split mode.

    (A Sudachi tokenizer object must not be used from two threads at once.)
    """

    def __init__(self) -> None:
        try:
            from sudachipy import Dictionary
        except ImportError as exc:
            raise ModelLoadError(
                f"SudachiPy is not installed ({exc}): pip install sudachipy sudachidict_core"
            ) from exc
        try:
            self._dictionary = Dictionary(dict="core")
        except Exception as exc:  # sudachipy raises its own error types, not importable in every version
            raise ModelLoadError(
                f"the Sudachi dictionary could not be loaded ({type(exc).__name__}): pip install sudachidict_core"
            ) from exc
        self._local = threading.local()
        self._pos: dict[
            int, tuple[str, ...]
        ] = {}  # part-of-speech id -> tuple; shared, ids are per dictionary
        self.dictionary_version = DICTIONARY_VERSION

    def _sudachi(self, mode: SplitMode) -> Any:
        if mode not in ("A", "B", "C"):
            raise TextError(f"unknown Sudachi split mode {mode!r}: use 'A', 'B' or 'C'")
        cache = getattr(self._local, "tokenizers", None)
        if cache is None:
            cache = self._local.tokenizers = {}
        tokenizer = cache.get(mode)
        if tokenizer is None:
            tokenizer = cache[mode] = self._dictionary.tokenizer(mode=mode)
        return tokenizer

    def tokens(self, text: str, mode: SplitMode) -> list[Token]:
        """Morphemes of ``text`` in split ``mode``; long text is tokenized chunk by chunk.

        >>> [t.surface for t in get_tokenizer().tokens("口座を乗っ取られた", "A")]
        ['口座', 'を', '乗っ', '取ら', 'れ', 'た']
        >>> [t.surface for t in get_tokenizer().tokens("口座を乗っ取られた", "C")]
        ['口座', 'を', '乗っ取ら', 'れ', 'た']
        >>> [(t.normalized_form, t.begin, t.end) for t in get_tokenizer().tokens("ﾛｸﾞｲﾝ", "C")]
        [('ログイン', 0, 5)]
        """
        if not isinstance(text, str):
            raise TextError(f"tokens() needs a str, got {type(text).__name__}")
        sudachi = self._sudachi(mode)
        pos_cache = self._pos
        out: list[Token] = []
        for start, chunk in _chunks(_clean(text)):
            for m in sudachi.tokenize(chunk):
                pos_id = m.part_of_speech_id()
                pos = pos_cache.get(pos_id)
                if pos is None:
                    pos = pos_cache[pos_id] = tuple(m.part_of_speech())
                out.append(Token(m.surface(), m.normalized_form(), pos, start + m.begin(), start + m.end()))
        return out

    def boundaries(self, text: str, mode: SplitMode) -> set[int]:
        """Character offsets where a morpheme starts or ends (cheaper than :meth:`tokens`: no POS, no forms).

        >>> sorted(get_tokenizer().boundaries("スクリーニング", "A"))
        [0, 7]
        """
        if not isinstance(text, str):
            raise TextError(f"boundaries() needs a str, got {type(text).__name__}")
        sudachi = self._sudachi(mode)
        out: set[int] = set()
        for start, chunk in _chunks(_clean(text)):
            for m in sudachi.tokenize(chunk):
                out.add(start + m.begin())
                out.add(start + m.end())
        return out

    def normalized_words(self, text: str, mode: SplitMode) -> list[str]:
        """``normalized_form()`` of each non-space morpheme.

        >>> get_tokenizer().normalized_words("ログイン できない", "C")
        ['ログイン', '出来る', 'ない']
        """
        if not isinstance(text, str):
            raise TextError(f"normalized_words() needs a str, got {type(text).__name__}")
        sudachi = self._sudachi(mode)
        return [
            m.normalized_form()
            for _, chunk in _chunks(_clean(text))
            for m in sudachi.tokenize(chunk)
            if not m.surface().isspace()
        ]


def _clean(text: str) -> str:
    # Lone surrogates cannot be encoded for Sudachi; U+FFFD keeps every offset where it was.
    return _SURROGATE.sub("\ufffd", text) if text and not text.isascii() else text


def _chunks(text: str) -> list[tuple[int, str]]:
    """Split ``text`` into pieces of at most ``_MAX_CHUNK_BYTES`` UTF-8 bytes, preferring natural breaks.

    >>> [(s, len(c)) for s, c in _chunks("あ" * 12000)]
    [(0, 5333), (5333, 5333), (10666, 1334)]
    """
    if len(text) * 4 <= _MAX_CHUNK_BYTES or len(text.encode("utf-8", "surrogatepass")) <= _MAX_CHUNK_BYTES:
        return [(0, text)] if text else []
    pieces: list[tuple[int, str]] = []
    start = 0
    size = len(text)
    while start < size:
        # Grow a window by characters until it would exceed the byte budget.
        stop, budget = start, _MAX_CHUNK_BYTES
        while stop < size:
            width = len(text[stop].encode("utf-8", "surrogatepass"))
            if width > budget:
                break
            budget -= width
            stop += 1
        if stop < size:
            # Prefer to cut just after a break in the last quarter of the window.
            floor = start + (stop - start) * 3 // 4
            cut = None
            for match in _BREAK.finditer(text, floor, stop):
                cut = match.end()
            if cut is not None and cut > start:
                stop = cut
        pieces.append((start, text[start:stop]))
        start = stop
    return pieces


_TOKENIZER: Tokenizer | None = None
_LOCK = threading.Lock()


def get_tokenizer() -> Tokenizer:
    """The process-wide :class:`Tokenizer`, created on first use."""
    global _TOKENIZER
    if _TOKENIZER is None:
        with _LOCK:
            if _TOKENIZER is None:
                _TOKENIZER = Tokenizer()
    return _TOKENIZER
