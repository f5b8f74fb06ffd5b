"""full-text search index over post texts (character bigrams; FTS5 on SQLite, tsvector + GIN on PostgreSQL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:30:00

Existing posts are indexed here, in batches; new posts are indexed by ingest in the transaction that
stores them (storage.search.index_posts).
"""

from collections.abc import Sequence

from alembic import op

from storage import search

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    connection = op.get_bind()
    search.create_index(connection)
    search.backfill(connection)


def downgrade() -> None:
    search.drop_index(op.get_bind())
