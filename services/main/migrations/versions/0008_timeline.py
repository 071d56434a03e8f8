"""The task timeline: ``tasks.deadline_at`` (the create plus the task's deadline), ``started_at`` (first running),
``finished_at`` (terminal) and ``provider_attempts``. Tasks created before it have none of them (NULL: not known).

Revision ID: 0008_timeline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_timeline"
down_revision = "0007_webhooks"

TIMES = ("deadline_at", "started_at", "finished_at")


def upgrade() -> None:
    # Nullable columns without a default: both databases add them without rewriting the table.
    for name in TIMES:
        op.add_column("tasks", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("provider_attempts", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name in (*TIMES, "provider_attempts"):
            batch.drop_column(name)
