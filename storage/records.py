"""The Post record of DESIGN.md as one pydantic model: what input is validated against, what the store
keeps (``storage.models.Post`` takes its column limits from here), and what every export and the API
write (:class:`ExportRecord` adds the analysis fields; CSV and Parquet columns are derived from it).

Validation errors are plain ``ValueError`` messages written for people (one line, naming the field and
the fix); ``monitor.records`` turns them into ``InputError`` with the file and line.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_serializer

__all__ = [
    "ANALYSIS_FIELDS", "EARLIEST", "ExportRecord", "KNOWN_SOURCES", "LATEST", "LIMITS", "MAX_TEXT_CHARS",
    "POST_FIELDS", "PostRecord", "in_range", "loads", "parse_timestamp", "storable_text", "validation_message",
]

KNOWN_SOURCES = ("5ch", "bluesky", "reddit", "web", "x")
MAX_TEXT_CHARS = 100_000  # longer "posts" are not posts; the cap keeps one bad line from filling the store
REQUIRED = ("source", "id", "created_at", "author_id", "text")
# Longest value of each short text field; the table's column sizes are these, so what validates is storable.
LIMITS = {"source": 32, "id": 128, "author_id": 128, "author_handle": 256, "lang": 16, "url": 2000,
          "repost_of": 128, "reply_to": 128, "quote_of": 128}
# The span a post's time may fall in. Outside it a timestamp is a broken client clock or a hostile record:
# year 1 or 9999 with an offset overflows when converted to UTC, and a replay would step its simulated
# clock through centuries to reach it.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_JSON_DEPTH = 64  # a post page nests ~8 deep; Python's parser itself gives up near 1,000
MAX_METRICS_DEPTH = 8
INT_DIGITS = 4300  # Python's limit on converting a decimal string to int (sys.get_int_max_str_digits)
_SURROGATE = re.compile("[\ud800-\udfff]")
REJECT = "$rejected"  # key of the marker :func:`loads` puts where a value cannot be read


# --- untrusted JSON ------------------------------------------------------------------------------------


def _marker(reason: str) -> dict[str, str]:
    return {REJECT: reason}


def _int(text: str) -> Any:
    if len(text.lstrip("-")) > INT_DIGITS:
        return _marker(f"an integer of {len(text.lstrip('-')):,} digits (over the {INT_DIGITS:,}-digit limit)")
    return int(text)


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _marker(f"the number {text[:20]} is out of range")


def _constant(name: str) -> Any:
    return _marker(f"{name} is not a JSON number")


def _cap_depth(text: str, limit: int) -> str:
    """``text`` with every array or object nested deeper than ``limit`` replaced by a marker object.

    A plain scan that knows strings and escapes; only called when the parser gave up on depth.
    """
    out: list[str] = []
    depth = 0
    skip_from: int | None = None  # depth at which a replaced value started
    in_string = escape = False
    start = 0
    marker = json.dumps(_marker(f"a value nested over {limit} levels deep"))
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit and skip_from is None:
                skip_from = depth
                out.append(text[start:i])
                out.append(marker)
        elif ch in "]}":
            if skip_from is not None and depth == skip_from:
                skip_from = None
                start = i + 1
            depth -= 1
    if skip_from is None:
        out.append(text[start:])
    return "".join(out)


def loads(text: str | bytes) -> Any:
    """Parse JSON from outside (a file line, an API page, a firehose frame) without letting one hostile
    value make the whole document unreadable.

    What Python's parser would refuse or what no store can hold is replaced by a marker object
    ``{"$rejected": reason}`` that :class:`PostRecord` rejects with that reason, so the other posts of the
    page are still read: integers of over 4,300 digits, ``NaN``/``Infinity`` and numbers out of range,
    values nested deeper than 64 levels. A document that is not JSON at all raises ``ValueError``
    (``json.JSONDecodeError`` names the column).

    >>> loads('{"id": 7, "metrics": {"likes": NaN}}')
    {'id': 7, 'metrics': {'likes': {'$rejected': 'NaN is not a JSON number'}}}
    >>> loads("[" * 5000 + "]" * 5000)[0][0][0] is not None
    True
    """
    hooks: dict[str, Any] = {"parse_int": _int, "parse_float": _float, "parse_constant": _constant}
    try:
        return json.loads(text, **hooks)
    except RecursionError:
        pass
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return json.loads(_cap_depth(text, MAX_JSON_DEPTH), **hooks)


def rejected_value(value: Any) -> str | None:
    """The reason :func:`loads` left in place of ``value``, if it left one."""
    if isinstance(value, dict) and isinstance(value.get(REJECT), str):
        return str(value[REJECT])
    return None


def storable_text(text: str) -> str:
    """``text`` as every backend can store it: U+0000 (PostgreSQL refuses it in text) and lone surrogates
    (not encodable as UTF-8) become U+FFFD, the replacement character; the rest is kept as written.

    >>> storable_text("a\\x00b\\ud800c") == "a\\ufffdb\\ufffdc"
    True
    """
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def parse_timestamp(value: Any, field_name: str = "created_at") -> datetime:
    """An ISO 8601 timestamp WITH an offset (``Z`` accepted) as an aware datetime.

    >>> parse_timestamp("2025-03-19T15:02:11+09:00").isoformat()
    '2025-03-19T15:02:11+09:00'
    >>> parse_timestamp("2021-04-08T19:34:32.000Z").isoformat()
    '2021-04-08T19:34:32+00:00'
    >>> parse_timestamp("2025-03-19 15:02")
    Traceback (most recent call last):
    ...
    ValueError: created_at '2025-03-19 15:02' has no UTC offset: write it as ISO 8601 with an offset, e.g. 2025-03-19T15:02:11+09:00
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field_name} must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(
            f"{field_name} {text[:40]!r} is not an ISO 8601 timestamp: write e.g. 2025-03-19T15:02:11+09:00"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"{field_name} {text[:40]!r} has no UTC offset: write it as ISO 8601 with an offset, "
            "e.g. 2025-03-19T15:02:11+09:00"
        )
    return parsed


