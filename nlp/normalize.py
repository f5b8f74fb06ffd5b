"""Text normalization for matching and tokenizing, with a map back to the original text.

Every later step (Sudachi, the classifier, broker and ticker extraction) works on the normalized text, but the
spans it reports must point into the text the user wrote. So each normalized character carries the span of the
original characters it came from (``Normalized.offsets`` / ``Normalized.ends``).

What happens, in order:

1. the input is capped at :data:`MAX_CHARS` characters (a post longer than that is not a post we must read to
   the end, and the cap bounds the work for hostile input);
2. HTML character references (``&amp;``, ``&#x6e2f;``) are decoded: scrapers and APIs hand them over escaped;
3. per character (a base plus its combining marks, so half-width ``ｶﾞ`` becomes ``ガ``): NFKC, which folds
   full-width ASCII to half-width and half-width katakana to full-width; Latin lower-cased; line breaks kept;
   other control characters and every kind of space -> one space; circled numbers (①) kept as list markers; format characters (bidi marks, zero-width joiners, BOM) dropped; lone
   surrogates and non-characters -> U+FFFD; emoji -> a space (they carry mood, not entities);
4. URLs -> ``<url:domain>`` (the domain says whether a link points at a broker), @mentions -> ``@user``
   (handles are personal data and never entities), the ``#`` of a hashtag -> a space (``#楽天証券`` names a
   broker, so the tag text stays);
5. runs of spaces and of repeated punctuation (``！！！``, ``。。。``, ``ーーー``) and laughter (``ｗｗｗ``) collapse
   to one character (a run of blanks holding a line break becomes one line break); leading and trailing
   blanks go.

The function never raises on a ``str``, whatever it holds.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from nlp.errors import TextError

__all__ = ["MAX_CHARS", "Normalized", "normalize"]

#: Longest input read, in characters. Longer input is cut deliberately (see ``Normalized.truncated``).
MAX_CHARS = 5000

_HALF_WIDTH_SOUND_MARKS = "\uff9e\uff9f"  # ﾞ ﾟ: not combining marks in Unicode, but they join the kana before
_ENTITY = re.compile(r"&(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});")
_SPECIAL = re.compile(
    r"(?P<url>(?:https?://|www\.)[a-z0-9\-._~:/?#\[\]@!$&'*+,;=%]+)"
    r"|(?P<mention>(?<![a-z0-9_.])@[a-z0-9_]{1,30})"
    r"|(?P<hashtag>(?<![a-z0-9_&])#(?=[^\s#]))"
)
# Characters that NFKC and lower-casing leave alone and that need no other treatment (printable ASCII but
# capitals, kana, the unified CJK block, common Japanese brackets and stops).
_UNSAFE = re.compile(
    r"[^\u0020-\u0040\u005b-\u007e\u3001-\u3002\u300c-\u300f\u3010\u3011\u3041-\u3096"
    r"\u30a1-\u30fa\u30fc\u4e00-\u9fff]+"
)
_COLLAPSE = re.compile(r"[ \n]{2,}|([!?.,~ー\-=・。、〜_*/])\1+|(?<![a-z0-9])ww+(?![a-z0-9])")


@dataclass(frozen=True)
class Normalized:
    """Normalized text and, for each of its characters, where it came from in the original.

    ``offsets[i]`` is the index in the original text of normalized character ``i``; ``ends[i]`` is the end
    (exclusive) of the original characters it replaced (an HTML entity, a URL, a base with marks).
    """

    text: str
    offsets: tuple[int, ...]
    ends: tuple[int, ...] = ()
    truncated: bool = False

    def span_to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a span ``[start, end)`` of the normalized text to the original text.

        >>> n = normalize("ＳＢＩ証券で&amp;")
        >>> n.text
        'sbi証券で&'
        >>> n.span_to_original(0, 5)
        (0, 5)
        >>> n.span_to_original(6, 7)
        (6, 11)
        """
        size = len(self.text)
        if not 0 <= start <= end <= size:
            raise ValueError(f"span ({start}, {end}) lies outside the normalized text of length {size}")
        if start == end:
            if start < size:
                return self.offsets[start], self.offsets[start]
            last = self._end_of(size - 1) if size else 0
            return last, last
        return self.offsets[start], self._end_of(end - 1)

    def _end_of(self, index: int) -> int:
        return self.ends[index] if self.ends else self.offsets[index] + 1


def normalize(text: str) -> Normalized:
    """Normalize ``text`` for matching; never raises on a ``str``.

    >>> normalize("ｶﾞｷﾞ　ＳＢＩ証券！！！ｗｗｗ").text
    'ガギ sbi証券!w'
    >>> normalize("#楽天証券 で😭 https://www.example.co.jp/a?b=1 @taro_01 さん").text
    '楽天証券 で <url:example.co.jp> @user さん'
    >>> normalize("香港&#x6e2f;\\u202e\\ud800").text
    '香港港\\ufffd'
    >>> normalize("").text
    ''
    """
    if not isinstance(text, str):
        raise TextError(
            f"normalize() needs a str, got {type(text).__name__}: decode bytes first, e.g. data.decode('utf-8', 'replace')"
        )
    truncated = len(text) > MAX_CHARS
    src = text[:MAX_CHARS] if truncated else text
    size = len(src)
    offs: list[int] = list(range(size))
    ends: list[int] = list(range(1, size + 1))
    if "&" in src:
        src, offs, ends = _substitute(src, offs, ends, _ENTITY, _decode_entity)
    src, offs, ends = _map_characters(src, offs, ends)
    if "/" in src or "@" in src or "#" in src or "www." in src:
        src, offs, ends = _substitute(src, offs, ends, _SPECIAL, _replace_special)
    src, offs, ends = _substitute(src, offs, ends, _COLLAPSE, _first_char)
    begin, stop = 0, len(src)
    while begin < stop and src[begin] in " \n":
        begin += 1
    while stop > begin and src[stop - 1] in " \n":
        stop -= 1
    if begin or stop != len(src):
        src, offs, ends = src[begin:stop], offs[begin:stop], ends[begin:stop]
    return Normalized(src, tuple(offs), tuple(ends), truncated)


