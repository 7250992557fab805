"""Alembic's entry point: migrations run on the connection ``storage.migrations`` hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
# Batch mode lets SQLite, which cannot alter most things in place, copy tables instead;
# other databases alter them directly.
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
