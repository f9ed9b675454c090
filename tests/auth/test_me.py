"""The current user's own account: GET/PATCH /me and POST /me/password."""

import pytest
from sqlalchemy import event, select

from src import database
from src.auth.config import auth_settings
from src.auth.constants import Role
from src.auth.models import AuthSession, User
from src.database import SessionFactory
from tests.conftest import DEFAULT_PASSWORD, assert_problem, bearer

ME = "/api/v1/auth/me"
PASSWORD = "/api/v1/auth/me/password"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
NEW_PASSWORD = "a brand new passphrase"
WRONG_PASSWORD = "not the password at all"


async def stored_user(user: User) -> User:
    """The user as the database has it now, read in a session of its own."""
    async with SessionFactory() as session:
        return await session.get(User, user.id)


@pytest.fixture
async def alice(make_user):
    return await make_user(email="alice@example.org", full_name="Alice Liddell", role=Role.VIEWER)


@pytest.fixture
async def alice_tokens(alice, login):
    return await login(alice)


def password_change(current: str = DEFAULT_PASSWORD, new: str = NEW_PASSWORD) -> dict[str, str]:
    return {"current_password": current, "new_password": new}


async def sign_in(client, email: str, password: str):
    return await client.post(TOKEN, data={"username": email, "password": password})


# GET /me


async def test_read_me_returns_the_caller(client, alice, alice_tokens):
    response = await client.get(ME, headers=bearer(alice_tokens))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "email", "full_name", "role", "is_active", "created_at", "email_verified_at"}
    assert body["id"] == str(alice.id)
    assert body["email"] == "alice@example.org"
    assert body["full_name"] == "Alice Liddell"
    assert body["role"] == "viewer"
    assert body["is_active"] is True


async def test_read_me_answers_for_the_tokens_owner_not_another_user(client, make_user, login):
    await make_user(email="first@example.org")
    second = await make_user(email="second@example.org")

    response = await client.get(ME, headers=bearer(await login(second)))

    assert response.json()["id"] == str(second.id)


async def test_read_me_without_a_token_is_401(client):
    response = await client.get(ME)

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"


# PATCH /me


async def test_update_me_changes_full_name_trimmed(client, db, alice, alice_tokens):
    response = await client.patch(ME, json={"full_name": "  Alice Pleasance  "}, headers=bearer(alice_tokens))

    assert response.status_code == 200
    assert response.json()["full_name"] == "Alice Pleasance"
    assert (await db.get(User, alice.id)).full_name == "Alice Pleasance"


@pytest.mark.parametrize("full_name", ["", "   ", "x" * 201])
async def test_update_me_rejects_an_empty_or_overlong_name(client, db, alice, alice_tokens, full_name):
    response = await client.patch(ME, json={"full_name": full_name}, headers=bearer(alice_tokens))

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["body", "full_name"]
    assert (await db.get(User, alice.id)).full_name == "Alice Liddell"


async def test_update_me_requires_full_name(client, alice_tokens):
    response = await client.patch(ME, json={}, headers=bearer(alice_tokens))

    assert_problem(response, 422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "extra",
    [{"role": "admin"}, {"email": "mallory@example.org"}, {"is_active": False}, {"password": "whatever1"}],
)
async def test_update_me_rejects_other_fields_and_changes_nothing(client, db, alice, alice_tokens, extra):
    response = await client.patch(ME, json={"full_name": "Renamed", **extra}, headers=bearer(alice_tokens))

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["body", next(iter(extra))]
    stored = await db.get(User, alice.id)
    assert (stored.full_name, stored.email, stored.role, stored.is_active) == (
        "Alice Liddell",
        "alice@example.org",
        Role.VIEWER,
        True,
    )


async def test_update_me_without_a_token_is_401(client):
    response = await client.patch(ME, json={"full_name": "Nobody"})

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"


# POST /me/password: success


async def test_change_password_answers_204_without_a_body(client, alice_tokens):
    response = await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert response.status_code == 204
    assert response.content == b""


