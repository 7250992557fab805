"""Alembic's entry point: migrations run on the connection ``storage.migrations`` hands over,
or, offline (``sql=True``), print their SQL for the database the URL names."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
# Batch mode lets SQLite, which cannot alter most things in place, copy tables instead;
# other databases alter them directly.
if connection is None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        render_as_batch=True,
    )
else:
    context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
