"""``tasks.priority``: the priority the client gave at create, so a workflow started later (by the reconciler, or by
an idempotent retry) runs at it too. Tasks created before it have none (NULL): they run at the default priority.

Revision ID: 0006_task_priority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_task_priority"
down_revision = "0005_leases"


def upgrade() -> None:
    # A nullable column without a default: both databases add it without rewriting the table.
    op.add_column("tasks", sa.Column("priority", sa.SmallInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("priority")
