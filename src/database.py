"""Engine, sessions and the declarative base every model inherits from."""

import asyncio
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Select, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from src.config import settings
from src.constants import COUNT_CAP
from src.exceptions import is_lock_wait_failure
from src.logging import database_outage

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
# SQLite lets one writer at a time into the whole database; the others wait this long, then fail
# (503). Longer than a row lock's wait on PostgreSQL: every write of every user queues here, and
# SQLite's busy handler polls rather than serving waiters in order.
SQLITE_BUSY_TIMEOUT_MS = max(5000, round(settings.DATABASE_LOCK_TIMEOUT_SECONDS * 1000))
# Timestamps come back from PostgreSQL in the session's time zone: UTC, whatever the server's default.
POSTGRESQL_SESSION_OPTIONS = "-c timezone=UTC"
# What a request may wait for a lock and spend on a statement: see DATABASE_LOCK_TIMEOUT_SECONDS.
# And the server's side of a client that vanished mid-transaction (a network black hole): the
# transaction is rolled back once idle this long, instead of holding its locks for ever.
POSTGRESQL_REQUEST_OPTIONS = (
    f"-c lock_timeout={round(settings.DATABASE_LOCK_TIMEOUT_SECONDS * 1000)}"
    f" -c statement_timeout={round(settings.DATABASE_STATEMENT_TIMEOUT_SECONDS * 1000)}"
    f" -c idle_in_transaction_session_timeout={round(settings.REQUEST_TIMEOUT_SECONDS * 2000)}"
)
# A database that stops answering without closing its connections (packets dropped) is noticed by
# the client's own TCP: data unacknowledged for TCP_USER_TIMEOUT_MS fails the connection, and an
# idle one is probed after KEEPALIVE_IDLE_SECONDS (then every INTERVAL, COUNT times). The failed
# connection is discarded and the pool opens a new one; nothing waits for the kernel's 15 minutes.
TCP_USER_TIMEOUT_MS = 5000
KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, KEEPALIVE_COUNT = 5, 2, 3
POSTGRESQL_TCP_ARGS = {
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
    "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
    "keepalives_count": KEEPALIVE_COUNT,
    "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
}


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


def create_engine_for(url: str, *, request_timeouts: bool = True) -> AsyncEngine:
    """The engine for `url`; `request_timeouts=False` (migrations) lifts the lock and statement
    timeouts that bound every request's waits on PostgreSQL."""
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
            **POSTGRESQL_TCP_ARGS,
            "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            "options": POSTGRESQL_SESSION_OPTIONS
            + (f" {POSTGRESQL_REQUEST_OPTIONS}" if request_timeouts else ""),
        },
    )


engine = create_engine_for(settings.DATABASE_URL)


@event.listens_for(engine.sync_engine, "checkin")
def _note_a_database_that_answered(dbapi_connection: Any, _record: Any) -> None:
    """A connection handed back whole (not invalidated) after use: the database answered again."""
    if database_outage.active and dbapi_connection is not None:
        database_outage.database_answered()


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


async def database_is_ready(*, within: float | None = None) -> bool:
    """Whether the database answers a trivial query within `within` seconds. A check that has not
    answered by then is abandoned, not awaited: cancelled twice, so that the driver closes its
    connection at once instead of spending up to ten more seconds cancelling the query politely
    with a server that may be unreachable."""

    async def ping() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    check = asyncio.ensure_future(ping())
    done, _ = await asyncio.wait({check}, timeout=within or READY_CHECK_TIMEOUT_SECONDS)
    if not done:
        _abandon(check)
        return False
    return check.exception() is None  # any failure to answer means "not ready", whatever it was


_ABANDONED: set[asyncio.Task[Any]] = set()


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, task.cancel)  # the second interruption closes the driver's connection
    _ABANDONED.add(task)  # kept referenced until done, then forgotten
    task.add_done_callback(_ABANDONED.discard)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: no warning


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


# The job queue's tables (procrastinate's, migration 0012): its own schema, not our models'.
JOB_QUEUE_PREFIX = "procrastinate_"


