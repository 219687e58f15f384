"""Alembic environment: the studio hands over an open connection (see db.open_database)."""
from alembic import context

from mobiclass.studio.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
