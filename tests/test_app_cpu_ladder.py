"""`python -m benchmarks.app_cpu --ladder`: every rung measured in order, and its two twins of
`/auth/me` answering exactly as `/auth/me` does (else the rungs would compare different work)."""

import re

import httpx
import pytest
from fastapi import Depends
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import update

from benchmarks import app_cpu, floor_app
from src.app import create_app
from src.auth.models import AuthSession
from src.constants import API_PREFIX
from src.database import SessionFactory
from src.dependencies import check_query_string
from tests.conftest import DEFAULT_PASSWORD, TEST_DATABASE_URL, assert_problem, bearer

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"), reason="the ladder reads through psycopg"
)
ME = f"{API_PREFIX}/auth/me"
TWINS = (f"{API_PREFIX}/bench{app_cpu.TWIN_ORM}", f"{API_PREFIX}/bench{app_cpu.TWIN_RAW}")


async def test_the_twins_answer_as_auth_me_does_and_refuse_a_revoked_session(make_user, login):
    user = await make_user(full_name="Ada Twin")
    tokens = await login(user)
    app = create_app()
    async with AsyncConnectionPool(
        floor_app._conninfo(TEST_DATABASE_URL), min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        app.include_router(
            app_cpu.twin_routes(pool), prefix=API_PREFIX, dependencies=[Depends(check_query_string)]
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            answers = [await client.get(path, headers=bearer(tokens)) for path in (ME, *TWINS)]
            assert [answer.status_code for answer in answers] == [200, 200, 200]
            assert answers[0].json()["full_name"] == "Ada Twin"
            assert answers[1].json() == answers[0].json() == answers[2].json()

            async with SessionFactory() as session:
                await session.execute(update(AuthSession).values(revoked_at=AuthSession.created_at))
                await session.commit()
            for path in (ME, *TWINS):
                assert_problem(await client.get(path, headers=bearer(tokens)), 401, "SESSION_REVOKED")


async def test_the_ladder_measures_every_rung_in_order_against_the_floor(make_user, monkeypatch, capsys):
    user = await make_user()
    monkeypatch.setattr(app_cpu, "BENCH_EMAIL", user.email)
    monkeypatch.setattr(app_cpu, "BENCH_PASSWORD", DEFAULT_PASSWORD)
    monkeypatch.setattr(app_cpu, "WARM_UP_REQUESTS", 2)

    rungs = await app_cpu.measure_ladder(requests=3, rounds=2)
    app_cpu.print_ladder(rungs)

    assert [rung.key for rung in rungs] == [
        "hello",
        "floor",
        "health",
        "auth_me_401",
        "auth_me",
        "twin_orm_caller",
        "twin_raw_caller",
        "floor_query",
        "sqlalchemy_session",
        "sqlalchemy_caller_read",
    ]
    assert all(len(rung.per_round) == 2 and rung.best > 0 for rung in rungs)
    assert [rung.over_http for rung in rungs] == [True] * 7 + [False] * 3
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["floor"].split()[3] == "1.00"  # the floor against itself
    # A read without HTTP has no ratio to the floor's route: its CPU, then what it is.
    assert re.fullmatch(r"floor_query +[0-9.]+ +[0-9.]+ +the floor's query alone", lines["floor_query"])
