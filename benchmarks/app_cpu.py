"""CPU time per request of the API app in this process: no server, no network.

    python -m benchmarks.app_cpu [--path /api/v1/health] [--requests 3000] [--rounds 5] 2>/dev/null
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/x \\
        python -m benchmarks.app_cpu --routes auth_me,study,samples --samples 50000 2>/dev/null

Calls the ASGI app of `create_app()` directly with one GET, again and again (it must answer the same
status every time), and prints the best and the median of the rounds' CPU time per request
(microseconds, this process only: other processes on a shared machine do not count, which makes it
steadier than the stack's req/s under load). Without `--routes`, what it measures is the app's own
cost around a route that needs no database: middleware, routing, dependencies, serialisation and
the access log line (on stderr: send it to /dev/null).

With `--routes`, the stack benchmark's authenticated routes on the PostgreSQL database of
DATABASE_URL (a database of your own: it is migrated, and seeded with `benchmarks/seed.py`'s data
set on first use, `--samples` of them; a later run reuses it), called with a real access token of
the seed's owner. The CPU counted is this process's: our code, SQLAlchemy, psycopg's client side,
not PostgreSQL's work. It also prints the statements each request ran. For a before/after pair,
run it in an export of each commit in turn, alternating, on the same database.

With `--ladder` (PostgreSQL too), what one authenticated one-query route costs, rung by rung, in the
same process and rounds: FastAPI's bare route (the stack's hello), the floor (benchmarks/floor_app.py:
+ the token check and one raw pooled psycopg query), Studybase's app without a database (`/health`:
+ its middleware, routing and access log), `/auth/me` without a token (+ the dependencies up to the
token check and the problem answer), `/auth/me` as it is, and two twins of it registered after every
route (benchmark only): one taking `CurrentUser` as the API does, one reading the caller with the
floor's own raw query; then, without HTTP, the floor's query alone, a SQLAlchemy session opened and
closed, and the caller read through it. Each route's `/floor` is the floor's CPU over its own, which
is what the stack's ratio to the floor tends to (the stack adds nginx's, wrk's and PostgreSQL's share
to both).
"""

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, Any

from starlette.types import Message

WARM_UP_REQUESTS = 300
BENCH_EMAIL = "bench@example.org"
BENCH_PASSWORD = "bench-password-0123"  # noqa: S105 (a throwaway database's)


def route_paths(big_study: str) -> dict[str, str]:
    """The stack benchmark's authenticated endpoints (benchmarks/stack.py), path by key."""
    from benchmarks.stack import endpoints

    return {endpoint.key: endpoint.path for endpoint in endpoints(big_study) if endpoint.authenticated}


