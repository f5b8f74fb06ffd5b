"""Post -> NLP annotations -> stored labels and mentions; and stored annotations -> detector Reports.

The NLP stage itself is the pure ``nlp`` package; this module is the glue to storage. A post counts as
analyzed once it has an annotation by the current model version, so upgrading the model re-annotates
everything with the new one without touching the old rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from monitor.errors import ModelError
from monitor.events import Report
from monitor.ingest import _insert
from storage.models import AnalysisQueue, Annotation, Mention, Post, StateEntry
from storage.queries import mentions_by_annotation

DETECTED_LABELS = ("victim_report", "incident_discussion")


class AnalyzerLike(Protocol):
    model_version: str

    def analyze_batch(self, texts: Sequence[str]) -> list[Any]: ...


def load_analyzer(model: str | None, securities: tuple[str, ...] = (), threads: int = 0) -> Any:
    """The NLP stage (bundled model unless ``model`` names another; the bundled securities master plus
    any official listed-company files), loaded once."""
    try:
        from nlp import Analyzer
        from nlp.errors import NLPError
    except ImportError as exc:  # a broken install, not a user error we can fix here
        raise ModelError(f"the nlp package cannot be imported ({exc}); reinstall with `pip install -e .`") from exc
    try:
        return Analyzer.load(model, securities=securities, threads=threads)
    except NLPError as exc:
        raise ModelError(str(exc)) from exc


QUEUE_MODEL_KEY = "analysis:queue-model"


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def fill_queue(engine: sa.Engine, model: str) -> None:
    """Queue every post ``model`` has not annotated yet, once per model version.

    New posts are queued as they are stored; this one scan covers what was stored before the queue
    existed or before a model upgrade (which re-annotates everything with the new model).
    """
    with Session(engine) as session:
        entry = session.get(StateEntry, QUEUE_MODEL_KEY)
        if entry is not None and entry.value.get("model") == model:
            return
        missing = (
            select(Post.id, Post.created_at)
            .where(~sa.exists().where(col(Annotation.post_pk) == col(Post.id), col(Annotation.model) == model))
        )
        stmt = _insert(session, AnalysisQueue.__table__).from_select(["post_pk", "created_at"], missing)  # type: ignore[attr-defined]  # SQLModel does not declare __table__
        session.execute(stmt.on_conflict_do_nothing(index_elements=["post_pk"]))
        value = {"model": model}
        if entry is None:
            session.add(StateEntry(key=QUEUE_MODEL_KEY, value=value, updated_at=datetime.now(UTC)))
        else:
            entry.value = value
            session.add(entry)
        try:
            session.commit()
        except sa.exc.IntegrityError:  # another worker filled it at the same moment
            session.rollback()


def pending_posts(session: Session, limit: int, until: datetime | None = None) -> list[Post]:
    """Queued posts, oldest first (created at or before ``until`` when given), claimed for this transaction.

    On PostgreSQL the queue rows are locked ``FOR UPDATE SKIP LOCKED``: concurrent workers each take a
    different batch and never analyze a post twice; a worker that dies releases its batch with its
    connection. SQLite has one writer at a time, so there the lock is not needed.
    """
    stmt = select(AnalysisQueue.post_pk).order_by(col(AnalysisQueue.created_at), col(AnalysisQueue.post_pk)).limit(limit)
    if until is not None:
        stmt = stmt.where(AnalysisQueue.created_at <= until)
    if _dialect(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    keys = list(session.exec(stmt).all())
    if not keys:
        return []
    return list(session.exec(select(Post).where(col(Post.id).in_(keys)).order_by(col(Post.id))).all())


def store_analyses(session: Session, posts: Sequence[Post], results: Sequence[Any], now: datetime) -> int:
    """Annotations and mentions of a batch in two bulk inserts, and the batch off the queue; returns how
    many annotations were new (a post another worker annotated meanwhile is skipped)."""
    if not posts:
        return 0
    table = Annotation.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    rows = [
        {
            "post_pk": post.id, "label": analysis.label, "score": float(analysis.score),
            "scores": {k: float(v) for k, v in analysis.scores.items()}, "model": analysis.model,
            "tokenizer": analysis.tokenizer, "dictionary": analysis.dictionary, "analyzed_at": now,
        }
        for post, analysis in zip(posts, results, strict=True)
    ]
    stmt = (
        _insert(session, table)
        .on_conflict_do_nothing(index_elements=["post_pk", "model"])
        .returning(table.c.id, table.c.post_pk)
    )
    ids = dict((pk, ann_id) for ann_id, pk in session.execute(stmt, rows).all())
    mentions = [
        {
            "annotation_id": ids[post.id], "post_pk": post.id, "kind": m.kind, "value": m.value,
            "surface": m.surface[:256], "start": m.start, "end": m.end, "by": m.by,
        }
        for post, analysis in zip(posts, results, strict=True) if post.id in ids
        for m in analysis.mentions
    ]
    if mentions:
        session.execute(sa.insert(Mention.__table__), mentions)  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    session.execute(sa.delete(AnalysisQueue).where(col(AnalysisQueue.post_pk).in_([p.id for p in posts])))
    return len(ids)


def analyze_pending(engine: sa.Engine, analyzer: AnalyzerLike, *, batch: int = 256,
                    now: datetime | None = None, limit: int | None = None, until: datetime | None = None) -> int:
    """Annotate the queued posts (created at or before ``until`` when given; replay passes its clock);
    one transaction per batch. Returns how many posts this call annotated."""
    fill_queue(engine, analyzer.model_version)
    done = 0
    while limit is None or done < limit:
        size = batch if limit is None else min(batch, limit - done)
        with Session(engine, expire_on_commit=False) as session:
            posts = pending_posts(session, size, until)
            if not posts:
                break
            results = analyzer.analyze_batch([p.text for p in posts])
            done += store_analyses(session, posts, results, now or datetime.now(UTC))
            session.commit()
    return done


def load_reports(session: Session, model: str, since: datetime | None = None, until: datetime | None = None,
                 *, after_annotation: int | None = None, labels: Sequence[str] = DETECTED_LABELS,
                 mention: tuple[str, str] | None = None) -> list[Report]:
    """Victim reports and incident discussion created in [since, until] (and, when given, annotated after
    annotation id ``after_annotation``), as the detector sees them. ``labels`` and ``mention`` (kind,
    value) narrow the load in SQL for readers that need one key's reports only."""
    return [report for _, report in _load_reports(session, model, since, until, after_annotation,
                                                      labels=labels, mention=mention)]


