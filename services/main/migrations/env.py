"""Alembic's entry point: migrations always run on the connection ``services.main.migrate`` hands over, inside the
transaction (and lock) it has already begun."""

from __future__ import annotations

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
