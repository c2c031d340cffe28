"""Alembic environment: runs against the connection handed over by storage.migrate()."""

from alembic import context

from services.referral.adapters.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
