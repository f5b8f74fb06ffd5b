"""Read-side queries shared by the CLI, exports and notebooks (no SQL pasted elsewhere)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from storage.errors import StorageError
from storage.export import Pseudonymizer
from storage.models import Alert, Annotation, Mention, Post
from storage.search import SearchQuery, matches_text, parse_query
from storage.search import match as search_match


class CursorError(StorageError):
    """A paging cursor that this listing did not hand out."""


LIVE_SCOPE = "live"  # the live bot's alerts; each backtest keeps its own scope (Alert.scope)


@dataclass
class PostView:
    """A stored post with its newest annotation, in the Post-record shape plus analysis fields."""

    post: Post
    annotation: Annotation | None
    brokers: list[str] = field(default_factory=list)
    tickers: list[str] = field(default_factory=list)
    mentions: list[dict[str, Any]] | None = None  # with spans, where the caller asked for them
    rank: float | None = None  # search relevance, where a text search found it

    def to_record(self) -> dict[str, Any]:
        """The post as an :class:`~storage.records.ExportRecord` (JSON-ready dict) for exports and the API,
        plus its mentions with spans and the label's provenance where the caller asked for them."""
        a = self.annotation
        p = self.post
        # What ExportRecord.model_dump(mode="json") of PostRecord.from_row(post) plus the analysis gives
        # (the record shape is that model's; tests/test_post_model.py holds the two equal), built directly:
        # pydantic's construct-and-dump was a third of an export's time per post.
        record: dict[str, Any] = {
            "source": p.source, "id": p.post_id,
            "created_at": p.created_at.astimezone(_offset(p.utc_offset_min)).isoformat(),
            "author_id": p.author_id, "author_handle": p.author_handle, "text": p.text, "lang": p.lang,
            "url": p.url, "repost_of": p.repost_of, "reply_to": p.reply_to, "quote_of": p.quote_of,
            "metrics": json_value(p.metrics or {}),
            "label": None, "score": None, "scores": None,
            "brokers": list(self.brokers), "tickers": list(self.tickers), "model": None,
        }
        if a is not None:
            record.update(label=a.label, score=round(a.score, 4), model=a.model,
                          scores={k: round(v, 4) for k, v in (a.scores or {}).items()})
        if self.mentions is not None:
            record["mentions"] = self.mentions
            record["provenance"] = provenance(a)
        return record


@functools.lru_cache(maxsize=64)
def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def json_value(value: Any) -> Any:
    """A stored JSON value as pydantic's JSON mode gives it: copied, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def provenance(annotation: Annotation | None) -> dict[str, Any] | None:
    """Which model, tokenizer and dictionary produced a label, as the annotation recorded them: the tokenizer
    of the model that ran first, and a Sudachi dictionary only where SudachiPy read the post."""
    if annotation is None:
        return None
    return {"model": annotation.model, "tokenizer": annotation.tokenizer or None,
            "dictionary": annotation.dictionary or None,
            "analyzed_at": annotation.analyzed_at.isoformat()}


@dataclass(frozen=True)
class PostFilter:
    """The researchers' filters, shared by `query`, `export`, the HTTP API and notebooks.

    Every field is optional; set fields are ANDed. ``label`` is the newest annotation's label, ``broker`` and
    ``ticker`` are canonical values named by that annotation, ``q`` is full-text search
    (:mod:`storage.search`), ``until`` is exclusive.
    """

    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None
    label: str | None = None
    broker: str | None = None
    ticker: str | None = None
    author: str | None = None
    lang: str | None = None
    q: str | None = None

    def search(self) -> SearchQuery | None:
        return parse_query(self.q) if self.q else None


ORDERS = ("newest", "oldest", "relevance")


def _newest_annotation_id() -> Any:
    return (
        select(sa.func.max(Annotation.id))
        .where(Annotation.post_pk == Post.id)
        .correlate(Post)
        .scalar_subquery()
    )


def _filtered(session: Session, flt: PostFilter, ranked: bool = True, columns: tuple[Any, ...] = (),
              annotated: bool = False) -> tuple[Any, Any]:
    """SELECT Post, Annotation (newest, may be NULL), rank - with every filter applied (or just ``columns``,
    joined to the newest annotation where a filter reads it or ``annotated`` asks)."""
    dialect = session.get_bind().dialect.name
    query = flt.search()
    rank: Any = sa.cast(sa.null(), sa.Float)
    stmt = select(*columns) if columns else select(Post, Annotation)
    if query is not None:
        # Materialised: the matches are found once, never probed per post (FTS5 probes cost a MATCH each).
        hits = search_match(dialect, query, ranked).cte("hits").prefix_with("MATERIALIZED")
        stmt = stmt.join(hits, hits.c.post_pk == Post.id)
        rank = hits.c.rank
    if not columns:
        stmt = stmt.add_columns(rank.label("rank"))
    if not columns or annotated or flt.label or flt.broker or flt.ticker:
        stmt = stmt.outerjoin(Annotation, Annotation.id == _newest_annotation_id())
    if flt.since is not None:
        stmt = stmt.where(Post.created_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(Post.created_at < flt.until)
    if flt.source:
        stmt = stmt.where(Post.source == flt.source)
    if flt.author:
        stmt = stmt.where(Post.author_id == flt.author)
    if flt.lang:
        stmt = stmt.where(Post.lang == flt.lang)
    if flt.label:
        stmt = stmt.where(Annotation.label == flt.label)
    for kind, value in (("broker", flt.broker), ("ticker", flt.ticker)):
        if value:
            stmt = stmt.where(
                select(Mention.id)
                .where(Mention.annotation_id == Annotation.id, Mention.kind == kind, Mention.value == value)
                .exists()
            )
    return stmt, rank


def filtered_select(session: Session, flt: PostFilter, columns: tuple[Any, ...], *, annotated: bool = False) -> Any:
    """SELECT ``columns`` of the posts matching ``flt`` (no relevance score); ``annotated`` joins each post's
    newest annotation (as ``Annotation``, NULL where there is none) whether or not a filter reads it.
    Exports stream this one statement (:mod:`storage.stream`)."""
    return _filtered(session, flt, ranked=False, columns=columns, annotated=annotated)[0]


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> list[Any]:
    """The keyset values of a cursor; :class:`CursorError` when it is not one this order handed out."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or values[0] != order:
            raise ValueError
        if order == "oldest" and isinstance(values[1], int):
            return values
        if order == "newest" and isinstance(values[2], int):
            return [order, datetime.fromisoformat(values[1]), values[2]]
        if (order == "relevance" and isinstance(values[1], int | float) and isinstance(values[2], int)
                and (len(values) == 3 or (len(values) == 4 and isinstance(values[3], int | None)))):
            return values
    except (ValueError, TypeError, IndexError, UnicodeDecodeError, binascii.Error):
        pass
    raise CursorError("cursor is not one this listing handed out: start again without it")


