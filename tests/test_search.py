"""Japanese full-text search on SQLite and PostgreSQL: short words, phrases, ranking, filters, paging,
hostile search text, and the migration that backfills an existing store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from storage.queries import CursorError, PostFilter, count_posts, find_posts, iter_post_views
from storage.search import SearchQueryError, highlight_spans, parse_query
from tests.research_fixtures import T0, build_store


@pytest.fixture
def store(engine):
    build_store(engine)
    return engine


def ids(views):
    return sorted(v.post.post_id for v in views)


def search(engine, q, order="relevance", **kw):
    with Session(engine) as s:
        return find_posts(s, PostFilter(q=q, **kw), limit=100, order=order)[0]


@pytest.mark.parametrize(("q", "expected"), [
    ("株", ["1", "3", "5"]),  # 中国株, 株価, 国株 - one character, anywhere in a word
    ("中国", ["1", "5"]),
    ("約定", ["2", "6", "8"]),
    ("中国株", ["1"]),  # a phrase: 中国の...国株 (post 5) holds both bigrams, but not next to each other
    ("国株", ["1", "5"]),
    ("sbi証券", ["4"]),  # full-width ＳＢＩ and case are normalised on both sides
    ("ｓｂｉ", ["4"]),
    ("楽天証券 約定", ["2", "6", "8"]),  # parts split by spaces must all occur
    ("00700", ["4"]),
    ("存在しない語", []),
])
def test_finds_short_words_and_phrases(store, q, expected):
    assert ids(search(store, q)) == expected


def test_results_are_ranked_by_relevance(store):
    views = search(store, "約定")
    assert views[0].post.post_id == "6"  # three 約定 in one short post
    assert views[0].rank >= views[-1].rank


def test_new_posts_are_searchable_at_once(store):
    from monitor.ingest import store_records
    from monitor.records import parse_post
    from storage.database import session_scope

    with session_scope(store) as s:
        store_records(s, [parse_post({"source": "x", "id": "99", "created_at": T0.isoformat(), "author_id": "z",
                                      "text": "知らない株が約定していた"})])
    assert "99" in ids(search(store, "株"))
    assert "99" in ids(search(store, "約定"))


@pytest.mark.parametrize("q", [
    '"', "*", '"株" OR 1=1', "NEAR(株 約定)", "株 NOT 約定", "'; DROP TABLE posts; --", "株*", "^株",
    "col:株", "株\ud800", "\udfff中国", "(((", "a" * 150, "' OR ''='",
])
def test_hostile_search_text_gives_results_or_a_clear_error(store, q):
    try:
        views = search(store, q)
    except SearchQueryError as exc:
        assert "search" in str(exc)
    else:
        assert isinstance(views, list)
    with Session(store) as s:  # the table is still there
        assert count_posts(s, PostFilter()) == 8


def test_overlong_and_empty_search_text_are_refused_with_the_fix():
    with pytest.raises(SearchQueryError, match="over the 200 limit"):
        parse_query("株" * 10_000)
    with pytest.raises(SearchQueryError, match="no letters or digits"):
        parse_query('"*" ()')


def test_surrogates_in_search_text_are_ignored(store):
    assert ids(search(store, "株\ud800")) == ids(search(store, "株"))


def test_filters_combine(store):
    from datetime import timedelta

    with Session(store) as s:
        def got(**kw):
            return ids(iter_post_views(s, PostFilter(**kw)))

        assert got(label="victim_report") == ["1", "2", "4", "6", "8"]
        assert got(broker="SBI証券") == ["4"]
        assert got(ticker="7203.T") == ["3"]
        assert got(source="bluesky") == ["8"]
        assert got(author="u1") == ["1", "6"]
        assert got(lang="en") == []
        assert got(since=T0 + timedelta(minutes=30)) == ["7", "8"]
        assert got(until=T0 + timedelta(minutes=5)) == ["1"]
        assert got(broker="楽天証券", label="victim_report", q="約定") == ["2", "6", "8"]
        assert count_posts(s, PostFilter(broker="楽天証券")) == 5


@pytest.mark.parametrize("order", ["newest", "oldest", "relevance"])
def test_cursor_paging_visits_every_match_once(store, order):
    with Session(store) as s:
        flt = PostFilter(q="楽天" if order == "relevance" else None)
        everything = ids(find_posts(s, flt, limit=100, order=order)[0])
        seen, cursor = [], None
        while True:
            page, cursor = find_posts(s, flt, limit=2, order=order, cursor=cursor)
            seen += [v.post.post_id for v in page]
            if cursor is None:
                break
        assert sorted(seen) == everything and len(seen) == len(set(seen))


def test_newest_order_is_by_creation_time(store):
    with Session(store) as s:
        page, _ = find_posts(s, PostFilter(), limit=3, order="newest")
    assert [v.post.post_id for v in page] == ["8", "7", "6"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ", "WyJvbGRlc3QiLCJ4Il0"])
def test_a_foreign_cursor_is_refused(store, cursor):
    with Session(store) as s, pytest.raises(CursorError, match="start again"):
        find_posts(s, PostFilter(), cursor=cursor, order="newest")


def test_highlights_point_into_the_original_text():
    text = "ＳＢＩ証券で約定、中国株"
    spans = highlight_spans(text, parse_query("sbi 株"))
    assert [text[a:b] for a, b in spans] == ["ＳＢＩ", "株"]


def test_migration_backfills_an_existing_store(db_url):
    """A store created before the index (revision 0001) finds its old posts after `db upgrade`."""
    from storage.database import make_engine, upgrade
    from storage.models import Post

    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with Session(engine) as s:
        for i, text in enumerate(["古い投稿: 勝手に約定", "株を売られた"]):
            s.add(Post(source="x", post_id=str(i), created_at=T0, author_id="a", text=text))
        s.commit()
    upgrade(engine)
    assert ids(search(engine, "約定")) == ["0"]
    assert ids(search(engine, "株")) == ["1"]
    engine.dispose()


def test_newest_first_search_is_the_same_whichever_way_it_is_answered(store, monkeypatch):
    """The newest-first page of a common word is read from the newest posts; of a rare one from the index.
    Both must give the index's answer, page by page."""
    import storage.queries as queries

    def pages(q):
        with Session(store) as s:
            seen, cursor = [], None
            while True:
                page, cursor = find_posts(s, PostFilter(q=q), limit=1, order="newest", cursor=cursor)
                seen += [v.post.post_id for v in page]
                if cursor is None:
                    return seen

    for q in ("株", "約定", "楽天", "中国株", "sbi"):
        monkeypatch.setattr(queries, "SCAN_WINDOW", 10_000)  # every page from reading the newest posts
        monkeypatch.setattr(queries, "SCAN_MAX_ROWS", 10_000)
        scanned = pages(q)
        monkeypatch.setattr(queries, "SCAN_WINDOW", 1)  # every page from the index
        monkeypatch.setattr(queries, "SCAN_MAX_ROWS", 1)
        indexed = pages(q)
        monkeypatch.setattr(queries, "SCAN_WINDOW", 2)  # read on past a small first window
        monkeypatch.setattr(queries, "SCAN_MAX_ROWS", 10_000)
        read_on = pages(q)
        assert scanned == indexed == read_on
        assert scanned == sorted(ids(search(store, q)), key=int, reverse=True)  # fixture ids follow time


