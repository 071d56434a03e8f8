"""The outbox: each applied change's event, written in the transaction that applies it, until JetStream has
acknowledged it (the relay then deletes the row).

Revision ID: 0002_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_outbox"
down_revision = "0001_tasks"


def upgrade() -> None:
    op.create_table(
        "outbox",
        # INTEGER on SQLite, so that it is the rowid; AUTOINCREMENT, so that a number is never used twice, even
        # once every row has been relayed and deleted.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("outbox")
