"""human labels beside the model's annotations (the labeling loop); annotations name their tokenizer

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What split the text for the first model ("char-ngrams", "subword"); rows stored before say "".
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(
            sa.Column("tokenizer", sqlmodel.sql.sqltypes.AutoString(length=64), server_default="", nullable=False)
        )
    op.create_table(
        "human_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("labeler", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("labeled_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("imported_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["post_pk"], ["posts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("post_pk", "labeler", name="uq_human_labels_post_labeler"),
    )
    op.create_index(op.f("ix_human_labels_post_pk"), "human_labels", ["post_pk"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_human_labels_post_pk"), table_name="human_labels")
    op.drop_table("human_labels")
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("tokenizer")