def test_unindexed_posts_are_no_longer_found(store):
    """What a prune must call before deleting posts (a contentless FTS5 index needs the text to forget it)."""
    from sqlmodel import select

    from storage.database import session_scope
    from storage.models import Post
    from storage.search import unindex_posts

    with session_scope(store) as s:
        post = s.exec(select(Post).where(Post.post_id == "2")).one()
        unindex_posts(s, [(post.id, post.text)])
    assert ids(search(store, "約定")) == ["6", "8"]


def test_relevance_paging_in_tiers_lists_every_match_once(store, monkeypatch):
    """A common word's relevance listing is scored a tier of matches at a time: paging still lists every
    match exactly once, and a listing within one tier is the full ranking."""
    import storage.queries as queries

    def pages(q, limit):
        with Session(store) as s:
            seen, cursor = [], None
            while True:
                page, cursor = find_posts(s, PostFilter(q=q), limit=limit, order="relevance", cursor=cursor)
                seen += [(v.post.post_id, v.rank) for v in page]
                if cursor is None:
                    return seen

    for q in ("株", "約定", "楽天"):
        whole = pages(q, 2)
        monkeypatch.setattr(queries, "RANK_CANDIDATES", 2)
        tiered = pages(q, 1)
        monkeypatch.setattr(queries, "RANK_CANDIDATES", 2000)
        assert sorted(pk for pk, _ in tiered) == sorted(pk for pk, _ in whole)
        assert len(tiered) == len(set(tiered))
        assert [r for _, r in whole] == sorted((r for _, r in whole), reverse=True)
        assert whole == ids_ranked(store, q)


def ids_ranked(engine, q):
    with Session(engine) as s:
        views, _ = find_posts(s, PostFilter(q=q, until=datetime(2100, 1, 1, tzinfo=UTC)), limit=1000,
                              order="relevance")  # a filter: ranked as a whole
    return [(v.post.post_id, v.rank) for v in views]
