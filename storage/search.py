"""Japanese full-text search over post texts, on SQLite and PostgreSQL alike.

Japanese has no spaces, and the words that matter are short (株, 中国, 約定), so the index is built from
characters, not words: the text is normalised (NFKC, case-folded) and cut into *runs* of letters and digits;
each run of n characters is indexed as its n-1 overlapping bigrams followed by its last character alone.
That one token stream answers every query exactly, with no dictionary and no tokenizer in the database:

- a one-character query ``株`` is the prefix query "a token starting with 株": the bigram 株X covers every 株
  that has a successor in its run, the final unigram the one that ends a run;
- a two-character query is one bigram;
- a longer query is the *phrase* of its bigrams (consecutive positions) - exactly the substring, because
  the final unigram of every run sits between runs and breaks any phrase across them.

A query is split at spaces and punctuation into parts that must all occur. Nothing of the user's text
reaches the database's own query syntax: every part is reduced to letters and digits and quoted, so FTS
operators (``"`` ``*`` ``NEAR`` ``OR``) and SQL fragments are searched for as plain text.

Backends: SQLite stores the token stream in a contentless FTS5 table (``post_search``, tokenizer
``ascii`` so tokens are kept as written) ranked by bm25; PostgreSQL in a ``tsvector`` column of
``post_search`` with a GIN index, ranked by ``ts_rank``. The stream is built here, in Python, for both, so
both answer the same queries the same way. ``index_posts`` keeps the index current (ingest calls it in the
transaction that stores the posts); migration 0004 backfills stores that existed before it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from storage.errors import StorageError

TABLE = "post_search"
# Tables (and FTS5 shadow tables) that belong to the search index rather than to the SQLModel models;
# schema comparisons skip them.
SEARCH_TABLES = frozenset({TABLE} | {f"{TABLE}_{s}" for s in ("data", "idx", "content", "docsize", "config")})
MAX_QUERY_CHARS = 200  # a search phrase, not a document: longer queries are refused with a clear message
MAX_QUERY_PARTS = 16
PG_MAX_POSITION = 16383  # PostgreSQL clamps tsvector positions here; later tokens would break phrases


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic filter: the search index (and its FTS5 shadow tables) is managed here, not by the models."""
    table = getattr(obj, "table", None)
    owner = name if type_ == "table" else getattr(table, "name", None)
    return owner not in SEARCH_TABLES


class SearchQueryError(StorageError):
    """The search text cannot be searched for (empty after normalisation, too long, too many parts)."""


def _normalise_char(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).casefold()


def normalise(text: str) -> str:
    """The text as the index sees it: NFKC, case-folded.

    >>> normalise("ＳＢＩ証券　ｶﾌﾞ")
    'sbi証券 カブ'
    """
    return unicodedata.normalize("NFKC", text).casefold()


def runs(text: str) -> list[str]:
    """Maximal runs of letters and digits of the normalised text (everything else separates).

    >>> runs("楽天証券で、勝手に中国株(00700)を!")
    ['楽天証券で', '勝手に中国株', '00700', 'を']
    """
    found: list[str] = []
    current: list[str] = []
    for ch in normalise(text):
        if ch.isalnum():
            current.append(ch)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


def tokens(text: str) -> list[str]:
    """The token stream of a text: per run, its bigrams then its last character.

    >>> tokens("中国株 約定")
    ['中国', '国株', '株', '約定', '定']
    """
    out: list[str] = []
    for run in runs(text):
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
        out.append(run[-1])
    return out


def fts5_document(text: str) -> str:
    return " ".join(tokens(text))


