"""Logout, logout-all and the list of a user's sessions."""

import uuid

from tests.conftest import bearer

ME = "/api/v1/auth/me"
SESSIONS = "/api/v1/auth/sessions"
REFRESH = "/api/v1/auth/refresh"


async def test_logout_kills_access_and_refresh_token_at_once(client, make_user, login):
    tokens = await login(await make_user())

    response = await client.post("/api/v1/auth/logout", headers=bearer(tokens))

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(ME, headers=bearer(tokens))).status_code == 401
    assert (await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})).status_code == 401


async def test_logout_leaves_other_sessions_alone(client, make_user, login):
    user = await make_user()
    laptop, phone = await login(user), await login(user)

    await client.post("/api/v1/auth/logout", headers=bearer(laptop))

    assert (await client.get(ME, headers=bearer(phone))).status_code == 200


async def test_logout_all_ends_every_session_of_the_user_only(client, make_user, login):
    user, other = await make_user(), await make_user()
    laptop, phone, others = await login(user), await login(user), await login(other)

    response = await client.post("/api/v1/auth/logout-all", headers=bearer(laptop))

    assert response.status_code == 204
    for tokens in (laptop, phone):
        assert (await client.get(ME, headers=bearer(tokens))).status_code == 401
        assert (
            await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401
    assert (await client.get(ME, headers=bearer(others))).status_code == 200


async def test_logout_needs_a_token(client):
    response = await client.post("/api/v1/auth/logout")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_sessions_lists_active_sessions_with_their_client(client, make_user, login):
    user = await make_user()
    laptop = await login(user, **{"User-Agent": "laptop-browser"})
    await login(user, **{"User-Agent": "phone-app"})
    ended = await login(user)
    await client.post("/api/v1/auth/logout", headers=bearer(ended))

    response = await client.get(SESSIONS, headers=bearer(laptop))

    assert response.status_code == 200
    sessions = response.json()
    assert {s["user_agent"] for s in sessions} == {"laptop-browser", "phone-app"}
    assert all(s["ip_address"] == "203.0.113.7" for s in sessions)
    assert all({"id", "created_at", "last_used_at", "expires_at", "current"} <= set(s) for s in sessions)
    current = [s for s in sessions if s["current"]]
    assert [s["user_agent"] for s in current] == ["laptop-browser"]


async def test_sessions_shows_only_your_own(client, make_user, login):
    user, other = await make_user(), await make_user()
    mine = await login(user)
    await login(other)

    sessions = (await client.get(SESSIONS, headers=bearer(mine))).json()

    assert len(sessions) == 1


async def test_delete_session_revokes_that_session(client, make_user, login):
    user = await make_user()
    laptop, phone = await login(user), await login(user)
    sessions = (await client.get(SESSIONS, headers=bearer(laptop))).json()
    phone_id = next(s["id"] for s in sessions if not s["current"])

    response = await client.delete(f"{SESSIONS}/{phone_id}", headers=bearer(laptop))

    assert response.status_code == 204
    assert (await client.get(ME, headers=bearer(phone))).status_code == 401
    assert (await client.post(REFRESH, json={"refresh_token": phone["refresh_token"]})).status_code == 401
    assert (await client.get(ME, headers=bearer(laptop))).status_code == 200


async def test_delete_someone_elses_session_is_404_and_changes_nothing(client, make_user, login):
    user, victim = await make_user(), await make_user()
    mine, theirs = await login(user), await login(victim)
    victim_session = (await client.get(SESSIONS, headers=bearer(theirs))).json()[0]["id"]

    response = await client.delete(f"{SESSIONS}/{victim_session}", headers=bearer(mine))

    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"
    assert (await client.get(ME, headers=bearer(theirs))).status_code == 200


async def test_delete_unknown_or_ended_session_is_404(client, make_user, login):
    user = await make_user()
    mine = await login(user)
    await login(user)
    ended_id = next(
        s["id"] for s in (await client.get(SESSIONS, headers=bearer(mine))).json() if not s["current"]
    )
    await client.delete(f"{SESSIONS}/{ended_id}", headers=bearer(mine))

    again = await client.delete(f"{SESSIONS}/{ended_id}", headers=bearer(mine))
    unknown = await client.delete(f"{SESSIONS}/{uuid.uuid4()}", headers=bearer(mine))
    malformed = await client.delete(f"{SESSIONS}/not-a-uuid", headers=bearer(mine))

    assert again.status_code == unknown.status_code == 404
    assert malformed.status_code == 422


async def test_refresh_updates_last_used_at(client, make_user, login):
    tokens = await login(await make_user())
    before = (await client.get(SESSIONS, headers=bearer(tokens))).json()[0]["last_used_at"]

    fresh = (await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})).json()

    after = (await client.get(SESSIONS, headers=bearer(fresh))).json()[0]["last_used_at"]
    assert after > before
