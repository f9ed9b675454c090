"""The database layer: UTC timestamps, SQLite foreign keys, models matching migrations, sessions."""

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, false, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from src import database
from src.auth.constants import Role
from src.auth.models import AuthSession, User
from src.config import settings
from src.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    Base,
    SessionFactory,
    capped_count,
    capped_total,
    count_up_to,
    engine,
    get_session,
    include_object_for,
    insert_for,
)
from src.models import import_all_models
from tests.conftest import TEST_DATABASE_URL

PROJECT_DIR = Path(__file__).resolve().parent.parent
POOL_SIZE = settings.DATABASE_POOL_SIZE
only_on_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"), reason="the PostgreSQL engine's connection pool"
)
import_all_models()
ALL_TABLES = set(Base.metadata.tables)


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.attributes["database_url"] = url
    return config


def sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        connection.close()
    return {name for (name,) in rows} - {"sqlite_sequence"}


def alembic_revisions(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [revision for (revision,) in connection.execute("SELECT version_num FROM alembic_version")]
    finally:
        connection.close()


async def reload_user(user_id: uuid.UUID) -> User:
    async with SessionFactory() as session:
        return await session.scalar(select(User).where(User.id == user_id))


# UTCDateTime


async def test_timestamps_come_back_as_aware_utc(make_user):
    user = await make_user()

    stored = await reload_user(user.id)

    assert stored.created_at.tzinfo is UTC
    assert stored.created_at.utcoffset() == timedelta(0)


async def test_timestamp_in_another_zone_is_stored_as_the_same_instant_in_utc(db, make_user):
    user = await make_user()
    in_berlin_summer = datetime(2024, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    stored = await db.get(User, user.id)
    stored.created_at = in_berlin_summer
    await db.commit()

    reloaded = await reload_user(user.id)

    assert reloaded.created_at == in_berlin_summer
    assert reloaded.created_at.tzinfo is UTC
    assert reloaded.created_at.hour == 12
    assert reloaded.created_at.microsecond == 123456


async def test_timestamps_order_by_instant_not_by_local_clock(db, make_user):
    earlier = await make_user()
    later = await make_user()
    plus_five = timezone(timedelta(hours=5))
    (await db.get(User, earlier.id)).created_at = datetime(2024, 1, 1, 14, 0, tzinfo=plus_five)
    (await db.get(User, later.id)).created_at = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    await db.commit()

    ordered = await db.scalars(select(User.id).order_by(User.created_at))

    assert list(ordered) == [earlier.id, later.id]


async def test_naive_datetime_is_refused(db, make_user):
    user = await make_user()
    stored = await db.get(User, user.id)
    stored.created_at = datetime(2024, 7, 1, 14, 30)  # naive on purpose

    with pytest.raises(StatementError, match="naive"):
        await db.commit()
    await db.rollback()

    assert (await reload_user(user.id)).created_at == user.created_at


# SQLite connections


@pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("sqlite"), reason="a PRAGMA of SQLite connections; tests run elsewhere"
)
async def test_sqlite_connections_enforce_foreign_keys():
    async with engine.connect() as connection:
        enabled = await connection.scalar(text("PRAGMA foreign_keys"))

    assert enabled == 1


@pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("sqlite"), reason="a PRAGMA of SQLite connections; tests run elsewhere"
)
async def test_sqlite_connections_wait_for_a_busy_database_instead_of_failing():
    async with engine.connect() as connection:
        timeout_ms = await connection.scalar(text("PRAGMA busy_timeout"))

    assert timeout_ms == SQLITE_BUSY_TIMEOUT_MS


async def test_row_pointing_at_a_missing_parent_is_refused(db):
    now = datetime.now(UTC)
    db.add(AuthSession(user_id=uuid.uuid4(), expires_at=now + timedelta(days=1)))

    with pytest.raises(IntegrityError):
        await db.commit()
    await db.rollback()


async def test_deleting_a_user_cascades_to_their_sessions(db, make_user):
    user = await make_user()
    db.add(AuthSession(user_id=user.id, expires_at=datetime.now(UTC) + timedelta(days=1)))
    await db.commit()

    await db.execute(User.__table__.delete().where(User.id == user.id))
    await db.commit()

    assert await db.scalar(select(AuthSession)) is None


# Models and migrations


async def test_models_and_migrations_agree():
    def differences(sync_connection) -> list:
        options = {"compare_type": True, "include_object": include_object_for(sync_connection.dialect.name)}
        context = MigrationContext.configure(connection=sync_connection, opts=options)
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        diff = await connection.run_sync(differences)

    assert diff == []


def test_migrations_upgrade_on_a_fresh_sqlite_file(tmp_path):
    path = tmp_path / "fresh.db"

    command.upgrade(alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}"), "head")

    assert sqlite_tables(path) == ALL_TABLES | {"alembic_version"}
    assert len(alembic_revisions(path)) == 1


