"""Drops ``tasks.callback_secret``: a task's callback token is derived from main's callback key
(services/main/callback_tokens.py), so no secret is stored with the task.

Revision ID: 0003_no_callback_secret
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_no_callback_secret"
down_revision = "0002_outbox"


def upgrade() -> None:
    # Batch mode: SQLite rebuilds the table (keeping its constraints and index); PostgreSQL alters it in place.
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("callback_secret")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("callback_secret", sa.String(64), nullable=True))