def _load_reports(session: Session, model: str, since: datetime | None, until: datetime | None,
                  after_annotation: int | None, upto_annotation: int | None = None,
                  *, since_exclusive: bool = False, labels: Sequence[str] = DETECTED_LABELS,
                  mention: tuple[str, str] | None = None) -> list[tuple[int, Report]]:
    # Only the columns a Report needs, as plain rows: building full Post and Annotation objects (metrics,
    # scores, every column) for each row was most of the cost of a read.
    model_col = cast("sa.ColumnElement[str]", col(Annotation.model))
    label_col = cast("sa.ColumnElement[str]", col(Annotation.label))
    windowed = since is not None or until is not None or after_annotation is not None
    if windowed and mention is None and _dialect(session) == "sqlite":
        # Without statistics SQLite takes the equalities on the (model, label) index for selective and would
        # walk every report ever annotated (then look up each post) to find one window's worth: a scan of the
        # store per cycle, growing with it (likely() does not move it off a covering index). `x || ''` is
        # the same value but no index term, so the post-time index (a window) or the annotation id range
        # (what was annotated since a cycle) drives the join.
        model_col, label_col = model_col.concat(""), label_col.concat("")
    model_term: sa.ColumnElement[bool] = model_col == model
    label_term: sa.ColumnElement[bool] = label_col.in_(labels)
    if mention is not None and after_annotation is None and windowed and _dialect(session) == "sqlite":
        label_term = sa.func.likely(label_term)  # one key's series: the mention index and post time share it
    stmt = (
        sa.select(col(Annotation.id), col(Annotation.label), col(Post.source), col(Post.post_id), col(Post.author_id),
                  col(Post.created_at), col(Post.text), col(Post.repost_of), col(Post.url))
        .select_from(Post)
        .join(Annotation, col(Annotation.post_pk) == col(Post.id))
        .where(model_term, label_term)
        .order_by(col(Post.created_at), col(Post.id))
    )
    if mention is not None:
        stmt = stmt.where(select(Mention.id).where(Mention.annotation_id == Annotation.id, Mention.kind == mention[0],
                                                   Mention.value == mention[1]).exists())
    if since is not None:
        stmt = stmt.where(col(Post.created_at) > since if since_exclusive else col(Post.created_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Post.created_at) <= until)
    if after_annotation is not None:
        stmt = stmt.where(col(Annotation.id) > after_annotation)
    if upto_annotation is not None:
        upto_term: sa.ColumnElement[bool] = col(Annotation.id) <= upto_annotation
        if after_annotation is None and _dialect(session) == "sqlite":
            upto_term = sa.func.likely(upto_term)  # every id so far: a bound, not a range to scan
        stmt = stmt.where(upto_term)
    rows = session.execute(stmt).all()
    if not rows:
        return []
    mentions = mentions_by_annotation(session, [row[0] for row in rows])
    reports = []
    for ann_id, label, source, post_id, author_id, created_at, text, repost_of, url in rows:
        found = mentions.get(ann_id, {})
        reports.append((cast(int, ann_id),  # a stored row always has its key
            Report(
                post_key=f"{source}:{post_id}",
                source=source,
                author_key=f"{source}:{author_id}",
                created_at=created_at,
                label=label,
                text=text,
                brokers=tuple(found.get("broker", ())),
                tickers=tuple(found.get("ticker", ())),
                # A text-style repost (「RT @user: …」 with no repost id from the source) is a repost too: it
                # carries its original's label but never counts as a reporter.
                repost_of=repost_of or _text_repost_of(text),
                url=url,
            ),
        ))
    return reports


