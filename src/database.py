"""Engine, sessions and the declarative base every model inherits from."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Select, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from src.config import settings
from src.constants import COUNT_CAP

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
READY_CHECK_TIMEOUT_SECONDS = 3.0
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 5000
# Timestamps come back from PostgreSQL in the session's time zone: UTC, whatever the server's default.
POSTGRESQL_SESSION_OPTIONS = "-c timezone=UTC"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        # PostgreSQL sessions run in UTC (create_engine_for), and psycopg hands timestamptz back with
        # tzinfo=UTC already: converting again cost a page of 50 samples ~0.5 ms of CPU.
        if dialect.name == "postgresql":
            return None
        return super().result_processor(dialect, coltype)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its folder; `./data` may not exist on a fresh checkout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine_for(url: str) -> AsyncEngine:
    # hide_parameters: a failed statement's error (and so the log) never shows values such as hashes.
    if make_url(url).get_backend_name() == "sqlite":
        ensure_sqlite_directory(url)
        sqlite_engine = create_async_engine(url, hide_parameters=True)
        event.listen(sqlite_engine.sync_engine, "connect", _configure_sqlite_connection)
        return sqlite_engine
    # No overflow: connections opened past the pool were closed again as soon as the pool was full,
    # so under load a worker connected to PostgreSQL hundreds of times a second (a server process
    # forked for each). Waiting for a pooled connection costs far less.
    # No pool_pre_ping: it cost every request three round trips (BEGIN, SELECT 1, ROLLBACK) before
    # its own query. A connection the server dropped (a restart, a network cut) instead fails the
    # one request that meets it with a 503 (src/exceptions.py), and SQLAlchemy then replaces every
    # connection of the pool, so the API recovers by itself once the database is back.
    # The connect and pool timeouts bound how long a request waits for a database that is down or
    # swamped before it answers 503 DATABASE_UNAVAILABLE.
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=0,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            "options": POSTGRESQL_SESSION_OPTIONS,
        },
    )


engine = create_engine_for(settings.DATABASE_URL)
SessionFactory = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
# Reads run each statement on its own (no BEGIN, no ROLLBACK: two round trips fewer per request);
# the pool's connections are shared, and each goes back to transactions when returned.
ReadSessionFactory = async_sessionmaker(
    engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, autoflush=False
)
READ_METHODS = frozenset({"GET", "HEAD"})


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a selector loop: psycopg's async mode cannot use Windows' default proactor loop."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coroutine)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; services commit, anything left uncommitted is rolled back.

    A GET or HEAD never writes, so its session opens no transaction (`ReadSessionFactory`).
    """
    factory = ReadSessionFactory if request.method in READ_METHODS else SessionFactory
    async with factory() as session:
        yield session


# scope="function": the session is closed before the response is sent, never after.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def database_is_ready() -> bool:
    async def ping() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), READY_CHECK_TIMEOUT_SECONDS)
    except Exception:  # any failure to answer means "not ready", whatever the driver raised
        return False
    return True


def escape_like(text: str) -> str:
    """Makes `%`, `_` and `\\` in user input match themselves in a LIKE pattern (with escape="\\")."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def insert_for(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports ON CONFLICT on the session's backend (PostgreSQL or SQLite)."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def capped_count(query: Select, *, cap: int = COUNT_CAP) -> Select:
    """`SELECT count(*)` over at most `cap + 1` of the rows `query` returns: see `count_up_to`."""
    return select(func.count()).select_from(query.order_by(None).limit(cap + 1).subquery())


def capped_total(counted: int, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """The total to show for what `capped_count` counted, and whether it is exact."""
    return min(counted, cap), counted <= cap


async def count_up_to(session: AsyncSession, query: Select, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """The number of rows `query` returns, and whether that is exact: counting stops after `cap`.

    A count(*) over a large filtered set costs far more than the page it comes with; past the cap
    the answer is `(cap, False)` and the client knows there are more.
    """
    return capped_total(await session.scalar(capped_count(query, cap=cap)) or 0, cap=cap)


def include_object_for(dialect_name: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a backend: leaves out what is created only on other backends.

    An index declared with `.ddl_if(dialect="postgresql")` (the GIN index on sample values) does not
    exist on SQLite; without this, autogenerate there would keep proposing to add it.
    """

    def include_object(obj: Any, _name: str | None, _type: str, _reflected: bool, _compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)  # set by SQLAlchemy's public HasConditionalDDL.ddl_if()
        return condition is None or condition.dialect in (None, dialect_name)

    return include_object
