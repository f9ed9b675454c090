"""The floor of the stack benchmark: a bare FastAPI route doing the API's session check as one raw
pooled psycopg query, nothing of Studybase's.

What any authenticated one-query route must do at least, as `GET /api/v1/auth/me` does it: read the
bearer token, check it with python-jose (HS256, the API's SECRET_KEY; like the API, a worker
remembers the claims of tokens it has verified and compares `exp` on every request), then one
SELECT of the token's session joined to its user, live (not revoked, not expired) and active, on a
connection of a psycopg_pool pool as large as the API's (DATABASE_POOL_SIZE per worker). No
middleware, ORM or dependencies. Served by gunicorn with the committed `gunicorn.conf.py` behind
the same nginx configuration as the API and the hello ceiling (`benchmarks/hello_app.py`).
"""

import functools
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from jose import JWTError, jwt
from psycopg_pool import AsyncConnectionPool

FLOOR_PATH = "/api/v1/floor"
JWT_ALGORITHM = "HS256"  # the API's only algorithm (src/auth/constants.py)
VERIFIED_TOKENS_CACHED = 4096  # as src/auth/jwt.py
DEFAULT_POOL_SIZE = 10  # the API's DATABASE_POOL_SIZE default

# The caller's session and user in one round trip; the API reads the same two rows by the same
# two keys (session id and user id from the token) and checks the same three conditions.
SESSION_CHECK = """
SELECT users.id, users.email, users.full_name, users.role
FROM auth_sessions JOIN users ON users.id = auth_sessions.user_id
WHERE auth_sessions.id = %s AND users.id = %s
  AND auth_sessions.revoked_at IS NULL AND auth_sessions.expires_at > now() AND users.is_active
"""


def _conninfo(database_url: str) -> str:
    """A libpq URL from the API's SQLAlchemy one (postgresql+psycopg://...)."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE))
    pool = AsyncConnectionPool(
        _conninfo(os.environ["DATABASE_URL"]),
        min_size=size,
        max_size=size,
        kwargs={"autocommit": True},  # as the API's reads: no BEGIN/ROLLBACK around the query
        open=False,
    )
    await pool.open(wait=True)
    app.state.pool = pool
    app.state.secret_key = os.environ["SECRET_KEY"]
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)


def _unauthorized() -> HTTPException:
    return HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"})


@functools.lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verified_claims(token: str, key: str) -> tuple[uuid.UUID, uuid.UUID, int]:
    """Session id, user id and expiry of a token whose signature was checked."""
    claims = jwt.decode(token, key, algorithms=[JWT_ALGORITHM])
    return uuid.UUID(claims["sid"]), uuid.UUID(claims["sub"]), int(claims["exp"])


@app.get(FLOOR_PATH)
async def floor(request: Request) -> dict[str, str]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized()
    try:
        session_id, user_id, expires_at = _verified_claims(token, request.app.state.secret_key)
    except (JWTError, KeyError, TypeError, ValueError) as exc:
        raise _unauthorized() from exc
    if expires_at < time.time():
        raise _unauthorized()
    async with request.app.state.pool.connection() as connection:
        cursor = await connection.execute(SESSION_CHECK, (session_id, user_id))
        row = await cursor.fetchone()
    if row is None:
        raise _unauthorized()
    return {"id": str(row[0]), "email": row[1], "full_name": row[2], "role": row[3]}