def _decode_entity(match: re.Match[str]) -> str:
    return html.unescape(match.group())


def _replace_special(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "url":
        url = match.group()
        rest = url.split("://", 1)[1] if "://" in url else url
        domain = re.split(r"[/?#:]", rest, maxsplit=1)[0].removeprefix("www.").strip(".")
        return f"<url:{domain}>" if domain else "<url>"
    if kind == "mention":
        return "@user"
    return " "  # the '#' of a hashtag


def _first_char(match: re.Match[str]) -> str:
    run = match.group()
    return "\n" if "\n" in run else run[0]


def _substitute(
    text: str, offs: list[int], ends: list[int], pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str]
) -> tuple[str, list[int], list[int]]:
    """``pattern.sub(repl, text)`` that keeps the offset arrays in step.

    Every character of a replacement maps to the whole original span of the text it replaced.
    """
    pieces: list[str] = []
    new_offs: list[int] = []
    new_ends: list[int] = []
    last = 0
    for match in pattern.finditer(text):
        start, stop = match.span()
        replacement = repl(match)
        if replacement == match.group():
            continue
        pieces.append(text[last:start])
        new_offs.extend(offs[last:start])
        new_ends.extend(ends[last:start])
        if replacement:
            pieces.append(replacement)
            new_offs.extend([offs[start]] * len(replacement))
            new_ends.extend([ends[stop - 1]] * len(replacement))
        last = stop
    if not pieces and last == 0:
        return text, offs, ends
    pieces.append(text[last:])
    new_offs.extend(offs[last:])
    new_ends.extend(ends[last:])
    return "".join(pieces), new_offs, new_ends


def _map_characters(text: str, offs: list[int], ends: list[int]) -> tuple[str, list[int], list[int]]:
    # Most characters of a Japanese post map to themselves: copy those runs whole and walk only the rest.
    out: list[str] = []
    new_offs: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for match in _UNSAFE.finditer(text):
        start, stop = match.span()
        if start > pos and _is_mark(text[start]):
            start -= 1  # a combining mark belongs with the character before it
        if start > pos:
            out.append(text[pos:start])
            new_offs.extend(offs[pos:start])
            new_ends.extend(ends[pos:start])
        _map_run(text, offs, ends, start, stop, out, new_offs, new_ends)
        pos = stop
    if pos == 0:
        return text, offs, ends
    out.append(text[pos:])
    new_offs.extend(offs[pos:])
    new_ends.extend(ends[pos:])
    return "".join(out), new_offs, new_ends


def _map_run(text: str, offs: list[int], ends: list[int], i: int, size: int, out: list[str], new_offs: list[int],
             new_ends: list[int]) -> None:
    while i < size:
        j = i + 1
        while j < size and text[j] >= "\u0300" and _is_mark(text[j]):
            j += 1
        mapped = _map_cluster(text[i:j])
        if mapped:
            out.append(mapped)
            if len(mapped) == 1:
                new_offs.append(offs[i])
                new_ends.append(ends[j - 1])
            else:
                new_offs.extend([offs[i]] * len(mapped))
                new_ends.extend([ends[j - 1]] * len(mapped))
        i = j


@lru_cache(maxsize=4096)
def _is_mark(char: str) -> bool:
    return char in _HALF_WIDTH_SOUND_MARKS or unicodedata.category(char)[0] == "M"


def _is_emoji(code: int) -> bool:
    return (
        0x1F000 <= code <= 0x1FAFF
        or 0x2600 <= code <= 0x27BF
        or 0x2B00 <= code <= 0x2BFF
        or 0x2300 <= code <= 0x23FF
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or code == 0x20E3  # combining keycap
    )


@lru_cache(maxsize=65536)
def _map_cluster(cluster: str) -> str:
    base = cluster[0]
    code = ord(base)
    category = unicodedata.category(base)
    if base == "\n" or category in ("Zl", "Zp"):
        return "\n"  # line breaks carry structure (a code at the start of a line, list items)
    if category in ("Zs", "Cc"):
        return " "
    if category == "Cs" or (code & 0xFFFE) == 0xFFFE or 0xFDD0 <= code <= 0xFDEF:
        return "\ufffd"
    if category == "Cf":
        return ""
    if _is_emoji(code):
        return " "
    if (
        0x2460 <= code <= 0x24FF
        or 0x2776 <= code <= 0x2793
        or 0x3251 <= code <= 0x325F
        or 0x32B1 <= code <= 0x32BF
    ):
        return base  # circled numbers mark list items; NFKC would turn them into digits that look like codes
    if len(cluster) > 1:
        # marks on an emoji or a control character were handled above; drop stray emoji marks here
        cluster = base + "".join(c for c in cluster[1:] if not _is_emoji(ord(c)))
    return unicodedata.normalize("NFKC", cluster).lower()
