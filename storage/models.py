"""Tables of the store.

One module, grouped by purpose in the order data moves: raw pages and posts (collected), annotations and
mentions (analyzed), detector state, alerts with their events and the notification outbox, silences, and
the collectors' cursors and health. Keys are deterministic where a row comes from outside - (source,
post_id) for posts, (source, sha256) for raw pages - so storing the same thing twice changes nothing.

Timestamps are stored in UTC and always come back timezone-aware (SQLite keeps no offset of its own).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import JSON, Column, Field, SQLModel

from storage.records import LIMITS


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that refuses naive values and returns aware UTC on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        # SQLite has no offset type: store naive UTC so string comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(*, index: bool = False, nullable: bool = False, now: bool = False) -> Any:
    if now:
        return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), index=index, nullable=False))
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), index=index, nullable=True))
    return Field(sa_column=Column(UTCDateTime(), index=index, nullable=False))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


# --- collected -----------------------------------------------------------------------------------------


class RawPage(SQLModel, table=True):
    """A response page exactly as received, with provenance, so a parser fix is a re-parse."""

    __tablename__ = "raw_pages"
    __table_args__ = (sa.UniqueConstraint("source", "sha256", name="uq_raw_pages_source_sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32, index=True)
    endpoint: str = Field(max_length=2000)  # URL or file path it came from, without secrets
    retrieved_at: datetime = _ts(now=True)
    collector_version: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(sa.Text, nullable=False))  # the bytes as text, verbatim


class Post(SQLModel, table=True):
    """A post in the DESIGN.md Post-record shape, plus where it came from.

    ``storage.records.PostRecord`` is the record itself (validation, exports, the API); this table names its
    ``id`` ``post_id`` (``id`` is the row key) and takes its column sizes from ``LIMITS`` there.
    """

    __tablename__ = "posts"
    __table_args__ = (
        sa.UniqueConstraint("source", "post_id", name="uq_posts_source_post_id"),
        sa.Index("ix_posts_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=LIMITS["source"])
    post_id: str = Field(max_length=LIMITS["id"])
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # The offset the post was written with (minutes east of UTC), so exports can restore "+09:00".
    utc_offset_min: int = 0
    author_id: str = Field(max_length=LIMITS["author_id"], index=True)
    author_handle: str | None = Field(default=None, max_length=LIMITS["author_handle"])
    text: str = Field(sa_column=Column(sa.Text, nullable=False))
    lang: str | None = Field(default=None, max_length=LIMITS["lang"])
    url: str | None = Field(default=None, max_length=LIMITS["url"])
    repost_of: str | None = Field(default=None, max_length=LIMITS["repost_of"])
    reply_to: str | None = Field(default=None, max_length=LIMITS["reply_to"])
    quote_of: str | None = Field(default=None, max_length=LIMITS["quote_of"])
    metrics: dict[str, Any] = _json(dict)
    raw_page_id: int | None = Field(default=None, foreign_key="raw_pages.id")
    ingested_at: datetime = _ts(index=True, now=True)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.post_id}"


# --- analyzed ------------------------------------------------------------------------------------------


class Annotation(SQLModel, table=True):
    """The classifier's verdict on one post by one model version."""

    __tablename__ = "annotations"
    __table_args__ = (
        sa.UniqueConstraint("post_pk", "model", name="uq_annotations_post_model"),
        # One model's annotations with one label, with their posts, from the index alone: a counts series
        # reads a key's victim reports this way (SQLite probes it per post; the row id is in every SQLite
        # index, PostgreSQL includes it).
        sa.Index("ix_annotations_model_label_post", "model", "label", "post_pk", postgresql_include=["id"]),
    )

    id: int | None = Field(default=None, primary_key=True)
    post_pk: int = Field(foreign_key="posts.id", index=True)
    label: str = Field(max_length=32, index=True)
    score: float
    scores: dict[str, float] = _json(dict)
    model: str = Field(max_length=128)
    # Provenance: what split the text for the model that ran first ("char-ngrams", "subword"); `dictionary`
    # names the Sudachi dictionary when Sudachi ran for this post ("" when it did not).
    tokenizer: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    dictionary: str = Field(max_length=128)
    analyzed_at: datetime = _ts(now=True)


