"""Brings the store's schema to the newest migration. main runs it at every start-up, before it serves anything.

Several main processes (``MAIN_WORKERS``, or replicas on PostgreSQL) may start at once. Each migrates inside one
transaction that first takes a lock: a transaction-scoped advisory lock on PostgreSQL (held until the transaction
ends, released by the server if the process dies), SQLite's write lock (``BEGIN IMMEDIATE``) on SQLite. The first
process applies what is missing; the others wait for it and then find nothing left to do. Both databases apply DDL
transactionally, so a migration cut short leaves the schema as it was.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The revision that equals the schema main created before it had migrations.
INITIAL = "0001_tasks"
# Any constant shared by every main process: the key of the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 0x6D61696E0001


def _upgrade(connection: sa.Connection, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    tables = sa.inspect(connection).get_table_names()
    if "tasks" in tables and "alembic_version" not in tables:
        # A store created before migrations existed already has the initial schema.
        command.stamp(config, INITIAL)
    command.upgrade(config, target)


def upgrade(connection: sa.Connection, target: str = "head") -> None:
    """Apply every missing migration up to ``target`` (a revision; main always migrates to the newest) on
    ``connection``, which is inside a write transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    _upgrade(connection, target)