# Annotation ids are assigned at insert but become visible at commit; on PostgreSQL two workers can commit
# out of id order. Re-reading this many ids below the last maximum catches such a late commit (the window
# is keyed by post, so a re-read report changes nothing).
LATE_COMMIT_IDS = 1000


def _text_repost_of(text: str) -> str | None:
    from nlp.views import repost_handle

    handle = repost_handle(text)
    return f"@{handle}" if handle else None


class ReportWindow:
    """The detector's reports in [now - lookback, now], kept in memory and topped up each call.

    Two small reads per call, never a scan of the store: reports whose post time entered the window
    since the last call (annotated before, e.g. by the live bot or a worker ahead of a replay's clock),
    and reports annotated since the last call whose post time had already passed. The window holds only
    the window: posts created after ``now`` are read once their time comes, not before.
    """

    def __init__(self, model: str, lookback: timedelta) -> None:
        self.model = model
        self.lookback = lookback
        self._reports: dict[str, Report] = {}
        self._last_now: datetime | None = None
        self._max_annotation = 0

    def refresh(self, session: Session, now: datetime) -> list[Report]:
        since = now - self.lookback
        top = session.exec(select(sa.func.max(Annotation.id))).one() or 0
        if self._last_now is None or self._last_now < since or now < self._last_now:
            self._reports.clear()
            rows = _load_reports(session, self.model, since, now, None, top)
        else:
            rows = _load_reports(session, self.model, self._last_now, now, None, top, since_exclusive=True)
            # One writer at a time on SQLite: ids there commit in order and need no slack.
            slack = LATE_COMMIT_IDS if _dialect(session) == "postgresql" else 0
            rows += _load_reports(session, self.model, since, self._last_now,
                                  max(0, self._max_annotation - slack), top)
        self._last_now, self._max_annotation = now, max(top, self._max_annotation)
        for _, report in rows:
            self._reports[report.post_key] = report
        stale = [k for k, r in self._reports.items() if r.created_at < since]
        for key in stale:
            del self._reports[key]
        window = list(self._reports.values())
        window.sort(key=lambda r: (r.created_at, r.post_key))
        return window
