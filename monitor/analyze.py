"""Post -> NLP annotations -> stored labels and mentions; and stored annotations -> detector Reports.

The NLP stage itself is the pure ``nlp`` package; this module is the glue to storage. A post counts as
analyzed once it has an annotation by the current model version, so upgrading the model re-annotates
everything with the new one without touching the old rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, select

from monitor.errors import ModelError
from monitor.events import Report
from storage.models import Annotation, Mention, Post
from storage.queries import mentions_by_annotation

DETECTED_LABELS = ("victim_report", "incident_discussion")


class AnalyzerLike(Protocol):
    model_version: str

    def analyze_batch(self, texts: Sequence[str]) -> list[Any]: ...


def load_analyzer(model: str | None, securities: tuple[str, ...] = ()) -> Any:
    """The NLP stage (bundled model unless ``model`` names another; the bundled securities master plus
    any official listed-company files), loaded once."""
    try:
        from nlp import Analyzer
        from nlp.errors import NLPError
    except ImportError as exc:  # a broken install, not a user error we can fix here
        raise ModelError(f"the nlp package cannot be imported ({exc}); reinstall with `pip install -e .`") from exc
    try:
        return Analyzer.load(model, securities=securities)
    except NLPError as exc:
        raise ModelError(str(exc)) from exc


def pending_posts(session: Session, model: str, limit: int) -> list[Post]:
    """Posts that have no annotation by ``model`` yet, oldest first."""
    stmt = (
        select(Post)
        .outerjoin(Annotation, sa.and_(Annotation.post_pk == Post.id, Annotation.model == model))
        .where(Annotation.id.is_(None))  # type: ignore[union-attr]
        .order_by(Post.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    return list(session.exec(stmt).all())


def store_analysis(session: Session, post: Post, analysis: Any, now: datetime) -> Annotation:
    annotation = Annotation(
        post_pk=post.id,  # type: ignore[arg-type]
        label=analysis.label,
        score=float(analysis.score),
        scores={k: float(v) for k, v in analysis.scores.items()},
        model=analysis.model,
        dictionary=analysis.dictionary,
        analyzed_at=now,
    )
    session.add(annotation)
    session.flush()
    for m in analysis.mentions:
        session.add(
            Mention(
                annotation_id=annotation.id,  # type: ignore[arg-type]
                post_pk=post.id,  # type: ignore[arg-type]
                kind=m.kind,
                value=m.value,
                surface=m.surface[:256],
                start=m.start,
                end=m.end,
                by=m.by,
            )
        )
    return annotation


def analyze_pending(engine: sa.Engine, analyzer: AnalyzerLike, *, batch: int = 256,
                    now: datetime | None = None, limit: int | None = None) -> int:
    """Annotate every post the current model has not seen; one transaction per batch. Returns the count."""
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with Session(engine, expire_on_commit=False) as session:
            posts = pending_posts(session, analyzer.model_version, size)
            if not posts:
                break
            results = analyzer.analyze_batch([p.text for p in posts])
            stamp = now or datetime.now(UTC)
            for post, analysis in zip(posts, results, strict=True):
                store_analysis(session, post, analysis, stamp)
            session.commit()
        done += len(posts)
    return done


def load_reports(session: Session, model: str, since: datetime | None = None, until: datetime | None = None,
                 *, after_annotation: int | None = None, labels: Sequence[str] = DETECTED_LABELS,
                 mention: tuple[str, str] | None = None) -> list[Report]:
    """Victim reports and incident discussion created in [since, until] (and, when given, annotated after
    annotation id ``after_annotation``), as the detector sees them. ``labels`` and ``mention`` (kind,
    value) narrow the load in SQL for readers that need one key's reports only."""
    return [report for _, report in _load_reports(session, model, since, until, after_annotation, labels, mention)]


def _load_reports(session: Session, model: str, since: datetime | None, until: datetime | None,
                  after_annotation: int | None, labels: Sequence[str] = DETECTED_LABELS,
                  mention: tuple[str, str] | None = None) -> list[tuple[int, Report]]:
    stmt = (
        select(Post, Annotation)
        .join(Annotation, Annotation.post_pk == Post.id)
        .where(Annotation.model == model, Annotation.label.in_(labels))  # type: ignore[attr-defined]
        .order_by(Post.created_at, Post.id)  # type: ignore[arg-type]
    )
    if mention is not None:
        stmt = stmt.where(select(Mention.id).where(Mention.annotation_id == Annotation.id, Mention.kind == mention[0],
                                                   Mention.value == mention[1]).exists())
    if since is not None:
        stmt = stmt.where(Post.created_at >= since)
    if until is not None:
        stmt = stmt.where(Post.created_at <= until)
    if after_annotation is not None:
        stmt = stmt.where(Annotation.id > after_annotation)  # type: ignore[operator]
    rows = session.exec(stmt).all()
    if not rows:
        return []
    mentions = mentions_by_annotation(session, [a.id for _, a in rows])  # type: ignore[misc]
    reports = []
    for post, annotation in rows:
        found = mentions.get(annotation.id, {})  # type: ignore[arg-type]
        reports.append((annotation.id,
            Report(
                post_key=f"{post.source}:{post.post_id}",
                source=post.source,
                author_key=f"{post.source}:{post.author_id}",
                created_at=post.created_at,
                label=annotation.label,
                text=post.text,
                brokers=tuple(found.get("broker", ())),
                tickers=tuple(found.get("ticker", ())),
                repost_of=post.repost_of,
                url=post.url,
            ),
        ))
    return reports


class ReportWindow:
    """The detector's reports kept in memory and topped up with what was annotated since the last call.

    Annotations are written only by this process's analyze stage, in id order, and never change, so
    "annotation id greater than the last one seen" finds exactly the new reports; the first call (and
    the first after a restart) loads the lookback window. Reports older than the lookback are dropped.
    """

    def __init__(self, model: str, lookback: timedelta) -> None:
        self.model = model
        self.lookback = lookback
        self._reports: dict[str, Report] = {}
        self._last_annotation: int | None = None

    def refresh(self, session: Session, now: datetime) -> list[Report]:
        since = now - self.lookback
        if self._last_annotation is None:
            rows = _load_reports(session, self.model, since, None, None)
            self._last_annotation = 0
        else:
            rows = _load_reports(session, self.model, None, None, self._last_annotation)
        for annotation_id, report in rows:
            self._last_annotation = max(self._last_annotation, annotation_id)
            self._reports[report.post_key] = report
        stale = [k for k, r in self._reports.items() if r.created_at < since]
        for key in stale:
            del self._reports[key]
        window = [r for r in self._reports.values() if r.created_at <= now]
        window.sort(key=lambda r: (r.created_at, r.post_key))
        return window