def find_posts(session: Session, flt: PostFilter, *, limit: int = 50, order: str = "newest",
               cursor: str | None = None, with_mentions: bool = False) -> tuple[list[PostView], str | None]:
    """One page of posts matching ``flt`` and the cursor of the next page (None at the end).

    ``order`` is ``newest`` (created_at, newest first), ``oldest`` (storage order) or ``relevance`` (search
    rank, needs ``q``). Paging is keyset paging, so a page costs the same however deep it is.
    """
    if order not in ORDERS:
        raise CursorError(f"unknown order {order!r}: use one of {', '.join(ORDERS)}")
    if order == "relevance" and not flt.q:
        order = "newest"
    after = decode_cursor(cursor, order) if cursor else None
    if flt.q and order == "newest":
        page = _newest_matches_by_scan(session, flt, limit, after, with_mentions)
        if page is not None:
            return page
    if order == "relevance" and replace(flt, q=None) == PostFilter():
        return _ranked_in_tiers(session, flt, limit, after, with_mentions)
    # Two steps: the page's keys in order (narrow rows, cheap to sort), then the full rows of those keys only.
    stmt, rank = _filtered(session, flt, ranked=order == "relevance", columns=(Post.id,))
    stmt = stmt.add_columns(rank.label("rank"))
    if order == "newest":
        stmt = _newest_after(stmt, after)
    elif order == "oldest":
        stmt = stmt.order_by(col(Post.id))
        if after:
            stmt = stmt.where(col(Post.id) > after[1])
    else:
        stmt = stmt.order_by(rank.desc(), col(Post.id).desc())
        if after:
            stmt = stmt.where(sa.or_(rank < after[1], sa.and_(rank == after[1], Post.id < after[2])))
    keys = session.execute(stmt.limit(limit + 1)).all()
    return _page(session, _fetch(session, keys), limit, order, with_mentions)


def _fetch(session: Session, keys: Any) -> list[Any]:
    """(Post, newest Annotation, rank) for (post id, rank) keys, in the keys' order."""
    if not keys:
        return []
    stmt, _ = _filtered(session, PostFilter(), ranked=False)
    rows = session.exec(stmt.where(Post.id.in_([k[0] for k in keys]))).all()  # type: ignore[union-attr]
    by_id = {row[0].id: row for row in rows}
    return [(by_id[pk][0], by_id[pk][1], rank) for pk, rank in keys if pk in by_id]


