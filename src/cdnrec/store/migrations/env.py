"""Alembic environment: runs on the connection that cdnrec.store.database hands over."""

from alembic import context

from cdnrec.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
