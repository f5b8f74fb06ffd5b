"""Retention: what the store keeps, and `db prune` / the scheduled prune job that deletes the rest.

Each ``[retention]`` setting is a number of days (0 keeps forever); what each one keeps is stated in the
operations guide. Deletion runs in short transactions of ``BATCH`` rows, so a prune never holds the store
for long and a crash part-way leaves a consistent store (the next prune finishes the job).

Never deleted: posts not yet analysed (their mentions are unknown), posts with a broker or ticker
mention, pending or firing alerts and their events, outbox rows still owed, and backtest scopes (a
backtest's alerts are the user's to keep; replay them into a scratch ``--db`` to throw them away).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from monitor.settings import NonNegativeInt
from storage.models import (
    Alert,
    AlertEventRow,
    AnalysisQueue,
    Annotation,
    Mention,
    OutboxItem,
    Post,
    RawPage,
    Rejected,
)
from storage.queries import LIVE_SCOPE
from storage.search import unindex_posts

log = logging.getLogger(__name__)
BATCH = 2000


@dataclass(frozen=True)
class RetentionConfig:
    raw_pages_days: NonNegativeInt = field(default=30, metadata={
        "help": "keep raw API pages this many days (a parser fix can re-parse only what is kept); 0 = forever"})
    posts_without_mentions_days: NonNegativeInt = field(default=180, metadata={
        "help": "keep analysed posts that name no broker or ticker this many days; 0 = forever"})
    events_days: NonNegativeInt = field(default=365, metadata={
        "help": "keep resolved live alerts and their events this many days after they resolved; 0 = forever"})
    outbox_days: NonNegativeInt = field(default=30, metadata={
        "help": "keep sent or dead outbox rows this many days; 0 = forever"})
    rejected_days: NonNegativeInt = field(default=90, metadata={
        "help": "keep quarantined bad records (the rejected table) this many days; 0 = forever"})
    prune_every_hours: NonNegativeInt = field(default=24, metadata={"help": "how often `run` prunes; 0 = never"})


@dataclass
class PruneReport:
    raw_pages: int = 0
    posts: int = 0
    alerts: int = 0
    events: int = 0
    outbox: int = 0
    rejected: int = 0

    def summary(self) -> str:
        return (f"pruned {self.raw_pages} raw pages, {self.posts} posts without mentions, {self.alerts} resolved "
                f"alerts with {self.events} events, {self.outbox} outbox rows, {self.rejected} rejected records")


def _in_batches(engine: Engine, pick: sa.Select, delete: object) -> int:
    """Delete what ``pick`` selects (ids), BATCH ids per transaction; ``delete(conn, ids)`` does the work."""
    done = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(pick.limit(BATCH)).scalars())
            if not ids:
                return done
            delete(conn, ids)  # type: ignore[operator]
        done += len(ids)


def prune(engine: Engine, config: RetentionConfig, now: datetime) -> PruneReport:
    report = PruneReport()
    if config.outbox_days:
        cutoff = now - timedelta(days=config.outbox_days)
        report.outbox += _in_batches(
            engine,
            select(OutboxItem.id).where(col(OutboxItem.status).in_(("sent", "dead")), col(OutboxItem.created_at) < cutoff),
            lambda conn, ids: conn.execute(sa.delete(OutboxItem).where(col(OutboxItem.id).in_(ids))),
        )
    if config.events_days:
        cutoff = now - timedelta(days=config.events_days)

        def drop_alerts(conn: sa.Connection, ids: list[int]) -> None:
            events = select(AlertEventRow.id).where(col(AlertEventRow.alert_id).in_(ids))
            conn.execute(sa.delete(OutboxItem).where(col(OutboxItem.event_id).in_(events)))
            report.events += conn.execute(sa.delete(AlertEventRow).where(col(AlertEventRow.alert_id).in_(ids))).rowcount
            conn.execute(sa.delete(Alert).where(col(Alert.id).in_(ids)))

        report.alerts += _in_batches(
            engine,
            select(Alert.id).where(col(Alert.scope) == LIVE_SCOPE, col(Alert.status) == "resolved",
                                   col(Alert.resolved_at) < cutoff),
            drop_alerts,
        )
    if config.posts_without_mentions_days:
        cutoff = now - timedelta(days=config.posts_without_mentions_days)

        def drop_posts(conn: sa.Connection, ids: list[int]) -> None:
            # Out of the search index first: SQLite's contentless index needs the text to forget a post, and
            # SQLite may hand a deleted post's id to the next post stored.
            unindex_posts(conn, list(conn.execute(select(Post.id, Post.text).where(col(Post.id).in_(ids))).all()))
            conn.execute(sa.delete(Annotation).where(col(Annotation.post_pk).in_(ids)))
            conn.execute(sa.delete(Post).where(col(Post.id).in_(ids)))

        report.posts += _in_batches(
            engine,
            select(Post.id).where(
                col(Post.created_at) < cutoff,
                sa.exists().where(col(Annotation.post_pk) == col(Post.id)),
                ~sa.exists().where(col(Mention.post_pk) == col(Post.id)),
                ~sa.exists().where(col(AnalysisQueue.post_pk) == col(Post.id)),
            ),
            drop_posts,
        )
    if config.raw_pages_days:
        cutoff = now - timedelta(days=config.raw_pages_days)

        def drop_pages(conn: sa.Connection, ids: list[int]) -> None:
            conn.execute(sa.update(Post).where(col(Post.raw_page_id).in_(ids)).values(raw_page_id=None))
            conn.execute(sa.delete(RawPage).where(col(RawPage.id).in_(ids)))

        report.raw_pages += _in_batches(engine, select(RawPage.id).where(col(RawPage.retrieved_at) < cutoff),
                                        drop_pages)
    if config.rejected_days:
        cutoff = now - timedelta(days=config.rejected_days)
        report.rejected += _in_batches(
            engine, select(Rejected.id).where(col(Rejected.rejected_at) < cutoff),
            lambda conn, ids: conn.execute(sa.delete(Rejected).where(col(Rejected.id).in_(ids))),
        )
    return report
