"""Per-user limits that hold across main replicas: each user's count of active (queued or running) tasks, and
each API key's token bucket. Both are rows changed by one conditional UPDATE, so concurrent writers on any
replica take from the same allowance.

Revision ID: 0004_limits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_limits"
down_revision = "0003_no_callback_secret"


def upgrade() -> None:
    op.create_table(
        "user_usage",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("active_tasks", sa.Integer, nullable=False),
    )
    op.create_table(
        "rate_buckets",
        # The SHA-256 of the API key, never the key.
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        # Unix seconds of the last refill.
        sa.Column("counted_at", sa.Float, nullable=False),
    )
    # Tasks already active count against their owner's limit.
    op.execute(
        "INSERT INTO user_usage (owner, active_tasks) "
        "SELECT owner, COUNT(*) FROM tasks WHERE status IN ('queued', 'running') GROUP BY owner"
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    op.drop_table("user_usage")
