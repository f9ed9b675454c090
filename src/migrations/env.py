"""Alembic environment: async engines, batch mode on SQLite, every module's models registered."""

from alembic import context
from sqlalchemy.engine import Connection

from src.config import settings
from src.database import Base, create_engine_for, include_object_for, run_async
from src.models import import_all_models

import_all_models()
target_metadata = Base.metadata


def database_url() -> str:
    return context.config.attributes.get("database_url") or settings.DATABASE_URL


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else url.split(":", 1)[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=dialect.startswith("sqlite"),
        compare_type=True,
        include_object=include_object_for(dialect.split("+", 1)[0]),
        literal_binds=connection is None,
    )


def run_with_connection(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine_for(database_url(), request_timeouts=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_async(run_online())
