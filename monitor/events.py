"""Plain value types that travel between the stages: analyzed reports -> detector signals -> alert events.

They live here, not in a stage, so that detection and alert planning depend on neither storage nor each
other's internals. All datetimes are timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

Kind = Literal["broker", "ticker", "overall", "source"]  # source: the bot's own alert of a silent collector
EventName = Literal["open", "update", "resolve"]
OVERALL_KEY = "overall"


@dataclass(frozen=True, slots=True)
class Report:
    """One analyzed post as the detector sees it (victim reports and incident discussion)."""

    post_key: str  # "x:1902345678901234567" - f"{source}:{id}"
    source: str
    author_key: str  # f"{source}:{author_id}": the same person on two sources counts twice
    created_at: datetime
    label: str  # "victim_report" | "incident_discussion"
    text: str
    brokers: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ()
    repost_of: str | None = None
    url: str | None = None

    @property
    def is_repost(self) -> bool:
        return self.repost_of is not None


@dataclass(frozen=True, slots=True)
class Signal:
    """The detector's verdict for one (kind, key) at time ``at``."""

    kind: Kind
    key: str
    at: datetime
    window: timedelta  # the window length that scored highest
    window_start: datetime
    count: int  # distinct reporters in the window
    expected: float  # what the baseline expected for that window
    score: float  # higher = more anomalous
    firing: bool  # the detector would raise or keep an alert for this key
    tickers: tuple[str, ...] = ()  # most named tickers among the window's reports, most frequent first
    brokers: tuple[str, ...] = ()  # for ticker / overall signals: the brokers named beside them
    sample_post_ids: tuple[str, ...] = ()  # post keys, most useful first
    discussion_count: int = 0  # incident_discussion posts in the window, for context
    first_seen: datetime | None = None  # first report of the current episode
    explanation: str = ""

    @property
    def fingerprint(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One lifecycle event, in the DESIGN.md alert-event contract."""

    event: EventName
    kind: Kind
    key: str
    at: datetime
    window_start: datetime
    count: int
    expected: float
    score: float
    tickers: tuple[str, ...] = ()
    sample_post_ids: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def fingerprint(self) -> str:
        return f"{self.kind}:{self.key}"

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object (times in ISO 8601 with their offset).

        Beyond the contract's fields (an extension DESIGN.md allows): ``notified`` says whether the event
        paged anyone, and ``muted_by`` names the open alert it was folded into or the silence that muted it.
        """
        data: dict[str, Any] = {
            "event": self.event,
            "kind": self.kind,
            "key": self.key,
            "at": self.at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "count": self.count,
            "expected": round(float(self.expected), 3),
            "score": round(float(self.score), 3),
            "tickers": list(self.tickers),
            "sample_post_ids": list(self.sample_post_ids),
        }
        if "notified" in self.extra:
            data["notified"] = bool(self.extra["notified"])
        folded = self.extra.get("inhibited_by")
        if folded:
            data["muted_by"] = ",".join(folded) if isinstance(folded, list | tuple) else str(folded)
        elif self.extra.get("silence_id"):
            data["muted_by"] = f"silence:{self.extra['silence_id']}"
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertEvent:
        return cls(
            event=data["event"],
            kind=data["kind"],
            key=data["key"],
            at=datetime.fromisoformat(data["at"]),
            window_start=datetime.fromisoformat(data["window_start"]),
            count=int(data["count"]),
            expected=float(data["expected"]),
            score=float(data["score"]),
            tickers=tuple(data.get("tickers", ())),
            sample_post_ids=tuple(data.get("sample_post_ids", ())),
        )
