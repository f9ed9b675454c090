"""Liveness never touches the database; readiness reports whether the database answers."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import src.database

HEALTH = "/api/v1/health"
READY = "/api/v1/health/ready"


@pytest.fixture
async def broken_database(tmp_path, monkeypatch) -> AsyncIterator[AsyncEngine]:
    """The app's engine points at an SQLite file in a folder that does not exist, so no connection opens."""
    unreachable = (tmp_path / "missing" / "dir" / "x.db").as_posix()
    broken = create_async_engine(f"sqlite+aiosqlite:///{unreachable}")
    monkeypatch.setattr(src.database, "engine", broken)
    yield broken
    await broken.dispose()


class HangingEngine:
    """An engine whose connections never open, like a database behind a dropped firewall rule."""

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield


async def test_broken_engine_really_cannot_connect(broken_database):
    assert await src.database.database_is_ready() is False


async def test_health_is_ok(client):
    response = await client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_health_is_ok_when_the_database_is_broken(client, broken_database):
    response = await client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_ok_when_the_database_answers(client):
    response = await client.get(READY)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_503_problem_when_the_database_is_broken(client, broken_database):
    response = await client.get(READY)

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "DATABASE_UNAVAILABLE"
    assert body["status"] == 503
    assert body["request_id"] == response.headers["x-request-id"]


async def test_ready_503_does_not_reveal_the_driver_error(client, broken_database, tmp_path):
    response = await client.get(READY)

    assert response.status_code == 503
    assert "unable to open" not in response.text
    assert tmp_path.name not in response.text


async def test_ready_gives_up_on_a_database_that_never_answers(client, monkeypatch):
    monkeypatch.setattr(src.database, "engine", HangingEngine())
    monkeypatch.setattr(src.database, "READY_CHECK_TIMEOUT_SECONDS", 0.05)

    response = await client.get(READY)

    assert response.status_code == 503
    assert response.json()["code"] == "DATABASE_UNAVAILABLE"


class PolitelyCancellingEngine:
    """Like psycopg on a black-holed connection: interrupted once, it spends seconds trying to cancel
    the query on the server; interrupted again, it gives up and closes the connection."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            try:
                await asyncio.sleep(10)  # the polite cancel of a query the server never sees
            finally:
                self.closed.set()
            raise
        yield


async def test_ready_answers_within_its_bound_however_long_the_driver_takes_to_give_up(client, monkeypatch):
    engine = PolitelyCancellingEngine()
    monkeypatch.setattr(src.database, "engine", engine)
    monkeypatch.setattr(src.database, "READY_CHECK_TIMEOUT_SECONDS", 0.2)
    started = asyncio.get_running_loop().time()

    response = await client.get(READY)

    assert response.status_code == 503
    assert asyncio.get_running_loop().time() - started < 0.7
    await asyncio.wait_for(engine.closed.wait(), timeout=1)  # abandoned, and closed soon after


async def test_health_routes_answer_head_for_probes(client):
    for path in ("/api/v1/health", "/api/v1/health/ready"):
        response = await client.head(path)
        assert response.status_code == 200, path
