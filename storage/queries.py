"""Read-side queries shared by the CLI, exports and notebooks (no SQL pasted elsewhere)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from storage.models import Alert, Annotation, Mention, Post
from storage.records import ExportRecord, PostRecord

LIVE_SCOPE = "live"  # the live bot's alerts; each backtest keeps its own scope (Alert.scope)


@dataclass
class PostView:
    """A stored post with its newest annotation, in the Post-record shape plus analysis fields."""

    post: Post
    annotation: Annotation | None
    brokers: list[str] = field(default_factory=list)
    tickers: list[str] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """The post as an :class:`~storage.records.ExportRecord` (JSON-ready dict): exports and the API."""
        a = self.annotation
        analysis: dict[str, Any] = {"brokers": self.brokers, "tickers": self.tickers}
        if a is not None:
            analysis.update(label=a.label, score=round(a.score, 4), model=a.model,
                            scores={k: round(v, 4) for k, v in (a.scores or {}).items()})
        post = PostRecord.from_row(self.post)
        return ExportRecord.model_construct(**dict(post), **analysis).model_dump(mode="json")


def iter_post_views(session: Session, *, label: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, batch: int = 1000) -> Iterator[PostView]:
    """Every stored post (oldest first) with its newest annotation and mentions, streamed in batches."""
    newest = (
        select(Annotation.post_pk, sa.func.max(Annotation.id).label("ann_id"))
        .group_by(col(Annotation.post_pk))
        .subquery()
    )
    last_id = 0
    while True:
        stmt = (
            select(Post, Annotation)
            .outerjoin(newest, newest.c.post_pk == col(Post.id))
            .outerjoin(Annotation, col(Annotation.id) == newest.c.ann_id)
            .where(col(Post.id) > last_id)
            .order_by(col(Post.id))
            .limit(batch)
        )
        if label is not None:
            stmt = stmt.where(Annotation.label == label)
        if since is not None:
            stmt = stmt.where(Post.created_at >= since)
        if until is not None:
            stmt = stmt.where(Post.created_at < until)
        rows = session.exec(stmt).all()
        if not rows:
            return
        found = mentions_by_annotation(session, [a.id for _, a in rows if a is not None and a.id is not None])
        for post, annotation in rows:
            entities = found.get(annotation.id, {}) if annotation is not None and annotation.id is not None else {}
            yield PostView(post, annotation, list(entities.get("broker", [])), list(entities.get("ticker", [])))
        last_id = rows[-1][0].id or last_id


def mentions_by_annotation(session: Session, annotation_ids: list[int], chunk: int = 500) -> dict[int, dict[str, list[str]]]:
    """Broker and ticker values per annotation id, deduplicated, in order of appearance in the text."""
    found: dict[int, dict[str, list[str]]] = defaultdict(lambda: {"broker": [], "ticker": []})
    for start in range(0, len(annotation_ids), chunk):
        for ann_id, kind, value in session.exec(
            select(Mention.annotation_id, Mention.kind, Mention.value)
            .where(Mention.annotation_id.in_(annotation_ids[start : start + chunk]))  # type: ignore[attr-defined]
            .order_by(Mention.annotation_id, Mention.start)  # type: ignore[arg-type]
        ).all():
            values = found[ann_id].setdefault(kind, [])
            if value not in values:
                values.append(value)
    return found


def get_posts_by_keys(session: Session, keys: list[str]) -> dict[str, Post]:
    """Posts by their "source:post_id" keys (missing or malformed keys are simply absent)."""
    pairs = list(dict.fromkeys((s, p) for s, sep, p in (k.partition(":") for k in keys) if sep and s and p))
    if not pairs:
        return {}
    rows = session.exec(select(Post).where(sa.tuple_(Post.source, Post.post_id).in_(pairs))).all()
    return {f"{p.source}:{p.post_id}": p for p in rows}


def post_counts(session: Session) -> dict[str, int]:
    """Stored posts per source (``import``/``replay`` files count under the source their records name)."""
    rows = session.exec(select(Post.source, sa.func.count()).group_by(col(Post.source)).order_by(col(Post.source))).all()
    return {source: int(n) for source, n in rows}


def label_counts(session: Session) -> dict[str, int]:
    newest = (
        select(Annotation.post_pk, sa.func.max(Annotation.id).label("ann_id")).group_by(col(Annotation.post_pk)).subquery()
    )
    rows = session.exec(
        select(Annotation.label, sa.func.count())
        .join(newest, newest.c.ann_id == Annotation.id)
        .group_by(Annotation.label)
    ).all()
    return {label: int(n) for label, n in rows}


def has_active_alerts(session: Session, scope: str = LIVE_SCOPE) -> bool:
    """Whether any alert of ``scope`` is pending or firing (so a quiet cycle still has lifecycle work to do)."""
    stmt = select(Alert.id).where(Alert.scope == scope, Alert.status != "resolved").limit(1)
    return session.exec(stmt).first() is not None
