"""Refresh tokens: opaque, stored only as hashes, rotated on every use, reuse ends the session."""

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from src.auth import utils
from src.auth.models import AuthSession, RefreshToken
from src.database import utcnow
from tests.conftest import bearer

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/auth/me"


async def test_refresh_returns_a_new_working_pair(client, make_user, login):
    tokens = await login(await make_user())

    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})

    assert response.status_code == 200
    fresh = response.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["access_token"] != tokens["access_token"]
    assert (await client.get(ME, headers=bearer(fresh))).status_code == 200
    again = await client.post(REFRESH, json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(client, make_user, login, db):
    tokens = await login(await make_user())

    stored = list(await db.scalars(select(RefreshToken.token_hash)))

    assert stored == [utils.hash_secret_token(tokens["refresh_token"])]
    assert tokens["refresh_token"] not in stored


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(client, make_user, login, db):
    tokens = await login(await make_user())
    rotated = (await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})).json()

    reuse = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})

    assert reuse.status_code == 401
    assert reuse.json()["code"] == "REFRESH_TOKEN_REUSED"
    assert reuse.headers["www-authenticate"] == "Bearer"
    assert (await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})).status_code == 401
    me = await client.get(ME, headers=bearer(rotated))
    assert me.status_code == 401
    assert me.json()["code"] == "SESSION_REVOKED"
    assert (await db.scalar(select(AuthSession.revoked_at))) is not None


async def test_reuse_ends_only_that_session(client, make_user, login):
    user = await make_user()
    stolen, other = await login(user), await login(user)
    await client.post(REFRESH, json={"refresh_token": stolen["refresh_token"]})

    await client.post(REFRESH, json={"refresh_token": stolen["refresh_token"]})

    assert (await client.get(ME, headers=bearer(other))).status_code == 200


async def test_concurrent_uses_of_one_refresh_token_yield_one_pair(client, make_user, login):
    tokens = await login(await make_user())

    responses = await asyncio.gather(
        *(client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]}) for _ in range(3))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) <= 1
    assert set(statuses) <= {200, 401}


async def test_unknown_refresh_token_is_401(client):
    response = await client.post(REFRESH, json={"refresh_token": "not-a-token-we-issued"})

    assert response.status_code == 401
    assert response.json()["code"] == "REFRESH_TOKEN_INVALID"


async def test_an_access_token_is_not_a_refresh_token(client, make_user, login):
    tokens = await login(await make_user())

    response = await client.post(REFRESH, json={"refresh_token": tokens["access_token"]})

    assert response.status_code in (401, 422)


async def test_refresh_after_logout_is_401(client, make_user, login):
    tokens = await login(await make_user())
    await client.post("/api/v1/auth/logout", headers=bearer(tokens))

    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})

    assert response.status_code == 401
    assert response.json()["code"] == "REFRESH_TOKEN_INVALID"


async def test_expired_session_cannot_refresh(client, make_user, login, db):
    tokens = await login(await make_user())
    await db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    await db.commit()

    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})

    assert response.status_code == 401


async def test_refresh_slides_the_session_expiry(client, make_user, login, db):
    tokens = await login(await make_user())
    soon = utcnow() + timedelta(hours=1)
    await db.execute(update(AuthSession).values(expires_at=soon))
    await db.commit()

    await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})

    db.expire_all()
    expires_at = await db.scalar(select(AuthSession.expires_at))
    assert expires_at > utcnow() + timedelta(days=13)


async def test_refresh_requires_a_token(client):
    empty = await client.post(REFRESH, json={"refresh_token": ""})
    missing = await client.post(REFRESH, json={})

    assert empty.status_code == missing.status_code == 422
