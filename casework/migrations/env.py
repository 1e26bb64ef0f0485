"""Alembic environment: runs migrations on the connection the desk hands it."""

from alembic import context
from sqlalchemy import create_engine

from casework.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as own:
        context.configure(
            connection=own,
            target_metadata=target_metadata,
            render_as_batch=own.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
