from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from sqlmodel import select

from monitor.ingest import RawPayload, load_cursor, store_records
from monitor.records import parse_post
from storage.database import current_revision, head_revision, open_store, session_scope
from storage.models import Post, RawPage

JST = timezone(timedelta(hours=9))


def _post(i: int, **kw):
    base = {"source": "x", "id": str(i), "created_at": "2025-03-19T15:02:11+09:00", "author_id": f"a{i}",
            "text": f"楽天証券で勝手に中国株を買われた {i}"}
    base.update(kw)
    return parse_post(base)


def test_schema_is_at_head_after_open(engine):
    assert current_revision(engine) == head_revision()
    # upgrading again is a no-op, not an error
    open_store(str(engine.url.render_as_string(hide_password=False)))


def test_revision_reads_agree_with_alembic(engine, tmp_path):
    """current_revision and head_revision read the table and the files directly (alembic's import is most of a
    small export's start-up); they must give alembic's own answers, and None for a store never migrated."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.database import _alembic_config, make_engine

    with engine.connect() as connection:
        assert current_revision(engine) == MigrationContext.configure(connection).get_current_revision()
    assert head_revision() == ScriptDirectory.from_config(_alembic_config()).get_current_head()
    bare = make_engine(f"sqlite:///{tmp_path / 'bare.sqlite'}")
    assert current_revision(bare) is None
    bare.dispose()


def test_storing_same_post_twice_changes_nothing(engine):
    raw = RawPayload("x", "file:test", '{"data": []}', datetime.now(UTC))
    with session_scope(engine) as s:
        first = store_records(s, [_post(1), _post(2)], raw=raw)
    with session_scope(engine) as s:
        second = store_records(s, [_post(1), _post(2), _post(2)], raw=raw)
    assert (first.new, second.new, second.duplicate) == (2, 0, 3)
    with session_scope(engine) as s:
        assert s.exec(select(sa.func.count()).select_from(Post)).one() == 2
        assert s.exec(select(sa.func.count()).select_from(RawPage)).one() == 1


def test_timestamps_round_trip_aware(engine):
    with session_scope(engine) as s:
        store_records(s, [_post(7, created_at="2025-03-19T23:59:00+09:00")])
    with session_scope(engine) as s:
        row = s.exec(select(Post)).one()
    assert row.created_at == datetime(2025, 3, 19, 23, 59, tzinfo=JST)
    assert row.created_at.tzinfo is not None
    assert row.utc_offset_min == 540


def test_cursor_saved_in_the_same_transaction_as_posts(engine):
    try:
        with session_scope(engine) as s:
            store_records(s, [_post(1)], cursor=("x", "query-a", "100"))
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    with session_scope(engine) as s:
        assert load_cursor(s, "x", "query-a") is None
        assert s.exec(select(sa.func.count()).select_from(Post)).one() == 0
    with session_scope(engine) as s:
        store_records(s, [_post(1)], cursor=("x", "query-a", "100"))
    with session_scope(engine) as s:
        store_records(s, [_post(2)], cursor=("x", "query-a", "200"))
    with session_scope(engine) as s:
        assert load_cursor(s, "x", "query-a").value == "200"


def test_migrations_match_the_models(engine):
    """A model change without a migration would make `db upgrade` build a different schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from storage.search import include_object

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False, "include_object": include_object})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_sqlite_store_uses_wal(sqlite_url):
    engine = open_store(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_default_url_is_a_per_user_sqlite_file(monkeypatch):
    from storage.database import default_database_path, resolve_url

    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert resolve_url() == f"sqlite:///{default_database_path()}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    assert resolve_url() == "postgresql+psycopg://u@h/d"
    assert resolve_url("sqlite:///other.db") == "sqlite:///other.db"


def test_posts_by_keys_skips_malformed_keys_and_keeps_colons_in_ids(engine):
    from storage.queries import get_posts_by_keys

    with session_scope(engine) as s:
        store_records(s, [_post(1), _post(2, id="at://did:plc:abc/app.bsky.feed.post/3k", source="bluesky")])
    with session_scope(engine) as s:
        found = get_posts_by_keys(s, ["x:1", "bluesky:at://did:plc:abc/app.bsky.feed.post/3k", "nokey", "x:", ":1", "x:9"])
    assert sorted(found) == ["bluesky:at://did:plc:abc/app.bsky.feed.post/3k", "x:1"]