def _page(session: Session, rows: Any, limit: int, order: str, with_mentions: bool) -> tuple[list[PostView], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    views = _views(session, rows, with_mentions)
    next_cursor = None
    if more and rows:
        last = views[-1]
        if order == "newest":
            next_cursor = encode_cursor([order, last.post.created_at.isoformat(), last.post.id])
        elif order == "oldest":
            next_cursor = encode_cursor([order, last.post.id])
        else:
            next_cursor = encode_cursor([order, last.rank, last.post.id])
    return views, next_cursor


def get_post_view(session: Session, source: str, post_id: str, with_mentions: bool = True) -> PostView | None:
    """One post by its (source, id), with its newest annotation and mentions."""
    stmt, _ = _filtered(session, PostFilter())
    rows = session.exec(stmt.where(Post.source == source, Post.post_id == post_id)).all()
    views = _views(session, rows, with_mentions)
    return views[0] if views else None


SCAN_WINDOW = 1000  # newest posts read first, before deciding between reading on and the index
SCAN_MAX_ROWS = 20_000  # the most newest posts a newest-first search reads before it asks the index


def _newest_after(stmt: Any, after: list[Any] | None) -> Any:
    stmt = stmt.order_by(col(Post.created_at).desc(), col(Post.id).desc())
    if after:
        stmt = stmt.where(sa.or_(Post.created_at < after[1], sa.and_(Post.created_at == after[1], Post.id < after[2])))
    return stmt


def _newest_matches_by_scan(session: Session, flt: PostFilter, limit: int, after: list[Any] | None,
                            with_mentions: bool) -> tuple[list[PostView], str | None] | None:
    """The newest-first page of a text search found by reading the newest posts and matching their text.

    An index answers "which posts contain 株" fast when few do, but a common word (or a phrase of common
    bigrams) matches a large part of the store, and putting all of its matches in time order costs far more
    than reading the newest few thousand posts and keeping those that match
    (:func:`storage.search.matches_text`, the index's exact semantics). So: read SCAN_WINDOW of the newest
    posts that pass the other filters; from the share of them that match, estimate how many more rows hold
    a full page, and read on (in time order, so the page stays exact) while that stays within SCAN_MAX_ROWS.
    A word no row of the first window holds, or one too rare to find within SCAN_MAX_ROWS, returns None,
    which sends the caller to the index.
    """
    query = flt.search()
    assert query is not None
    # Plain columns, not ORM objects: reading thousands of rows must cost what the database costs.
    scan, _ = _filtered(session, replace(flt, q=None), columns=(Post.id, Post.text))
    want = limit + 1
    hit_ids: list[tuple[int, None]] = []
    scanned, window, position = 0, SCAN_WINDOW, after
    while True:
        rows = session.execute(_newest_after(scan, position).limit(window)).all()
        scanned += len(rows)
        hit_ids += [(pk, None) for pk, text in rows if matches_text(text, query)]
        if len(hit_ids) >= want or len(rows) < window:
            break  # a full page, or every post there is: exact either way
        if not hit_ids:
            return None
        # Rows still needed at the share seen so far, with a margin so one more read usually suffices.
        window = max(SCAN_WINDOW, (want - len(hit_ids)) * scanned * 3 // (2 * len(hit_ids)))
        if scanned + window > SCAN_MAX_ROWS:
            return None
        # Where to read on: the last row's time, looked up once (converting every row's time costs more).
        last = rows[-1][0]
        position = ["newest", session.execute(select(Post.created_at).where(Post.id == last)).scalar_one(), last]
    return _page(session, _fetch(session, hit_ids[:want]), limit, "newest", with_mentions)


RANK_CANDIDATES = 2000


def _ranked_in_tiers(session: Session, flt: PostFilter, limit: int, after: list[Any] | None,
                     with_mentions: bool) -> tuple[list[PostView], str | None]:
    """A text search with no other filter, by relevance: scored RANK_CANDIDATES matches at a time.

    Scoring every match of a common word (株 matches a large share of all posts) costs seconds, and a
    relevance page needs the best of them. So the matches are ranked in tiers of RANK_CANDIDATES by post key,
    newest stored first: the first tier's matches by relevance, then the next tier's, and so on. A store with
    fewer matches than that (and every filtered search) is ranked as a whole; nothing is left out, and
    paging walks the tiers in turn (the cursor carries the tier).
    """
    query = flt.search()
    assert query is not None
    dialect = session.get_bind().dialect.name
    upper = after[3] if after and len(after) == 4 else None
    keyset = (after[1], after[2]) if after else None
    want = limit + 1
    found: list[tuple[int, float, int | None]] = []
    while len(found) < want:
        tier = session.execute(search_match(dialect, query, True, newest=RANK_CANDIDATES, below=upper)).all()
        ordered = sorted(((float(rank), int(pk)) for pk, rank in tier), key=lambda r: (-r[0], -r[1]))
        if keyset is not None:
            ordered = [r for r in ordered if r[0] < keyset[0] or (r[0] == keyset[0] and r[1] < keyset[1])]
        found += [(pk, rank, upper) for rank, pk in ordered[: want - len(found)]]
        if len(tier) < RANK_CANDIDATES:
            break
        upper, keyset = min(int(pk) for pk, _ in tier), None
    views, next_cursor = _page(session, _fetch(session, [(pk, rank) for pk, rank, _ in found]), limit,
                               "relevance", with_mentions)
    if next_cursor is not None:
        last = views[-1]
        tier_of = {pk: tier_upper for pk, _, tier_upper in found}
        next_cursor = encode_cursor(["relevance", last.rank, last.post.id, tier_of[cast(int, last.post.id)]])
    return views, next_cursor


def count_posts(session: Session, flt: PostFilter) -> int:
    # Counting needs neither the relevance score nor the annotation unless a filter reads it.
    stmt, _ = _filtered(session, flt, ranked=False, columns=(Post.id,))
    return int(session.exec(select(sa.func.count()).select_from(stmt.subquery())).one())


def _views(session: Session, rows: Any, with_mentions: bool) -> list[PostView]:
    ann_ids = [a.id for _, a, _ in rows if a is not None]
    found = mentions_by_annotation(session, ann_ids)
    spans = mention_spans_by_annotation(session, ann_ids) if with_mentions else {}
    views = []
    for post, annotation, rank in rows:
        entities = found.get(cast(int, annotation.id), {}) if annotation is not None else {}
        views.append(PostView(
            post, annotation, list(entities.get("broker", [])), list(entities.get("ticker", [])),
            mentions=(spans.get(cast(int, annotation.id), []) if annotation is not None else []) if with_mentions else None,
            rank=float(rank) if rank is not None else None,
        ))
    return views


def iter_post_views(session: Session, flt: PostFilter | None = None, *, label: str | None = None,
                    since: datetime | None = None, until: datetime | None = None, batch: int = 1000,
                    order: str = "oldest", limit: int | None = None,
                    with_mentions: bool = False) -> Iterator[PostView]:
    """Posts matching the filter in ``order`` (storage order by default), streamed in keyset-paged batches:
    never the whole table in memory."""
    flt = flt or PostFilter(label=label, since=since, until=until)
    cursor = None
    left = limit
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        views, cursor = find_posts(session, flt, limit=size, order=order, cursor=cursor,
                                   with_mentions=with_mentions)
        yield from views
        if left is not None:
            left -= len(views)
        if cursor is None:
            return


def mention_spans_by_annotation(session: Session, annotation_ids: list[int],
                                chunk: int = 500) -> dict[int, list[dict[str, Any]]]:
    """Every broker and ticker mention per annotation id, with its span in the original text."""
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for start in range(0, len(annotation_ids), chunk):
        for m in session.exec(
            select(Mention)
            .where(Mention.annotation_id.in_(annotation_ids[start : start + chunk]))  # type: ignore[attr-defined]
            .order_by(Mention.annotation_id, Mention.start)  # type: ignore[arg-type]
        ).all():
            found[m.annotation_id].append({"kind": m.kind, "value": m.value, "surface": m.surface,
                                           "start": m.start, "end": m.end, "by": m.by})
    return found


class AuthorPseudonyms:
    """Which stored author a pseudonym stands for, so a pseudonymised listing can still filter by author.

    A keyed hash cannot be reversed: the stored authors are hashed once (one DISTINCT read) and then topped
    up with the authors of posts stored since, by row id (re-reading ``SLACK`` ids below the last maximum
    catches a PostgreSQL transaction that committed a lower id late). Safe to share between threads.
    """

    SLACK = 1000

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._pseudonymizer = pseudonymizer
        self._authors: dict[str, set[tuple[str, str]]] = {}
        self._upto = 0
        self._lock = threading.Lock()

    def resolve(self, session: Session, pseudonym: str) -> list[tuple[str, str]]:
        """The (source, author_id) pairs whose pseudonym is ``pseudonym`` (one, or none when unknown)."""
        with self._lock:
            top = session.exec(select(sa.func.max(Post.id))).one() or 0
            if top > self._upto:
                stmt = select(Post.source, Post.author_id).where(col(Post.id) > max(0, self._upto - self.SLACK))
                for source, author_id in session.exec(stmt.distinct()).all():
                    self._authors.setdefault(self._pseudonymizer.pseudonym(source, author_id), set()).add(
                        (source, author_id))
                self._upto = top
            return sorted(self._authors.get(pseudonym, ()))


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


def post_counts(session: Session) -> dict[str, int]:
    """Stored posts per source (``import``/``replay`` files count under the source their records name)."""
    rows = session.exec(select(Post.source, sa.func.count()).group_by(col(Post.source)).order_by(col(Post.source))).all()
    return {source: int(n) for source, n in rows}
