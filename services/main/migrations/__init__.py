"""main's schema, managed by Alembic: ``versions/`` holds one module per change, applied in order by
``services.main.migrate`` when main starts. A new change is a new module whose ``down_revision`` names the last one;
never edit a migration that has been released."""