async def test_change_password_lets_the_new_password_sign_in(client, alice, alice_tokens):
    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    response = await sign_in(client, alice.email, NEW_PASSWORD)

    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_change_password_stops_the_old_password_signing_in(client, alice, alice_tokens):
    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    response = await sign_in(client, alice.email, DEFAULT_PASSWORD)

    assert_problem(response, 401, "INVALID_CREDENTIALS")


async def test_change_password_stores_a_new_argon2id_hash(client, alice, alice_tokens):
    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    stored = await stored_user(alice)
    assert stored.password_hash != alice.password_hash
    assert stored.password_hash.startswith("$argon2id$")
    assert NEW_PASSWORD not in stored.password_hash


async def test_change_password_revokes_the_other_sessions_access_tokens(client, alice, login, alice_tokens):
    other_tokens = await login(alice)

    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    response = await client.get(ME, headers=bearer(other_tokens))
    assert_problem(response, 401, "SESSION_REVOKED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_change_password_revokes_the_other_sessions_refresh_tokens(client, alice, login, alice_tokens):
    other_tokens = await login(alice)

    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    response = await client.post(REFRESH, json={"refresh_token": other_tokens["refresh_token"]})
    assert_problem(response, 401, "REFRESH_TOKEN_INVALID")


async def test_change_password_keeps_the_calling_session_working(client, alice, login, alice_tokens):
    await login(alice)

    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert (await client.get(ME, headers=bearer(alice_tokens))).status_code == 200
    refreshed = await client.post(REFRESH, json={"refresh_token": alice_tokens["refresh_token"]})
    assert refreshed.status_code == 200


async def test_change_password_revokes_exactly_the_other_sessions_in_the_database(
    client, db, alice, login, alice_tokens
):
    await login(alice)
    await login(alice)

    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    sessions = (await db.scalars(select(AuthSession).where(AuthSession.user_id == alice.id))).all()
    assert len(sessions) == 3
    assert sorted(s.revoked_at is None for s in sessions) == [False, False, True]


async def test_change_password_leaves_other_users_sessions_alone(client, alice_tokens, make_user, login):
    bob_tokens = await login(await make_user(email="bob@example.org"))

    await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert (await client.get(ME, headers=bearer(bob_tokens))).status_code == 200


async def test_change_password_without_a_token_is_401(client, alice):
    response = await client.post(PASSWORD, json=password_change())

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert (await stored_user(alice)).password_hash == alice.password_hash


# POST /me/password: refused


async def test_change_password_with_a_wrong_current_password_is_422(client, alice_tokens):
    response = await client.post(
        PASSWORD, json=password_change(current=WRONG_PASSWORD), headers=bearer(alice_tokens)
    )

    assert_problem(response, 422, "WRONG_PASSWORD")


async def test_change_password_with_a_wrong_current_password_changes_nothing(
    client, alice, login, alice_tokens
):
    other_tokens = await login(alice)

    await client.post(PASSWORD, json=password_change(current=WRONG_PASSWORD), headers=bearer(alice_tokens))

    assert (await stored_user(alice)).password_hash == alice.password_hash
    assert (await sign_in(client, alice.email, DEFAULT_PASSWORD)).status_code == 200
    assert (await client.get(ME, headers=bearer(other_tokens))).status_code == 200


@pytest.mark.parametrize("new_password", ["", "short", "7 chars"])
async def test_change_password_to_one_shorter_than_8_is_422_and_changes_nothing(
    client, alice, login, alice_tokens, new_password
):
    other_tokens = await login(alice)

    response = await client.post(
        PASSWORD, json=password_change(new=new_password), headers=bearer(alice_tokens)
    )

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["body", "new_password"]
    assert (await stored_user(alice)).password_hash == alice.password_hash
    assert (await client.get(ME, headers=bearer(other_tokens))).status_code == 200


async def test_change_password_accepts_exactly_8_characters(client, alice, alice_tokens):
    response = await client.post(PASSWORD, json=password_change(new="8 chars!"), headers=bearer(alice_tokens))

    assert response.status_code == 204
    assert (await sign_in(client, alice.email, "8 chars!")).status_code == 200


async def test_change_password_validation_errors_never_echo_passwords(client, alice_tokens):
    response = await client.post(
        PASSWORD,
        json={"current_password": "s3cr3t-current", "new_password": "s3cr3t"},
        headers=bearer(alice_tokens),
    )

    assert response.status_code == 422
    assert "s3cr3t" not in response.text


@pytest.mark.parametrize(
    "payload", [{"new_password": NEW_PASSWORD}, password_change() | {"email": "x@y.org"}]
)
async def test_change_password_rejects_missing_or_extra_fields(client, alice, alice_tokens, payload):
    response = await client.post(PASSWORD, json=payload, headers=bearer(alice_tokens))

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert (await stored_user(alice)).password_hash == alice.password_hash


# Wrong current passwords are bounded per session; failed sign-ins elsewhere never block a change.


async def fail_password_changes(client, tokens: dict, times: int) -> None:
    for _ in range(times):
        response = await client.post(
            PASSWORD, json=password_change(current=WRONG_PASSWORD), headers=bearer(tokens)
        )
        assert response.status_code == 422


async def test_wrong_current_passwords_lock_further_password_changes_in_that_session(
    client, alice, alice_tokens
):
    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES)

    response = await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert_problem(response, 429, "PASSWORD_CHANGE_LOCKED")
    assert 1 <= int(response.headers["retry-after"]) <= auth_settings.LOGIN_LOCKOUT_MINUTES * 60 + 1
    assert (await stored_user(alice)).password_hash == alice.password_hash