class HumanLabel(SQLModel, table=True):
    """A person's label for a stored post (`incident-monitor label import`), kept beside the model's
    annotations and never touched by re-classification. One row per post and labeler; a later import by the
    same labeler replaces that labeler's label."""

    __tablename__ = "human_labels"
    __table_args__ = (sa.UniqueConstraint("post_pk", "labeler", name="uq_human_labels_post_labeler"),)

    id: int | None = Field(default=None, primary_key=True)
    post_pk: int = Field(foreign_key="posts.id", index=True)
    label: str = Field(max_length=32)
    labeler: str = Field(max_length=128)
    labeled_at: datetime = _ts()
    note: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    imported_at: datetime = _ts(now=True)


class Mention(SQLModel, table=True):
    """A broker or ticker named in a post (span in the original text)."""

    __tablename__ = "mentions"
    # The annotation id in the index answers "does this annotation name this broker" without reading rows.
    __table_args__ = (sa.Index("ix_mentions_kind_value_annotation", "kind", "value", "annotation_id"),)

    id: int | None = Field(default=None, primary_key=True)
    annotation_id: int = Field(foreign_key="annotations.id", index=True)
    post_pk: int = Field(foreign_key="posts.id", index=True)
    kind: str = Field(max_length=16)  # broker | ticker
    value: str = Field(max_length=128)
    surface: str = Field(max_length=256)
    start: int
    end: int
    by: str | None = Field(default=None, max_length=8)  # code | name (tickers)


# --- detection and alerts ------------------------------------------------------------------------------


class StateEntry(SQLModel, table=True):
    """Small JSON state that must survive a restart (detector baselines, pipeline clock)."""

    __tablename__ = "state"

    key: str = Field(primary_key=True, max_length=128)
    value: dict[str, Any] = _json(dict)
    updated_at: datetime = _ts(now=True)


ACTIVE_ALERT = sa.text("status IN ('pending', 'firing')")


