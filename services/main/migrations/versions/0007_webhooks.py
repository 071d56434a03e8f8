"""Webhooks: a task's webhook URL and events, one row per delivery a change is due to send, and each user's signing
secret (with the previous one while it still signs).

Revision ID: 0007_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_webhooks"
down_revision = "0006_task_priority"


def upgrade() -> None:
    # Nullable columns without a default: both databases add them without rewriting the table.
    op.add_column("tasks", sa.Column("webhook_url", sa.String(2048), nullable=True))
    op.add_column("tasks", sa.Column("webhook_events", sa.String(64), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workflow_started", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_task", "webhook_deliveries", ["task_id", "created_at"])
    # Partial: it holds only the deliveries whose workflow is not started yet, a handful at any time.
    unstarted = sa.text("NOT workflow_started")
    op.create_index(
        "ix_webhook_deliveries_unstarted",
        "webhook_deliveries",
        ["created_at"],
        postgresql_where=unstarted,
        sqlite_where=unstarted,
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_secret", sa.String(128), nullable=True),
        sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.drop_index("ix_webhook_deliveries_unstarted", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_task", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("webhook_events")
        batch.drop_column("webhook_url")
