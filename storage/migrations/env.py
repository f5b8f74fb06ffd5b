"""Alembic environment: migrations run on the connection that storage.database.upgrade hands over."""

from alembic import context
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.search import include_object

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through storage.database.upgrade(engine)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can only ALTER through copies
        compare_type=True,
        include_object=include_object,  # the search index is not a SQLModel table
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
