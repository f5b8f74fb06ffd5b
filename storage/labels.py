"""Human labels beside the model's annotations: the review queue and what people decided.

The queue holds stored posts a model version has annotated and nobody has labeled yet: the ones the model is
least sure of (lowest top score) plus a seeded random sample, so a review also measures the posts the model
is sure of. Labels are upserted per (post, labeler) and never touched by re-classification: annotations live
in their own table, one row per model version.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from storage.models import Annotation, HumanLabel, Post


@dataclass(frozen=True)
class QueueItem:
    post: Post
    annotation: Annotation
    reason: str  # "least_sure" | "random"


def review_queue(session: Session, model: str, *, least_sure: int, sample: int, seed: int) -> list[QueueItem]:
    """Posts annotated by ``model`` and not labeled by anyone: the ``least_sure`` lowest-scored, then a
    ``sample`` drawn at random (seeded) from the rest, in that order."""
    labeled = select(HumanLabel.post_pk)
    base = (
        select(Post, Annotation)
        .join(Annotation, col(Annotation.post_pk) == col(Post.id))
        .where(Annotation.model == model, col(Post.id).not_in(labeled))
    )
    unsure = session.exec(base.order_by(Annotation.score, Post.id).limit(max(0, least_sure))).all()  # type: ignore[arg-type]
    items = [QueueItem(p, a, "least_sure") for p, a in unsure]
    taken = {p.id for p, _ in unsure}
    rest_ids = [
        pk
        for pk in session.exec(
            select(Annotation.post_pk)
            .where(Annotation.model == model, col(Annotation.post_pk).not_in(labeled))
            .order_by(col(Annotation.post_pk))
        ).all()
        if pk not in taken
    ]
    chosen = sorted(random.Random(seed).sample(rest_ids, min(max(0, sample), len(rest_ids))))
    if chosen:
        rows = session.exec(base.where(col(Post.id).in_(chosen)).order_by(col(Post.id))).all()
        items += [QueueItem(p, a, "random") for p, a in rows]
    return items


def upsert_human_label(session: Session, post: Post, *, label: str, labeler: str, labeled_at: datetime,
                       note: str | None = None) -> bool:
    """Store ``labeler``'s label for ``post``; returns True when it was new or changed."""
    row = session.exec(
        select(HumanLabel).where(HumanLabel.post_pk == post.id, HumanLabel.labeler == labeler)
    ).first()
    if row is None:
        session.add(HumanLabel(post_pk=post.id, label=label, labeler=labeler, labeled_at=labeled_at, note=note))  # type: ignore[arg-type]
        return True
    if (row.label, row.note) == (label, note) and row.labeled_at == labeled_at:
        return False
    row.label, row.note, row.labeled_at = label, note, labeled_at
    session.add(row)
    return True


@dataclass(frozen=True)
class ReviewedPost:
    post: Post
    label: str  # the majority of the labelers' labels; on a tie, the latest
    labelers: tuple[str, ...]


def reviewed_posts(session: Session) -> list[ReviewedPost]:
    """Every post with a human label, with the label people agree on."""
    rows = session.exec(
        select(Post, HumanLabel).join(HumanLabel, HumanLabel.post_pk == Post.id).order_by(Post.id, HumanLabel.labeled_at)  # type: ignore[arg-type]
    ).all()
    by_post: dict[int, list[tuple[Post, HumanLabel]]] = {}
    for post, human in rows:
        by_post.setdefault(post.id, []).append((post, human))  # type: ignore[arg-type]
    out = []
    for pairs in by_post.values():
        counts = Counter(h.label for _, h in pairs)
        top = max(counts.values())
        label = next(h.label for _, h in reversed(pairs) if counts[h.label] == top)
        out.append(ReviewedPost(pairs[0][0], label, tuple(h.labeler for _, h in pairs)))
    return out


def human_label_count(session: Session) -> int:
    return int(session.exec(select(sa.func.count()).select_from(HumanLabel)).one())