async def test_a_password_change_lock_is_only_that_sessions(client, alice, alice_tokens, login):
    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES)

    other_session = await login(alice)
    response = await client.post(PASSWORD, json=password_change(), headers=bearer(other_session))

    assert response.status_code == 204


async def test_wrong_current_passwords_do_not_lock_sign_in(client, alice, alice_tokens):
    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES)

    response = await sign_in(client, alice.email, DEFAULT_PASSWORD)

    assert response.status_code == 200


async def test_fewer_wrong_current_passwords_than_the_limit_do_not_lock(client, alice, alice_tokens):
    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES - 1)

    response = await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert response.status_code == 204


async def test_failed_sign_ins_never_block_the_password_change(client, alice, alice_tokens):
    for _ in range(auth_settings.LOGIN_MAX_FAILURES):
        assert (await sign_in(client, alice.email, WRONG_PASSWORD)).status_code == 401
    assert_problem(await sign_in(client, alice.email, WRONG_PASSWORD), 429, "LOGIN_LOCKED")

    response = await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))

    assert response.status_code == 204
    assert (await stored_user(alice)).password_hash != alice.password_hash


async def test_successful_password_change_resets_the_sessions_count(client, alice, alice_tokens):
    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES - 1)
    assert (
        await client.post(PASSWORD, json=password_change(), headers=bearer(alice_tokens))
    ).status_code == 204

    await fail_password_changes(client, alice_tokens, auth_settings.LOGIN_MAX_FAILURES - 1)

    again = password_change(current=NEW_PASSWORD, new="yet another passphrase")
    assert (await client.post(PASSWORD, json=again, headers=bearer(alice_tokens))).status_code == 204


async def test_update_me_refuses_control_characters(client, make_user, auth_headers):
    user = await make_user(full_name="Unchanged")

    response = await client.patch(ME, json={"full_name": "new\nname"}, headers=await auth_headers(user))

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert (await client.get(ME, headers=await auth_headers(user))).json()["full_name"] == "Unchanged"


async def test_me_costs_one_query_for_user_and_session(client, make_user, auth_headers):
    headers = await auth_headers(await make_user())
    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await client.get(ME, headers=headers)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)

    assert response.status_code == 200
    assert len(statements) == 1
    assert "users" in statements[0]
    assert "auth_sessions" in statements[0]