def test_migrations_downgrade_to_base_leaves_no_tables(tmp_path):
    path = tmp_path / "roundtrip.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "head")

    command.downgrade(config, "base")

    assert sqlite_tables(path) == {"alembic_version"}
    assert alembic_revisions(path) == []


def test_migrations_upgrade_again_after_downgrade(tmp_path):
    path = tmp_path / "roundtrip.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "head")
    command.downgrade(config, "base")

    command.upgrade(config, "head")

    assert sqlite_tables(path) == ALL_TABLES | {"alembic_version"}
    assert len(alembic_revisions(path)) == 1


# Sessions and inserts


def request_with(method: str) -> Request:
    return Request({"type": "http", "method": method, "path": "/", "headers": []})


async def connection_in_transaction(session: AsyncSession) -> bool:
    """Whether `session`'s connection is in a transaction after a statement that would open one.

    The statement changes nothing but is an UPDATE: SQLite's driver begins transactions only for
    writes, PostgreSQL's for any statement.
    """
    await session.execute(update(User).where(false()).values(full_name=User.full_name))
    connection = await (await session.connection()).get_raw_connection()
    driver_connection = connection.driver_connection
    if engine.dialect.name == "postgresql":
        return driver_connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    return driver_connection.in_transaction


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_get_session_yields_a_working_session(method):
    sessions = get_session(request_with(method))
    session = await anext(sessions)
    try:
        assert isinstance(session, AsyncSession)
        assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await sessions.aclose()


@pytest.mark.parametrize(("method", "in_transaction"), [("GET", False), ("HEAD", False), ("POST", True)])
async def test_only_a_writing_request_opens_a_transaction(method, in_transaction):
    """A read's statements run on their own: no BEGIN and ROLLBACK round trips around them."""
    sessions = get_session(request_with(method))
    session = await anext(sessions)
    try:
        assert await connection_in_transaction(session) is in_transaction
    finally:
        await sessions.aclose()


async def driver_connection_of(session: AsyncSession) -> object:
    return (await (await session.connection()).get_raw_connection()).driver_connection


async def test_a_writing_request_on_a_connection_a_read_used_is_in_a_transaction_again():
    """Both kinds of session share the pool: a read must not hand its connection back in autocommit."""
    reads = get_session(request_with("GET"))
    read = await anext(reads)
    try:
        assert await connection_in_transaction(read) is False
        used_by_the_read = await driver_connection_of(read)
    finally:
        await reads.aclose()

    reused = False
    for _ in range(2 * POOL_SIZE):  # the pool hands its idle connections out in turn
        writes = get_session(request_with("POST"))
        write = await anext(writes)
        try:
            assert await connection_in_transaction(write) is True
            reused = reused or await driver_connection_of(write) is used_by_the_read
        finally:
            await writes.aclose()
        if reused:
            break
    assert reused


async def test_get_session_rolls_back_what_was_not_committed(db):
    sessions = get_session(request_with("POST"))
    session = await anext(sessions)
    session.add(User(email="ghost@example.org", full_name="Ghost", password_hash="x", role="viewer"))
    await session.flush()

    await sessions.aclose()

    assert await db.scalar(select(User).where(User.email == "ghost@example.org")) is None


async def test_insert_for_returns_the_insert_of_the_backend_in_use(db):
    statement = insert_for(db, User.__table__)

    expected = postgresql.Insert if engine.dialect.name == "postgresql" else sqlite.Insert
    assert isinstance(statement, expected)


async def test_insert_for_supports_on_conflict_do_nothing(db, make_user):
    user = await make_user(email="taken@example.org")
    duplicate = {
        "id": uuid.uuid4(),
        "email": "taken@example.org",
        "full_name": "Someone Else",
        "password_hash": "x",
        "role": "viewer",
        "is_active": True,
        "created_at": datetime.now(UTC),
        "updated_at": datetime.now(UTC),
    }

    await db.execute(insert_for(db, User.__table__).values(duplicate).on_conflict_do_nothing())
    await db.commit()

    users = (await db.scalars(select(User))).all()
    assert [(stored.id, stored.full_name) for stored in users] == [(user.id, "Test User")]


async def test_app_shutdown_releases_pooled_connections_and_the_engine_recovers(app):
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    assert database.engine.pool.checkedin() >= 1

    async with app.router.lifespan_context(app):
        pass

    assert database.engine.pool.checkedin() == 0
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1


# Capped counts


@pytest.mark.parametrize(
    ("cap", "expected"), [(5, (3, True)), (3, (3, True)), (2, (2, False)), (1, (1, False))]
)
async def test_count_up_to_counts_exactly_up_to_the_cap(db, make_user, cap, expected):
    for _ in range(3):
        await make_user()

    assert await count_up_to(db, select(User), cap=cap) == expected