class Alert(SQLModel, table=True):
    """One alert per (kind, key) episode; the lifecycle planner moves it pending -> firing -> resolved.

    ``scope`` keeps the live bot's alerts apart from each backtest's ("live", "replay:<file digest>#<run>"):
    a replay plans, records and delivers only its own. The partial unique index allows one pending or
    firing episode per (scope, fingerprint), so two writers racing to open the same alert cannot both win.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        sa.Index("ix_alerts_fingerprint_status", "fingerprint", "status"),
        sa.Index("uq_alerts_active_fingerprint", "scope", "fingerprint", unique=True,
                 sqlite_where=ACTIVE_ALERT, postgresql_where=ACTIVE_ALERT),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(default="live", max_length=128, index=True)
    fingerprint: str = Field(max_length=300)  # f"{kind}:{key}"
    kind: str = Field(max_length=16)
    key: str = Field(max_length=256)
    status: str = Field(max_length=16, index=True)  # pending | firing | resolved
    first_seen: datetime = _ts()
    opened_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts(now=True)
    resolved_at: datetime | None = _ts(nullable=True)
    last_notified_at: datetime | None = _ts(nullable=True)
    window_start: datetime = _ts()
    count: int = 0
    max_count: int = 0
    expected: float = 0.0
    score: float = 0.0
    tickers: list[str] = _json(list)
    sample_post_ids: list[str] = _json(list)
    # Where the Slack message lives, so updates thread under it and the parent is edited in place.
    slack_channel: str | None = Field(default=None, max_length=128)
    slack_ts: str | None = Field(default=None, max_length=64)
    extra: dict[str, Any] = _json(dict)


class AlertEventRow(SQLModel, table=True):
    """An open / update / resolve event, in the DESIGN.md alert-event contract (``payload``)."""

    __tablename__ = "alert_events"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alerts.id", index=True)
    event: str = Field(max_length=16)
    at: datetime = _ts(index=True)
    payload: dict[str, Any] = _json(dict)


class OutboxItem(SQLModel, table=True):
    """A notification owed to one notifier for one event; committed with the event, sent afterwards."""

    __tablename__ = "outbox"
    __table_args__ = (sa.UniqueConstraint("event_id", "notifier", name="uq_outbox_event_notifier"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="alert_events.id", index=True)
    notifier: str = Field(max_length=64)  # slack, terminal, jsonl ...
    status: str = Field(default="pending", max_length=16, index=True)  # pending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime = _ts(now=True)
    last_error: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    sent_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(now=True)
    # Who holds the current claim ("host/boot id/pid"), so a restarted process can take over the claims of
    # one that died instead of waiting ``claim_seconds`` for them to expire.
    claimed_by: str | None = Field(default=None, max_length=200)


class AnalysisQueue(SQLModel, table=True):
    """Posts the current model has not annotated yet: filled in the transaction that stores a post, emptied
    in the one that stores its annotation. Analysis reads this small table instead of anti-joining every
    post with its annotations, and workers share it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

    __tablename__ = "analysis_queue"

    post_pk: int = Field(sa_column=Column(sa.Integer, sa.ForeignKey("posts.id", ondelete="CASCADE"),
                                          primary_key=True, autoincrement=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class Silence(SQLModel, table=True):
    """Mutes notifications for matching alerts until it expires (the alert itself still tracks)."""

    __tablename__ = "silences"

    id: int | None = Field(default=None, primary_key=True)
    kind: str | None = Field(default=None, max_length=16)  # None matches every kind
    key: str = Field(max_length=256)  # exact key, or "*" for all keys of the kind
    created_at: datetime = _ts(now=True)
    expires_at: datetime = _ts(index=True)
    created_by: str = Field(default="", max_length=128)
    comment: str = Field(default="", max_length=1000)


# --- collectors ----------------------------------------------------------------------------------------


class CollectorCursor(SQLModel, table=True):
    """Where a collector's stream stands (since_id, time_us, fullname ...), saved with the posts."""

    __tablename__ = "cursors"

    source: str = Field(primary_key=True, max_length=32)
    name: str = Field(primary_key=True, max_length=256)  # query or stream name
    value: str = Field(max_length=512)
    extra: dict[str, Any] = _json(dict)
    updated_at: datetime = _ts(now=True)


class Rejected(SQLModel, table=True):
    """A record no ingest path could store, kept with its reason instead of stopping the ingest.

    ``fingerprint`` (SHA-256 of source, location and the whole record) is unique, so reading the same bad
    line or post again - re-importing a file, a page served twice - adds no second row.
    """

    __tablename__ = "rejected"

    id: int | None = Field(default=None, primary_key=True)
    rejected_at: datetime = _ts(index=True, now=True)
    ingest: str = Field(max_length=32)  # import | replay | file | x | reddit | bluesky
    source: str = Field(max_length=32)  # the service it came from (file: a file of any source)
    location: str = Field(max_length=2000)  # FILE:LINE, or the page (URL without secrets) and item
    reason: str = Field(sa_column=Column(sa.Text, nullable=False))  # one line naming the problem
    record: str = Field(sa_column=Column(sa.Text, nullable=False))  # the record as received, cut to 4 kB
    record_chars: int = 0  # its full length, in characters
    fingerprint: str = Field(max_length=64, index=True, unique=True)


class SourceHealth(SQLModel, table=True):
    """Per-source health for `status`: last success, counts, last error, spend."""

    __tablename__ = "source_health"

    source: str = Field(primary_key=True, max_length=32)
    last_success_at: datetime | None = _ts(nullable=True)
    last_post_at: datetime | None = _ts(nullable=True)  # when a run last stored a new post
    last_error_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    posts_collected: int = 0
    requests: int = 0
    spend_day: str | None = Field(default=None, max_length=10)  # YYYY-MM-DD (UTC) the spend is for
    spend_usd: float = 0.0
    disabled_reason: str | None = Field(default=None, max_length=500)
    updated_at: datetime = _ts(now=True)
