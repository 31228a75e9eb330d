"""Alembic environment: runs on the connection the caller passes (``store.db.upgrade``), or on
``sqlalchemy.url``. ``render_as_batch`` lets ALTERs work on SQLite."""
from alembic import context
from sqlalchemy import create_engine

from dosewatch.store.models import Base

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
        run(conn)
