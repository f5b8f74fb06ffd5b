"""rejected: records an ingest path could not store, with the reason (quarantined instead of fatal)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rejected_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ingest", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("location", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("record_chars", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_rejected_rejected_at"), "rejected", ["rejected_at"], unique=False)
    op.create_index(op.f("ix_rejected_fingerprint"), "rejected", ["fingerprint"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_rejected_fingerprint"), table_name="rejected")
    op.drop_index(op.f("ix_rejected_rejected_at"), table_name="rejected")
    op.drop_table("rejected")
