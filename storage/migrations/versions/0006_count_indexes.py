"""indexes that answer a counts series from the indexes: annotations by (model, label, post_pk), mentions by
(kind, value, annotation_id)

Revision ID: 0006
Revises: 0005

A counts series (``query --counts``, ``/api/counts``, the dashboard) reads the victim reports of the current
model that name one broker or ticker in a time range. With these two indexes neither the annotation nor the
mention rows are read to decide that: SQLite walks the posts of the range and probes the annotation index;
PostgreSQL scans the model's victim annotations and the key's mentions index-only. The mentions index
replaces the (kind, value) one, which is its prefix.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_annotations_model_label_post", "annotations", ["model", "label", "post_pk"], unique=False,
                    postgresql_include=["id"])
    op.create_index("ix_mentions_kind_value_annotation", "mentions", ["kind", "value", "annotation_id"], unique=False)
    op.drop_index("ix_mentions_kind_value", table_name="mentions")


def downgrade() -> None:
    op.create_index("ix_mentions_kind_value", "mentions", ["kind", "value"], unique=False)
    op.drop_index("ix_mentions_kind_value_annotation", table_name="mentions")
    op.drop_index("ix_annotations_model_label_post", table_name="annotations")
