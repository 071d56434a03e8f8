"""The tasks table, as main created it before migrations existed.

Revision ID: 0001_tasks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_tasks"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("integration", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", sa.LargeBinary, nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.LargeBinary, nullable=True),
        sa.Column("progress", sa.Float, nullable=True),
        sa.Column("provider_task_id", sa.String(256), nullable=True),
        sa.Column("idempotency_key", sa.String(256), nullable=True),
        sa.Column("request_digest", sa.String(64), nullable=True),
        sa.Column("callback_secret", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "integration", "idempotency_key", name="uq_tasks_idempotency"),
    )
    op.create_index("ix_tasks_owner_created", "tasks", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_table("tasks")