def request_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"bench"), (b"user-agent", b"app_cpu"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _per_round(call: Callable[[], Awaitable[object]], requests: int, rounds: int) -> list[float]:
    """CPU µs per call of `call`, each round's, after a warm-up."""
    for _ in range(WARM_UP_REQUESTS):
        await call()
    per_round = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            await call()
        per_round.append((time.process_time() - started) / requests * 1e6)
    return per_round


async def microseconds_per_request(
    app: Any, path: str, requests: int, rounds: int, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[list[float], int]:
    scope = request_scope(path, headers)
    statuses: set[int] = set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def call() -> None:
        await app({**scope, "state": {}}, receive, send)

    per_round = await _per_round(call, requests, rounds)
    if len(statuses) != 1:
        raise SystemExit(f"{path} answered {sorted(statuses)}: not one answer, nothing to measure")
    return per_round, statuses.pop()


def _seeded_big_study(database_url: str, samples: int) -> str:
    """The big study of the seeded data set, seeding it first in an empty database."""
    import psycopg

    from benchmarks import seed
    from main import migrate

    migrate(database_url)
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute(
            "SELECT studies.id FROM studies JOIN users ON users.id = studies.created_by "
            "WHERE users.email = %s ORDER BY studies.sample_count DESC LIMIT 1",
            (BENCH_EMAIL,),
        ).fetchone()
        if row is not None:
            return str(row[0])
        from src.auth.service import hash_password
        from src.database import run_async

        connection.execute(
            """INSERT INTO users (id, email, full_name, password_hash, role, is_active, email_verified_at,
                                  created_at, updated_at)
               VALUES (gen_random_uuid(), %s, 'Bench', %s, 'researcher', true, now(), now(), now())""",
            (BENCH_EMAIL, run_async(hash_password(BENCH_PASSWORD))),
        )
    seeded = seed.seed(database_url, owner_email=BENCH_EMAIL, samples=samples)
    print(f"seeded {seeded.samples:,} samples in {seeded.seconds:.1f} s", flush=True)
    return str(seeded.big_study_id)


class StatementCounter:
    """Counts the statements the engine runs (SQLAlchemy's before_cursor_execute)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


FLOOR_KEY = "floor"


async def measure_floor(bearer: list[tuple[bytes, bytes]], requests: int, rounds: int) -> None:
    """The stack benchmark's floor (benchmarks/floor_app.py) in this process, with the same token:
    what a one-query authenticated route costs at least, beside the routes of the same run."""
    from benchmarks import floor_app
    from src.config import settings

    os.environ.setdefault("SECRET_KEY", settings.SECRET_KEY.get_secret_value())
    async with floor_app.lifespan(floor_app.app):
        per_round, status = await microseconds_per_request(
            floor_app.app, floor_app.FLOOR_PATH, requests, rounds, bearer
        )
    print(
        f"{FLOOR_KEY:18} {status}  {min(per_round):8.1f} µs best  {statistics.median(per_round):8.1f} median"
        "  1.0 statements (raw psycopg)",
        flush=True,
    )


async def measure_routes(keys: list[str], big_study: str, requests: int, rounds: int) -> None:
    from src.app import create_app
    from src.database import engine

    app = create_app()
    async with app.router.lifespan_context(app):
        bearer = [(b"authorization", f"Bearer {await _signed_in_token(app)}".encode())]
        counter = StatementCounter(engine)
        paths = route_paths(big_study)
        for key in keys:
            if key == FLOOR_KEY:
                await measure_floor(bearer, requests, rounds)
                continue
            path = paths[key]
            before = counter.count
            per_round, status = await microseconds_per_request(app, path, requests, rounds, bearer)
            statements = (counter.count - before) / (WARM_UP_REQUESTS + requests * rounds)
            best, median = min(per_round), statistics.median(per_round)
            print(
                f"{key:18} {status}  {best:8.1f} µs best  {median:8.1f} median  {statements:.1f} statements",
                flush=True,
            )


# The ladder: the rungs in the order they add to each other.


@dataclass(frozen=True, slots=True)
class Rung:
    key: str
    adds: str
    per_round: list[float]
    over_http: bool = True

    @property
    def best(self) -> float:
        return min(self.per_round)


def twin_routes(pool: Any) -> Any:
    """Two copies of `/auth/me` for the ladder, alike but for the caller read (benchmark only): `me-orm`
    takes `CurrentUser` (the SQLAlchemy session and ORM read, as the API does), `me-raw` the same
    token check (the same dependency) then the floor's raw query on `pool`, with the columns UserRead
    shows, as a plain object. Both sit after every API route, so they pay the same routing."""
    from fastapi import APIRouter, Depends, Request

    from src.auth.dependencies import AccessClaimsOf, CurrentUser
    from src.auth.exceptions import SessionRevoked
    from src.auth.schemas import UserRead

    async def raw_current_user(request: Request, claims: AccessClaimsOf) -> SimpleNamespace:
        async with pool.connection() as connection:
            cursor = await connection.execute(RAW_CALLER, (claims.session_id, claims.user_id))
            row = await cursor.fetchone()
        if row is None:
            raise SessionRevoked
        request.state.user_id = str(row[0])  # for the access log line, as remember_caller does
        return SimpleNamespace(**dict(zip(RAW_CALLER_COLUMNS, row, strict=True)))

    router = APIRouter(prefix="/bench")

    @router.get(TWIN_ORM, response_model=UserRead)
    async def me_orm(user: CurrentUser) -> object:
        return user

    @router.get(TWIN_RAW, response_model=UserRead)
    async def me_raw(user: Annotated[SimpleNamespace, Depends(raw_current_user)]) -> object:
        return user

    return router


TWIN_ORM, TWIN_RAW = "/me-orm", "/me-raw"
RAW_CALLER_COLUMNS = ("id", "email", "full_name", "role", "is_active", "created_at", "email_verified_at")
RAW_CALLER = """
SELECT users.id, users.email, users.full_name, users.role, users.is_active, users.created_at,
       users.email_verified_at
FROM auth_sessions JOIN users ON users.id = auth_sessions.user_id
WHERE auth_sessions.id = %s AND users.id = %s
  AND auth_sessions.revoked_at IS NULL AND auth_sessions.expires_at > now() AND users.is_active
"""


async def _http_rung(
    key: str,
    adds: str,
    app: Any,
    path: str,
    expected: int,
    requests: int,
    rounds: int,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Rung:
    per_round, status = await microseconds_per_request(app, path, requests, rounds, headers)
    if status != expected:
        raise SystemExit(f"{key}: {path} answered {status}, not {expected}")
    return Rung(key, adds, per_round)


async def measure_ladder(requests: int, rounds: int) -> list[Rung]:
    """Every rung of the ladder (see the module's docstring), measured in this process."""
    from fastapi import Depends
    from psycopg_pool import AsyncConnectionPool

    from benchmarks import floor_app, hello_app
    from src.app import create_app
    from src.auth import jwt
    from src.auth.service import read_caller
    from src.config import settings
    from src.constants import API_PREFIX
    from src.database import ReadSessionFactory
    from src.dependencies import check_query_string

    os.environ.setdefault("SECRET_KEY", settings.SECRET_KEY.get_secret_value())
    app = create_app()
    async with app.router.lifespan_context(app), floor_app.lifespan(floor_app.app):
        token = await _signed_in_token(app)
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        claims = jwt.decode_access_token(token)
        pool = AsyncConnectionPool(
            floor_app._conninfo(settings.DATABASE_URL), min_size=1, max_size=1, kwargs={"autocommit": True}
        )
        async with pool:
            app.include_router(
                twin_routes(pool), prefix=API_PREFIX, dependencies=[Depends(check_query_string)]
            )

            async def floor_query() -> None:
                async with pool.connection() as connection:
                    cursor = await connection.execute(
                        floor_app.SESSION_CHECK, (claims.session_id, claims.user_id)
                    )
                    await cursor.fetchone()

            async def session_only() -> None:
                async with ReadSessionFactory() as session:
                    await session.connection()

            async def sqlalchemy_caller_read() -> None:
                async with ReadSessionFactory() as session:
                    await read_caller(session, claims=claims)

            me, twins = f"{API_PREFIX}/auth/me", f"{API_PREFIX}/bench"
            routes = [  # key, what it adds, app, path, status, headers
                ("hello", "FastAPI's bare route", hello_app.app, "/api/v1/hello", 200, None),
                (FLOOR_KEY, "+ token check, one raw query", floor_app.app, floor_app.FLOOR_PATH, 200, bearer),
                ("health", "Studybase's app, no database", app, f"{API_PREFIX}/health", 200, None),
                ("auth_me_401", "+ dependencies to the token check", app, me, 401, None),
                ("auth_me", "as it is: SQLAlchemy session and ORM read", app, me, 200, bearer),
                ("twin_orm_caller", "its twin after the routes", app, twins + TWIN_ORM, 200, bearer),
                ("twin_raw_caller", "the twin reading the caller raw", app, twins + TWIN_RAW, 200, bearer),
            ]
            rungs = [await _http_rung(*route[:5], requests, rounds, route[5]) for route in routes]
            reads = [
                ("floor_query", "the floor's query alone", floor_query),
                ("sqlalchemy_session", "a session opened and closed", session_only),
                ("sqlalchemy_caller_read", "the caller read in a session", sqlalchemy_caller_read),
            ]
            for key, adds, call in reads:
                rungs.append(Rung(key, adds, await _per_round(call, requests, rounds), over_http=False))
            return rungs


async def _signed_in_token(app: Any) -> str:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        signed_in = await client.post(
            "/api/v1/auth/token", data={"username": BENCH_EMAIL, "password": BENCH_PASSWORD}
        )
        signed_in.raise_for_status()
    return signed_in.json()["access_token"]


def print_ladder(rungs: list[Rung]) -> None:
    floor = next(rung for rung in rungs if rung.key == FLOOR_KEY)
    print(f"{'rung':24} {'CPU µs best':>11} {'median':>8} {'/floor':>7}  adds")
    for rung in rungs:
        ratio = f"{floor.best / rung.best:7.2f}" if rung.over_http else f"{'':7}"
        print(
            f"{rung.key:24} {rung.best:11.1f} {statistics.median(rung.per_round):8.1f} {ratio}  {rung.adds}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        default="/api/v1/health",
        help="a GET that needs no database (`/api/v1/auth/me`: its 401 without a token, the routing and "
        "dependencies of an authenticated route up to the session check)",
    )
    parser.add_argument(
        "--routes",
        help="comma-separated keys of the stack benchmark's authenticated endpoints (auth_me, study, "
        f"samples, ...), called with a token on DATABASE_URL instead; `{FLOOR_KEY}`: the floor's route "
        "(benchmarks/floor_app.py) with the same token",
    )
    parser.add_argument("--samples", type=int, default=50_000, help="samples to seed (first use only)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--ladder",
        action="store_true",
        help="what one authenticated one-query route costs, rung by rung from FastAPI's bare route to "
        "`/auth/me` (needs a PostgreSQL DATABASE_URL)",
    )
    options = parser.parse_args()
    if (options.ladder or options.routes) and not os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        parser.error("--routes and --ladder need a PostgreSQL DATABASE_URL")
    if options.ladder:
        _seeded_big_study(os.environ["DATABASE_URL"], options.samples)
        from src.database import run_async

        print_ladder(run_async(measure_ladder(options.requests, options.rounds)))
        return
    if options.routes:
        keys = options.routes.split(",")
        unknown = sorted(set(keys) - set(route_paths("{id}")) - {FLOOR_KEY})
        if unknown:
            parser.error(f"unknown routes: {', '.join(unknown)}")
        big_study = _seeded_big_study(os.environ["DATABASE_URL"], options.samples)
        from src.database import run_async

        run_async(measure_routes(keys, big_study, options.requests, options.rounds))
        return
    from src.app import create_app

    per_round, status = asyncio.run(
        microseconds_per_request(create_app(), options.path, options.requests, options.rounds)
    )
    print(
        f"GET {options.path} ({status}): {min(per_round):.1f} µs CPU per request (best of {options.rounds}), "
        f"median {statistics.median(per_round):.1f}"
    )


if __name__ == "__main__":
    main()
