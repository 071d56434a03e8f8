"""``tasks.deleted_at``: a task its owner deleted stays as a tombstone (its input and result erased) until retention
purges it, so its id and its ``Idempotency-Key`` answer as deleted and never name a new task. And an index on the
finished tasks by the time they finished, which the retention purge walks.

Revision ID: 0009_tombstones
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_tombstones"
down_revision = "0008_timeline"

FINISHED = sa.text("status IN ('succeeded', 'failed', 'cancelled')")


def upgrade() -> None:
    # Nullable without a default: both databases add it without rewriting the table.
    op.add_column("tasks", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    # Partial: a task enters it when it finishes; its updated_at changes only once more, if it is deleted.
    op.create_index("ix_tasks_finished", "tasks", ["updated_at"], postgresql_where=FINISHED, sqlite_where=FINISHED)


def downgrade() -> None:
    op.drop_index("ix_tasks_finished", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("deleted_at")
