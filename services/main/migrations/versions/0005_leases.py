"""Leases (one row per background job that one main process at a time runs: the reconciler), and an index on the
queued tasks the reconciler looks for.

Revision ID: 0005_leases
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_leases"
down_revision = "0004_limits"


def upgrade() -> None:
    leases = op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The row exists from the start, so taking the lease is always one compare-and-set update, never an insert race.
    op.bulk_insert(leases, [{"name": "reconciler", "holder": "", "expires_at": datetime(1970, 1, 1, tzinfo=UTC)}])
    # Partial: it holds only the few tasks waiting for their workflow, so it costs next to nothing to keep up.
    queued = sa.text("status = 'queued'")
    op.create_index("ix_tasks_queued", "tasks", ["created_at"], postgresql_where=queued, sqlite_where=queued)


def downgrade() -> None:
    op.drop_index("ix_tasks_queued", "tasks")
    op.drop_table("leases")