def in_range(value: datetime, field_name: str = "created_at") -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValueError(f"{field_name} {value.isoformat()[:40]!r} is outside {EARLIEST.year}-{LATEST.year - 1}: "
                         "a broken clock or a hostile record")
    return value


def _text_field(name: str, required: bool) -> Any:
    limit = LIMITS.get(name, MAX_TEXT_CHARS)

    def check(value: Any) -> str | None:
        if value is None:
            if required:
                raise ValueError(f"missing required field {name!r}: a Post record needs {', '.join(REQUIRED)}")
            return None
        if (reason := rejected_value(value)) is not None:
            raise ValueError(f"field {name!r} is unreadable: {reason}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
        text = str(value)
        if len(text) > limit:
            what = "characters, over the" if name == "text" else "characters, longer than the"
            raise ValueError(f"{name} is {len(text):,} {what} {limit:,} limit for one post")
        # U+0000 and lone surrogates cannot be stored (PostgreSQL, UTF-8); keep the post, mark what was lost.
        return storable_text(text)

    return BeforeValidator(check)


def _source(value: Any) -> Any:
    if value is not None and value not in KNOWN_SOURCES:
        raise ValueError(f"unknown source {value!r}: use one of {', '.join(KNOWN_SOURCES)}")
    return value


def _json_value(value: Any, where: str, depth: int) -> Any:
    """A metrics value as every backend's JSON column holds it: finite numbers, storable strings."""
    if (reason := rejected_value(value)) is not None:
        raise ValueError(f"{where} is unreadable: {reason}")
    if depth > MAX_METRICS_DEPTH:
        raise ValueError(f"{where} is nested over {MAX_METRICS_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: JSON (and PostgreSQL) has no NaN or Infinity")
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): _json_value(v, f"{where}.{k}"[:80], depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, where, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ValueError(f"{where} holds a {type(value).__name__}, not a JSON value")


def _metrics(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if (reason := rejected_value(value)) is not None:
        raise ValueError(f"field 'metrics' is unreadable: {reason}")
    if not isinstance(value, dict):
        raise ValueError("field 'metrics' must be an object")
    return _json_value(value, "metrics", 1)  # type: ignore[no-any-return]


def _created_at(value: Any) -> datetime:
    if value is None:
        raise ValueError(f"missing required field 'created_at': a Post record needs {', '.join(REQUIRED)}")
    if (reason := rejected_value(value)) is not None:
        raise ValueError(f"field 'created_at' is unreadable: {reason}")
    return in_range(parse_timestamp(value))


class PostRecord(BaseModel):
    """The Post record of DESIGN.md, validated. Unknown keys (an export's analysis fields) are ignored.

    >>> PostRecord.model_validate({"source": "x", "id": 1, "created_at": "2025-03-19T15:02:11+09:00",
    ...                            "author_id": "8812", "text": "楽天証券で勝手に中国株を買われた"}).key
    'x:1'
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: Annotated[str, _text_field("source", True), BeforeValidator(_source)]
    id: Annotated[str, _text_field("id", True)]
    created_at: Annotated[datetime, BeforeValidator(_created_at)]  # timezone-aware
    author_id: Annotated[str, _text_field("author_id", True)]
    author_handle: Annotated[str | None, _text_field("author_handle", False)] = None
    text: Annotated[str, _text_field("text", True)]
    lang: Annotated[str | None, _text_field("lang", False)] = None
    url: Annotated[str | None, _text_field("url", False)] = None
    repost_of: Annotated[str | None, _text_field("repost_of", False)] = None
    reply_to: Annotated[str | None, _text_field("reply_to", False)] = None
    quote_of: Annotated[str | None, _text_field("quote_of", False)] = None
    metrics: Annotated[dict[str, Any], BeforeValidator(_metrics)] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.id}"

    @field_serializer("created_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()  # "+00:00", not pydantic's "Z": the form the contract shows

    def to_json(self) -> dict[str, Any]:
        """The record as one JSONL object of the contract."""
        return self.model_dump(mode="json")

    def row_values(self) -> dict[str, Any]:
        """Column values of ``storage.models.Post`` (the contract's ``id`` is the table's ``post_id``)."""
        offset = self.created_at.utcoffset()
        values = self.model_dump(exclude={"id"})
        values["created_at"] = self.created_at
        values["post_id"] = self.id
        values["utc_offset_min"] = int(offset.total_seconds() // 60) if offset is not None else 0
        return values

    @classmethod
    def from_row(cls, row: Any) -> PostRecord:
        """A stored ``storage.models.Post`` back as the record it was stored from (offset restored)."""
        tz = timezone(timedelta(minutes=row.utc_offset_min))
        values = {name: getattr(row, name) for name in POST_FIELDS if name not in ("id", "created_at")}
        values["metrics"] = values["metrics"] or {}
        return cls.model_construct(id=row.post_id, created_at=row.created_at.astimezone(tz), **values)


class ExportRecord(PostRecord):
    """A stored post with its newest analysis: JSONL, CSV and Parquet exports and the API write these."""

    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    brokers: list[str] = Field(default_factory=list)
    tickers: list[str] = Field(default_factory=list)
    model: str | None = None


POST_FIELDS: tuple[str, ...] = tuple(PostRecord.model_fields)
ANALYSIS_FIELDS: tuple[str, ...] = tuple(f for f in ExportRecord.model_fields if f not in PostRecord.model_fields)


def validation_message(exc: ValidationError) -> str:
    """The first problem of a validation error as one line written for people."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"])
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    if err["type"] == "missing":
        return f"missing required field {field!r}: a Post record needs {', '.join(REQUIRED)}"
    return f"field {field!r}: {err['msg']}"