@pytest.mark.parametrize(
    ("cap", "expected"), [(5, (3, True)), (3, (3, True)), (2, (2, False)), (1, (1, False))]
)
async def test_a_capped_count_can_ride_along_with_the_rows(db, make_user, cap, expected):
    for _ in range(3):
        await make_user()
    query = select(User)

    rows = (await db.execute(select(User.id, capped_count(query, cap=cap).scalar_subquery()).limit(1))).all()

    assert capped_total(rows[0][-1], cap=cap) == expected


async def test_count_up_to_ignores_the_order_and_keeps_the_filter(db, make_user):
    await make_user(role=Role.VIEWER)
    await make_user(role=Role.VIEWER)
    await make_user(role=Role.ADMIN)

    query = select(User).where(User.role == Role.VIEWER).order_by(User.email)

    assert await count_up_to(db, query) == (2, True)


@only_on_postgresql
async def test_connections_the_server_dropped_cost_one_503_then_the_pool_is_fresh(
    client, make_user, auth_headers
):
    """No pre-ping on checkout: a dead pooled connection fails one request cleanly, not every request."""
    headers = await auth_headers(await make_user())
    concurrent = [client.get("/api/v1/auth/me", headers=headers) for _ in range(5)]
    assert {response.status_code for response in await asyncio.gather(*concurrent)} == {200}
    admin_url = TEST_DATABASE_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1

    statuses = [(await client.get("/api/v1/auth/me", headers=headers)).status_code for _ in range(4)]

    assert statuses.count(503) <= 1
    assert statuses[-3:] == [200, 200, 200]


@only_on_postgresql
async def test_requests_beyond_the_pool_wait_for_a_connection_instead_of_opening_new_ones(
    client, make_user, auth_headers
):
    """Connections opened past the pool and closed again right after meant a new server process
    per request under load: three waves of three times the pool in requests open no more than the pool."""
    headers = await auth_headers(await make_user())
    opened = []
    listener = lambda *_: opened.append(1)  # noqa: E731
    event.listen(engine.sync_engine, "connect", listener)
    try:
        for _ in range(3):
            wave = [
                client.get("/api/v1/auth/me", headers=headers) for _ in range(3 * settings.DATABASE_POOL_SIZE)
            ]
            assert {response.status_code for response in await asyncio.gather(*wave)} == {200}
    finally:
        event.remove(engine.sync_engine, "connect", listener)

    assert len(opened) <= POOL_SIZE


# Named locks: PostgreSQL advisory locks (every worker and host), in-process on SQLite.

LOCK = database.NamedLock.of(99, b"a test lock")


async def test_a_named_lock_held_exclusively_refuses_a_second_holder_until_released():
    async with SessionFactory() as first, SessionFactory() as second:
        async with database.named_lock(first, LOCK):
            with pytest.raises(database.LockBusy):
                async with database.named_lock(second, LOCK, wait=False):
                    pass
            started = asyncio.get_running_loop().time()
            with pytest.raises(database.LockBusy):
                async with database.named_lock(second, LOCK, shared=True):
                    pass
            waited = asyncio.get_running_loop().time() - started
            await first.rollback()  # PostgreSQL: the lock is the transaction's
        assert (
            settings.DATABASE_LOCK_TIMEOUT_SECONDS - 0.2 < waited < settings.DATABASE_LOCK_TIMEOUT_SECONDS + 1
        )
        await second.rollback()
        async with database.named_lock(second, LOCK, wait=False):
            pass


async def test_shared_holders_of_a_named_lock_do_not_wait_for_each_other():
    async with (
        SessionFactory() as first,
        SessionFactory() as second,
        SessionFactory() as third,
        database.named_lock(first, LOCK, shared=True),
        database.named_lock(second, LOCK, shared=True, wait=False),
    ):
        with pytest.raises(database.LockBusy):
            async with database.named_lock(third, LOCK, wait=False):
                pass


async def test_a_waiting_holder_gets_the_named_lock_once_it_is_released():
    async with SessionFactory() as first, SessionFactory() as second:
        async with database.named_lock(first, LOCK):

            async def wait_for_it() -> None:
                async with database.named_lock(second, LOCK):
                    pass

            waiting = asyncio.create_task(wait_for_it())
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await first.rollback()
        await asyncio.wait_for(waiting, timeout=settings.DATABASE_LOCK_TIMEOUT_SECONDS)
        await second.rollback()


def test_named_locks_of_different_names_differ_and_fit_postgresqls_int4():
    locks = {database.NamedLock.of(1, name.encode()) for name in ("a", "b", "c", "study 1", "study 2")}
    assert len(locks) == 5
    assert all(-(2**31) <= lock.key < 2**31 for lock in locks)
