"""alert scopes, one active alert per fingerprint, the analysis queue, outbox claim owners

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status IN ('pending', 'firing')")


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False,
                                      server_default="live"))
        batch_op.create_index(batch_op.f("ix_alerts_scope"), ["scope"], unique=False)
    # Before the unique index: an old store may hold two active episodes of one fingerprint (the race this
    # index closes); keep the newest open and resolve the older ones.
    op.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = updated_at "
        "WHERE status IN ('pending', 'firing') AND id NOT IN ("
        "SELECT max(id) FROM alerts WHERE status IN ('pending', 'firing') GROUP BY scope, fingerprint)"
    )
    op.create_index("uq_alerts_active_fingerprint", "alerts", ["scope", "fingerprint"], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column("scope", server_default=None)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))

    op.create_table(
        "analysis_queue",
        sa.Column("post_pk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["post_pk"], ["posts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("post_pk"),
    )
    with op.batch_alter_table("analysis_queue", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_analysis_queue_created_at"), ["created_at"], unique=False)
    # The queue is filled for a model version the first time analysis runs (see monitor.analyze): posts
    # stored before this revision are enqueued then, for whichever model is current.


def downgrade() -> None:
    with op.batch_alter_table("analysis_queue", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_queue_created_at"))
    op.drop_table("analysis_queue")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    op.drop_index("uq_alerts_active_fingerprint", table_name="alerts")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_scope"))
        batch_op.drop_column("scope")