def include_object_for(dialect_name: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a backend: leaves out what is created only on other backends,
    and the job queue's tables.

    An index declared with `.ddl_if(dialect="postgresql")` (the GIN index on sample values) does not
    exist on SQLite; without this, autogenerate there would keep proposing to add it.
    """

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if (
            type_ == "table"
            and reflected
            and compare_to is None
            and (name or "").startswith(JOB_QUEUE_PREFIX)
        ):
            return False
        condition = getattr(obj, "_ddl_if", None)  # set by SQLAlchemy's public HasConditionalDDL.ddl_if()
        return condition is None or condition.dialect in (None, dialect_name)

    return include_object


# ---------------------------------------------------------------------------------------------
# Waiting on locks: bounded, and named locks shared by every worker


class LockBusy(Exception):
    """A named lock is held elsewhere, and was not freed within the wait allowed."""


@dataclass(frozen=True, slots=True)
class NamedLock:
    """A lock on a name rather than a row: PostgreSQL's advisory locks (namespace, key), so every
    worker process and host sees it; within the one process of `python main.py` on SQLite, an
    in-process equivalent."""

    namespace: int
    key: int

    @classmethod
    def of(cls, namespace: int, name: bytes) -> "NamedLock":
        # Advisory keys are two int4: a 32-bit digest of the name (two names sharing one only
        # take turns needlessly).
        return cls(namespace, zlib.crc32(name) - 2**31)


@asynccontextmanager
async def named_lock(
    session: AsyncSession, lock: NamedLock, *, shared: bool = False, wait: bool = True
) -> AsyncIterator[None]:
    """Holds `lock` for the block; LockBusy when it is taken (at once with `wait=False`, else after
    DATABASE_LOCK_TIMEOUT_SECONDS). On PostgreSQL the lock belongs to the session's transaction and
    is released by its commit or rollback, whichever comes first (a crash releases it too)."""
    if session.get_bind().dialect.name == "postgresql":
        await _take_advisory_lock(session, lock, shared=shared, wait=wait)
        yield
        return
    locks = _local_locks()
    await locks.acquire(lock, shared=shared, wait=settings.DATABASE_LOCK_TIMEOUT_SECONDS if wait else 0)
    try:
        yield
    finally:
        locks.release(lock, shared=shared)


async def _take_advisory_lock(session: AsyncSession, lock: NamedLock, *, shared: bool, wait: bool) -> None:
    function = f"pg_{'' if wait else 'try_'}advisory_xact_lock{'_shared' if shared else ''}"
    try:
        taken = await session.scalar(
            text(f"SELECT {function}(:namespace, :key)"), {"namespace": lock.namespace, "key": lock.key}
        )
    except DBAPIError as error:
        if is_lock_wait_failure(error):
            await session.rollback()
            raise LockBusy from None
        raise
    if taken is False:  # pg_try_*: NULL-free boolean; the waiting form returns void (None)
        raise LockBusy


class _LocalLocks:
    """Named locks within one process (SQLite runs in one): shared or exclusive, waited for with a timeout."""

    def __init__(self) -> None:
        self._holders: dict[NamedLock, int] = {}  # > 0: that many shared holders; -1: one exclusive
        self._changed = asyncio.Event()  # set (and replaced) by every release, waking the waiters

    def _free_for(self, lock: NamedLock, *, shared: bool) -> bool:
        holders = self._holders.get(lock, 0)
        return holders >= 0 if shared else holders == 0

    async def acquire(self, lock: NamedLock, *, shared: bool, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self._free_for(lock, shared=shared):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockBusy
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                raise LockBusy from None
        self._holders[lock] = self._holders.get(lock, 0) + 1 if shared else -1

    def release(self, lock: NamedLock, *, shared: bool) -> None:
        remaining = self._holders.get(lock, 0) - 1 if shared else 0
        if remaining > 0:
            self._holders[lock] = remaining
        else:
            self._holders.pop(lock, None)
        self._changed.set()
        self._changed = asyncio.Event()


_LOCAL_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LocalLocks]" = (
    weakref.WeakKeyDictionary()
)


def _local_locks() -> _LocalLocks:
    """One registry per event loop, as an asyncio primitive belongs to the loop that first waits on it."""
    loop = asyncio.get_running_loop()
    locks = _LOCAL_LOCKS.get(loop)
    if locks is None:
        locks = _LOCAL_LOCKS[loop] = _LocalLocks()
    return locks