def tsvector_literal(text: str) -> str:
    """A tsvector literal with explicit positions, so PostgreSQL's parser never re-splits our tokens.

    >>> tsvector_literal("中国株")
    "'中国':1 '国株':2 '株':3"
    """
    toks = tokens(text)[:PG_MAX_POSITION]
    return " ".join(f"'{t}':{i}" for i, t in enumerate(toks, start=1))


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search: the parts (runs) that must all occur, in the normalised text."""

    text: str
    parts: tuple[str, ...]

    def fts5(self) -> str:
        r"""The FTS5 MATCH expression: each part a quoted prefix (1 char) or phrase of bigrams.

        >>> parse_query('株 "中国株" OR').fts5()
        '"株"* AND "中国 国株" AND "or"'
        """
        clauses = []
        for part in self.parts:
            if len(part) == 1:
                clauses.append(f'"{part}"*')
            else:
                clauses.append('"' + " ".join(part[i : i + 2] for i in range(len(part) - 1)) + '"')
        return " AND ".join(clauses)

    def tsquery(self) -> str:
        """The tsquery literal: prefix for one character, ``<->`` phrase of bigrams otherwise.

        >>> parse_query("株 約定する").tsquery()
        "'株':* & ('約定' <-> '定す' <-> 'する')"
        """
        clauses = []
        for part in self.parts:
            if len(part) == 1:
                clauses.append(f"'{part}':*")
            elif len(part) == 2:
                clauses.append(f"'{part}'")
            else:
                clauses.append("(" + " <-> ".join(f"'{part[i : i + 2]}'" for i in range(len(part) - 1)) + ")")
        return " & ".join(clauses)


def parse_query(q: str) -> SearchQuery:
    """Parse user search text; :class:`SearchQueryError` (one line, with the fix) when it cannot be searched.

    >>> parse_query("SBI　証券").parts
    ('sbi', '証券')
    >>> parse_query('" * OR')
    SearchQuery(text='" * OR', parts=('or',))
    >>> parse_query('"*')
    Traceback (most recent call last):
    ...
    storage.search.SearchQueryError: search text '"*' has no letters or digits to search for: give a word such as 株 or 約定
    """
    if len(q) > MAX_QUERY_CHARS:
        raise SearchQueryError(
            f"search text is {len(q):,} characters, over the {MAX_QUERY_CHARS} limit: search for a shorter phrase"
        )
    parts = tuple(dict.fromkeys(runs(q)))
    if not parts:
        raise SearchQueryError(
            f"search text {q[:40]!r} has no letters or digits to search for: give a word such as 株 or 約定"
        )
    if len(parts) > MAX_QUERY_PARTS:
        raise SearchQueryError(f"search text has {len(parts)} separate parts, over the {MAX_QUERY_PARTS} limit")
    return SearchQuery(q, parts)


def highlight_spans(text: str, query: SearchQuery) -> list[tuple[int, int]]:
    """Where the query's parts occur in the ORIGINAL text, as sorted, merged (start, end) spans.

    >>> highlight_spans("ＳＢＩで約定、中国株", parse_query("sbi 株"))
    [(0, 3), (9, 10)]
    """
    # Map every character of the normalised text back to the original character it came from.
    norm_chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for n in _normalise_char(ch):
            norm_chars.append(n)
            origin.append(i)
    norm = "".join(norm_chars)
    spans: list[tuple[int, int]] = []
    for part in query.parts:
        start = norm.find(part)
        while start != -1:
            end = start + len(part)
            spans.append((origin[start], origin[end - 1] + 1))
            start = norm.find(part, start + 1)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


# --- the index ------------------------------------------------------------------------------------------


def create_index(connection: Connection) -> None:
    """Create the search table (migration 0004 calls this)."""
    if connection.dialect.name == "sqlite":
        # Contentless: the texts already live in posts; the rowid is the post's primary key.
        connection.exec_driver_sql(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(tokens, content='', tokenize='ascii')")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"CREATE TABLE {TABLE} (post_pk INTEGER PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE, "
            "tokens TSVECTOR NOT NULL)"
        )
        connection.exec_driver_sql(f"CREATE INDEX ix_{TABLE}_tokens ON {TABLE} USING GIN (tokens)")
    else:
        raise StorageError(f"full-text search supports SQLite and PostgreSQL, not {connection.dialect.name}")


def drop_index(connection: Connection) -> None:
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")


def _dialect(bind: Any) -> str:
    name: str = bind.dialect.name if hasattr(bind, "dialect") else bind.get_bind().dialect.name
    return name


def index_posts(bind: Any, rows: Iterable[tuple[int, str]]) -> int:
    """Add (post primary key, text) pairs to the index, inside the caller's transaction.

    ``bind`` is a Session or a Connection. Posts already indexed must not be passed again (ingest passes
    only the rows its insert created).
    """
    rows = list(rows)
    if not rows:
        return 0
    execute = bind.execute
    if _dialect(bind) == "sqlite":
        execute(sa.text(f"INSERT INTO {TABLE}(rowid, tokens) VALUES (:pk, :doc)"),
                [{"pk": pk, "doc": fts5_document(text)} for pk, text in rows])
    else:
        execute(sa.text(f"INSERT INTO {TABLE}(post_pk, tokens) VALUES (:pk, CAST(:doc AS tsvector)) "
                        "ON CONFLICT (post_pk) DO NOTHING"),
                [{"pk": pk, "doc": tsvector_literal(text)} for pk, text in rows])
    return len(rows)


def unindex_posts(bind: Any, rows: Sequence[tuple[int, str]]) -> None:
    """Remove posts from the index before they are deleted (a contentless FTS5 table needs the text)."""
    if not rows:
        return
    if _dialect(bind) == "sqlite":
        bind.execute(sa.text(f"INSERT INTO {TABLE}({TABLE}, rowid, tokens) VALUES ('delete', :pk, :doc)"),
                     [{"pk": pk, "doc": fts5_document(text)} for pk, text in rows])
    else:
        bind.execute(sa.text(f"DELETE FROM {TABLE} WHERE post_pk = ANY(:pks)"), {"pks": [pk for pk, _ in rows]})


def backfill(connection: Connection, batch: int = 2000) -> int:
    """Index every stored post (migration 0004, for stores that existed before the index)."""
    last, n = 0, 0
    while True:
        rows = connection.execute(
            sa.text("SELECT id, text FROM posts WHERE id > :last ORDER BY id LIMIT :n"), {"last": last, "n": batch}
        ).all()
        if not rows:
            return n
        n += index_posts(connection, [(int(pk), text) for pk, text in rows])
        last = int(rows[-1][0])


def match(dialect: str, query: SearchQuery, ranked: bool = True, *, newest: int | None = None,
          below: int | None = None) -> sa.Select[Any]:
    """A subquery of matching post primary keys (column ``post_pk``) with a ``rank`` column (higher = better;
    NULL when not ``ranked``, which spares scoring every match).

    ``newest`` keeps only that many matches, those of the highest post keys (below ``below`` when given):
    scoring then costs what those rows cost, however many posts match.
    """
    if dialect == "sqlite":
        fts = sa.table(TABLE, sa.column("rowid"))
        rank: Any = -sa.func.bm25(sa.literal_column(TABLE)) if ranked else sa.cast(sa.null(), sa.Float)
        stmt = (
            sa.select(fts.c.rowid.label("post_pk"), rank.label("rank"))
            .select_from(fts)
            .where(sa.literal_column(TABLE).op("MATCH")(query.fts5()))
        )
        if below is not None:
            stmt = stmt.where(fts.c.rowid < below)
        if newest is not None:
            # FTS5 walks its doclists in rowid order and stops at the limit: bm25 runs on these rows only.
            stmt = stmt.order_by(fts.c.rowid.desc()).limit(newest)
        return stmt
    tsq = sa.cast(query.tsquery(), postgresql.TSQUERY)
    pg = sa.table(TABLE, sa.column("post_pk"), sa.column("tokens"))
    found = sa.select(pg.c.post_pk, pg.c.tokens).where(pg.c.tokens.op("@@")(tsq))
    if below is not None:
        found = found.where(pg.c.post_pk < below)
    if newest is not None:
        found = found.order_by(pg.c.post_pk.desc()).limit(newest)
    rows = found.subquery("found")
    # ts_rank is a float4; as float8 it survives the round trip through a paging cursor exactly.
    rank = sa.cast(sa.func.ts_rank(rows.c.tokens, tsq), postgresql.DOUBLE_PRECISION) if ranked else sa.cast(sa.null(), sa.Float)
    return sa.select(rows.c.post_pk, rank.label("rank"))


def matches_text(text: str, query: SearchQuery) -> bool:
    """Whether a text matches the query: exactly what the index answers (every part is letters and digits
    only, so it occurs in the normalised text if and only if it occurs inside one run).

    >>> matches_text("ＳＢＩ証券で約定", parse_query("sbi 約定")), matches_text("中国の株", parse_query("中国株"))
    (True, False)
    """
    norm = normalise(text)
    return all(part in norm for part in query.parts)
