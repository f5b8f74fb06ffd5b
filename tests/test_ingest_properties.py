"""Property: storing any sequence of batches - with repeats inside and across them - keeps exactly one row
per (source, id), and the counts the store reports add up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from monitor.ingest import store_records
from monitor.records import PostRecord
from storage.database import open_store, session_scope
from storage.models import Post

T0 = datetime(2025, 3, 19, 6, 0, tzinfo=UTC)

posts = st.builds(
    lambda source, n, text: PostRecord(source=source, id=str(n), created_at=T0 + timedelta(minutes=n),
                                       author_id=f"a{n % 7}", text=text),
    st.sampled_from(["x", "reddit", "bluesky"]),
    st.integers(min_value=0, max_value=30),
    st.text(max_size=40),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(posts, max_size=12), max_size=5))
def test_any_batches_store_each_post_once(batches, tmp_path_factory):
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('p') / 's.sqlite'}")
    reported_new = 0
    for batch in batches:
        with session_scope(engine) as session:
            result = store_records(session, batch)
        assert result.new + result.duplicate == len(batch)
        reported_new += result.new
    with session_scope(engine) as session:
        rows = session.exec(select(Post.source, Post.post_id)).all()
        count = session.exec(select(sa.func.count()).select_from(Post)).one()
    unique = {(p.source, p.id) for batch in batches for p in batch}
    assert set(rows) == unique
    assert count == len(unique) == reported_new
    engine.dispose()
