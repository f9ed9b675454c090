"""Admin-only user management: list, read and change users under /api/v1/auth/users."""

import asyncio
import uuid

import pytest
from sqlalchemy import select

from src.auth.config import auth_settings
from src.auth.constants import Role
from src.auth.models import AuthSession, User
from src.database import SessionFactory
from tests.conftest import DEFAULT_PASSWORD, assert_problem, bearer

USERS = "/api/v1/auth/users"
ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
TOKEN = "/api/v1/auth/token"


async def stored_user(user_id: uuid.UUID) -> User:
    """The user as the database has it now, read in a session of its own."""
    async with SessionFactory() as session:
        return await session.get(User, user_id)


async def sign_in(http, user: User):
    return await http.post(TOKEN, data={"username": user.email, "password": DEFAULT_PASSWORD})


@pytest.fixture
async def admin(make_user):
    return await make_user(email="root@example.org", full_name="Root Admin", role=Role.ADMIN)


@pytest.fixture
async def admin_headers(admin, auth_headers):
    return await auth_headers(admin)


def emails_of(response) -> list[str]:
    return [item["email"] for item in response.json()["items"]]


# GET /users


async def test_list_users_returns_a_page_with_every_user(client, admin, admin_headers, make_user):
    other = await make_user(email="other@example.org", full_name="Other Person", role=Role.VIEWER)

    response = await client.get(USERS, headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total", "total_is_exact", "page", "page_size"}
    assert body["total"] == 2
    assert body["total_is_exact"] is True
    assert body["page"] == 1
    assert body["page_size"] == 20
    by_email = {item["email"]: item for item in body["items"]}
    assert set(by_email) == {admin.email, other.email}
    assert by_email[other.email] == {
        "id": str(other.id),
        "email": "other@example.org",
        "full_name": "Other Person",
        "role": "viewer",
        "is_active": True,
        "created_at": by_email[other.email]["created_at"],
        "email_verified_at": by_email[other.email]["email_verified_at"],
    }


async def test_list_users_never_shows_password_hashes(client, admin_headers):
    response = await client.get(USERS, headers=admin_headers)

    assert response.status_code == 200
    assert "password" not in response.text
    assert "$argon2" not in response.text


async def test_list_users_defaults_to_newest_first(client, admin, admin_headers, make_user):
    first = await make_user(email="first@example.org")
    second = await make_user(email="second@example.org")

    response = await client.get(USERS, headers=admin_headers)

    assert emails_of(response) == [second.email, first.email, admin.email]


async def test_list_users_page_size_and_page_limit_the_items(client, admin_headers, make_user):
    for _ in range(4):
        await make_user()

    response = await client.get(USERS, params={"page": 2, "page_size": 2}, headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 2
    assert body["total"] == 5
    assert body["page"] == 2
    assert body["page_size"] == 2


async def test_list_users_page_past_the_end_is_empty_but_keeps_the_total(client, admin_headers):
    response = await client.get(USERS, params={"page": 3, "page_size": 10}, headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["items"] == []
    assert body["total"] == 1


async def test_list_users_accepts_a_page_size_of_100(client, admin_headers):
    response = await client.get(USERS, params={"page_size": 100}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["page_size"] == 100


async def test_list_users_page_size_above_100_is_422(client, admin_headers):
    response = await client.get(USERS, params={"page_size": 101}, headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["query", "page_size"]


async def test_list_users_q_matches_email_case_insensitively(client, admin_headers, make_user):
    grace = await make_user(email="grace@navy.example.net", full_name="Grace")
    await make_user(email="ada@example.org", full_name="Ada")

    response = await client.get(USERS, params={"q": "NAVY.Example"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [grace.email]
    assert response.json()["total"] == 1


async def test_list_users_q_matches_full_name_case_insensitively(client, admin_headers, make_user):
    grace = await make_user(email="g@example.org", full_name="Grace HOPPER")
    await make_user(email="a@example.org", full_name="Ada Lovelace")

    response = await client.get(USERS, params={"q": "hopper"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [grace.email]


async def test_list_users_q_treats_percent_literally(client, admin_headers, make_user):
    organic = await make_user(email="p1@example.org", full_name="100% Organic")
    await make_user(email="p2@example.org", full_name="1000 Organic")

    response = await client.get(USERS, params={"q": "0%"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [organic.email]


async def test_list_users_q_treats_underscore_literally(client, admin_headers, make_user):
    underscored = await make_user(email="a_b@example.org", full_name="Underscore")
    await make_user(email="axb@example.org", full_name="Letter")

    response = await client.get(USERS, params={"q": "a_b"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [underscored.email]


async def test_list_users_q_treats_backslash_literally(client, admin_headers, make_user):
    backslashed = await make_user(email="b1@example.org", full_name="C:\\Data")
    await make_user(email="b2@example.org", full_name="C:Data")

    response = await client.get(USERS, params={"q": "C:\\D"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [backslashed.email]


async def test_list_users_q_without_matches_is_an_empty_page(client, admin_headers):
    response = await client.get(USERS, params={"q": "nobody-has-this"}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json() == {
        "items": [],
        "total": 0,
        "total_is_exact": True,
        "page": 1,
        "page_size": 20,
    }


async def test_list_users_filters_by_role(client, admin_headers, make_user):
    viewer = await make_user(role=Role.VIEWER)
    await make_user(role=Role.RESEARCHER)

    response = await client.get(USERS, params={"role": "viewer"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [viewer.email]
    assert response.json()["total"] == 1


async def test_list_users_filters_by_inactive(client, admin_headers, make_user):
    inactive = await make_user(is_active=False)
    await make_user()

    response = await client.get(USERS, params={"is_active": "false"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == [inactive.email]


async def test_list_users_filters_by_active(client, admin, admin_headers, make_user):
    active = await make_user()
    await make_user(is_active=False)

    response = await client.get(USERS, params={"is_active": "true", "sort": "email"}, headers=admin_headers)

    assert response.status_code == 200
    assert emails_of(response) == sorted([active.email, admin.email])


async def test_list_users_combines_search_and_filters(client, admin_headers, make_user):
    match = await make_user(email="lab-viewer@example.org", role=Role.VIEWER)
    await make_user(email="lab-researcher@example.org", role=Role.RESEARCHER)
    await make_user(email="lab-gone@example.org", role=Role.VIEWER, is_active=False)
    await make_user(email="office@example.org", role=Role.VIEWER)

    response = await client.get(
        USERS, params={"q": "lab", "role": "viewer", "is_active": "true"}, headers=admin_headers
    )

    assert response.status_code == 200
    assert emails_of(response) == [match.email]
    assert response.json()["total"] == 1


async def test_list_users_total_counts_matches_beyond_the_page(client, admin_headers, make_user):
    for _ in range(3):
        await make_user(role=Role.VIEWER)

    response = await client.get(USERS, params={"role": "viewer", "page_size": 1}, headers=admin_headers)

    assert response.status_code == 200
    assert len(response.json()["items"]) == 1
    assert response.json()["total"] == 3


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("created_at", ["carol", "alice", "bob"]),
        ("-created_at", ["bob", "alice", "carol"]),
        ("email", ["alice", "bob", "carol"]),
        ("-email", ["carol", "bob", "alice"]),
        ("full_name", ["bob", "carol", "alice"]),
        ("-full_name", ["alice", "carol", "bob"]),
    ],
)
async def test_list_users_sorts(client, auth_headers, make_user, sort, expected):
    # Created carol, alice, bob; named so that each sort gives a different order.
    carol = await make_user(email="carol@example.org", full_name="Bravo", role=Role.ADMIN)
    await make_user(email="alice@example.org", full_name="Charlie")
    await make_user(email="bob@example.org", full_name="Alpha")

    response = await client.get(USERS, params={"sort": sort}, headers=await auth_headers(carol))

    assert response.status_code == 200
    assert emails_of(response) == [f"{name}@example.org" for name in expected]


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "password_hash"},
        {"sort": "-role"},
        {"role": "superuser"},
        {"is_active": "maybe"},
        {"q": "x" * 201},
    ],
)
async def test_list_users_rejects_unknown_sort_and_filter_values(client, admin_headers, params):
    response = await client.get(USERS, params=params, headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["query", next(iter(params))]


# GET /users/{id}


async def test_read_user_returns_the_user(client, admin_headers, make_user):
    user = await make_user(email="reader@example.org", full_name="Reader", role=Role.VIEWER)

    response = await client.get(f"{USERS}/{user.id}", headers=admin_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.id)
    assert body["email"] == "reader@example.org"
    assert body["full_name"] == "Reader"
    assert body["role"] == "viewer"
    assert body["is_active"] is True
    assert "password_hash" not in body


async def test_read_user_shows_inactive_users(client, admin_headers, make_user):
    user = await make_user(is_active=False)

    response = await client.get(f"{USERS}/{user.id}", headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["is_active"] is False


async def test_read_unknown_user_is_404(client, admin_headers):
    response = await client.get(f"{USERS}/{uuid.uuid4()}", headers=admin_headers)

    assert_problem(response, 404, "USER_NOT_FOUND")


async def test_read_user_with_a_malformed_id_is_422(client, admin_headers):
    response = await client.get(f"{USERS}/not-a-uuid", headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert response.json()["errors"][0]["loc"] == ["path", "user_id"]


# PATCH /users/{id}


async def test_update_user_changes_full_name_trimmed(client, db, admin_headers, make_user):
    user = await make_user(full_name="Old Name")

    response = await client.patch(
        f"{USERS}/{user.id}", json={"full_name": "  New Name "}, headers=admin_headers
    )

    assert response.status_code == 200
    assert response.json()["full_name"] == "New Name"
    assert (await db.get(User, user.id)).full_name == "New Name"


async def test_update_user_changes_role(client, db, admin_headers, make_user):
    user = await make_user(role=Role.RESEARCHER)

    response = await client.patch(f"{USERS}/{user.id}", json={"role": "viewer"}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    assert (await db.get(User, user.id)).role == Role.VIEWER


async def test_update_user_leaves_fields_it_was_not_given(client, db, admin_headers, make_user):
    user = await make_user(full_name="Kept Name", role=Role.VIEWER)

    response = await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    assert response.status_code == 200
    stored = await db.get(User, user.id)
    assert stored.is_active is False
    assert stored.full_name == "Kept Name"
    assert stored.role == Role.VIEWER
    assert stored.email == user.email


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "new@example.org"},
        {"password_hash": "x"},
        {"password": "a new password"},
        {"full_name": "Fine", "created_at": "2020-01-01T00:00:00Z"},
    ],
)
async def test_update_user_rejects_unknown_fields_and_changes_nothing(
    client, db, admin_headers, make_user, payload
):
    user = await make_user(full_name="Unchanged")

    response = await client.patch(f"{USERS}/{user.id}", json=payload, headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")
    stored = await db.get(User, user.id)
    assert stored.email == user.email
    assert stored.full_name == "Unchanged"
    assert stored.password_hash == user.password_hash


@pytest.mark.parametrize(
    "payload",
    [
        {"role": "superuser"},
        {"full_name": "   "},
        {"full_name": "x" * 201},
        {"is_active": "perhaps"},
        {"role": None},
        {"full_name": None},
        {"is_active": None},
    ],
)
async def test_update_user_rejects_invalid_values(client, db, admin_headers, make_user, payload):
    user = await make_user(full_name="Unchanged", role=Role.VIEWER)

    response = await client.patch(f"{USERS}/{user.id}", json=payload, headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")
    stored = await db.get(User, user.id)
    assert (stored.full_name, stored.role, stored.is_active) == ("Unchanged", Role.VIEWER, True)


async def test_update_unknown_user_is_404(client, admin_headers):
    response = await client.patch(f"{USERS}/{uuid.uuid4()}", json={"full_name": "X"}, headers=admin_headers)

    assert_problem(response, 404, "USER_NOT_FOUND")


# Who may call these routes.

ADMIN_ROUTES = [("GET", "list"), ("GET", "one"), ("PATCH", "one"), ("DELETE", "login-lock")]


def admin_route_request(method: str, kind: str, target: User) -> dict:
    url = {"list": USERS, "one": f"{USERS}/{target.id}", "login-lock": f"{USERS}/{target.id}/login-lock"}[
        kind
    ]
    request = {"method": method, "url": url}
    if method == "PATCH":
        request["json"] = {"full_name": "Changed By Someone"}
    return request


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.VIEWER])
@pytest.mark.parametrize(("method", "kind"), ADMIN_ROUTES)
async def test_admin_routes_forbid_non_admins(client, auth_headers, make_user, role, method, kind):
    caller = await make_user(role=role)
    target = await make_user()

    response = await client.request(
        **admin_route_request(method, kind, target), headers=await auth_headers(caller)
    )

    assert_problem(response, 403, "ADMIN_REQUIRED")


@pytest.mark.parametrize(("method", "kind"), ADMIN_ROUTES)
async def test_admin_routes_without_a_token_are_401(client, make_user, method, kind):
    target = await make_user()

    response = await client.request(**admin_route_request(method, kind, target))

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_non_admin_cannot_promote_themselves(client, db, auth_headers, make_user):
    researcher = await make_user(role=Role.RESEARCHER)

    response = await client.patch(
        f"{USERS}/{researcher.id}", json={"role": "admin"}, headers=await auth_headers(researcher)
    )

    assert_problem(response, 403, "ADMIN_REQUIRED")
    assert (await db.get(User, researcher.id)).role == Role.RESEARCHER


async def test_non_admin_cannot_deactivate_another_user(client, db, auth_headers, make_user):
    researcher = await make_user(role=Role.RESEARCHER)
    victim = await make_user()

    response = await client.patch(
        f"{USERS}/{victim.id}", json={"is_active": False}, headers=await auth_headers(researcher)
    )

    assert_problem(response, 403, "ADMIN_REQUIRED")
    assert (await db.get(User, victim.id)).is_active is True


# Deactivation ends sessions at once.


async def test_deactivating_a_user_rejects_their_access_token_at_once(
    client, admin_headers, login, make_user
):
    user = await make_user()
    tokens = await login(user)

    response = await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["is_active"] is False
    me = await client.get(ME, headers=bearer(tokens))
    assert_problem(me, 401, "SESSION_REVOKED")
    assert me.headers["www-authenticate"] == "Bearer"


async def test_deactivating_a_user_rejects_their_refresh_token(client, admin_headers, login, make_user):
    user = await make_user()
    tokens = await login(user)

    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert_problem(response, 401, "REFRESH_TOKEN_INVALID")


async def test_deactivating_a_user_revokes_every_session_in_the_database(
    client, db, admin_headers, login, make_user
):
    user = await make_user()
    await login(user)
    await login(user)

    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    sessions = (await db.scalars(select(AuthSession).where(AuthSession.user_id == user.id))).all()
    assert len(sessions) == 2
    assert all(s.revoked_at is not None for s in sessions)


async def test_deactivated_user_cannot_sign_in(client, admin_headers, make_user):
    user = await make_user()
    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    response = await client.post(
        TOKEN, data={"username": user.email, "password": "correct horse battery staple"}
    )

    assert_problem(response, 401, "INVALID_CREDENTIALS")


async def test_deactivating_a_user_leaves_other_users_sessions_alone(client, admin_headers, login, make_user):
    user = await make_user()
    bystander = await make_user()
    bystander_tokens = await login(bystander)

    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    assert (await client.get(ME, headers=bearer(bystander_tokens))).status_code == 200


async def test_admin_who_deactivates_themselves_is_signed_out_at_once(
    client, admin, admin_headers, make_user
):
    await make_user(role=Role.ADMIN)

    response = await client.patch(f"{USERS}/{admin.id}", json={"is_active": False}, headers=admin_headers)

    assert response.status_code == 200
    assert_problem(await client.get(ME, headers=admin_headers), 401, "SESSION_REVOKED")


async def test_reactivating_a_user_does_not_revive_the_old_session(client, admin_headers, login, make_user):
    user = await make_user()
    tokens = await login(user)
    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)

    response = await client.patch(f"{USERS}/{user.id}", json={"is_active": True}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["is_active"] is True
    assert_problem(await client.get(ME, headers=bearer(tokens)), 401, "SESSION_REVOKED")
    refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert_problem(refreshed, 401, "REFRESH_TOKEN_INVALID")


async def test_reactivated_user_can_sign_in_again(client, admin_headers, login, make_user):
    user = await make_user()
    await client.patch(f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers)
    await client.patch(f"{USERS}/{user.id}", json={"is_active": True}, headers=admin_headers)

    tokens = await login(user)

    assert (await client.get(ME, headers=bearer(tokens))).status_code == 200


# The last active admin.


async def test_last_admin_cannot_demote_themselves(client, admin, admin_headers):
    response = await client.patch(f"{USERS}/{admin.id}", json={"role": "researcher"}, headers=admin_headers)

    assert_problem(response, 409, "LAST_ADMIN")
    stored = await stored_user(admin.id)
    assert stored.role == Role.ADMIN
    assert (await client.get(USERS, headers=admin_headers)).status_code == 200


async def test_last_admin_cannot_deactivate_themselves(client, admin, admin_headers):
    response = await client.patch(f"{USERS}/{admin.id}", json={"is_active": False}, headers=admin_headers)

    assert_problem(response, 409, "LAST_ADMIN")
    assert (await stored_user(admin.id)).is_active is True
    assert (await client.get(ME, headers=admin_headers)).status_code == 200


async def test_last_admin_rejection_applies_no_part_of_the_change(client, admin, admin_headers):
    response = await client.patch(
        f"{USERS}/{admin.id}", json={"full_name": "Renamed", "role": "viewer"}, headers=admin_headers
    )

    assert_problem(response, 409, "LAST_ADMIN")
    stored = await stored_user(admin.id)
    assert (stored.full_name, stored.role) == ("Root Admin", Role.ADMIN)


async def test_last_admin_may_still_change_their_name(client, admin, admin_headers):
    response = await client.patch(
        f"{USERS}/{admin.id}",
        json={"full_name": "Renamed Root", "role": "admin", "is_active": True},
        headers=admin_headers,
    )

    assert response.status_code == 200
    assert (await stored_user(admin.id)).full_name == "Renamed Root"


async def test_admin_can_demote_another_admin_when_two_are_active(client, admin_headers, make_user):
    second = await make_user(role=Role.ADMIN)

    response = await client.patch(f"{USERS}/{second.id}", json={"role": "researcher"}, headers=admin_headers)

    assert response.status_code == 200
    assert response.json()["role"] == "researcher"
    assert (await stored_user(second.id)).role == Role.RESEARCHER


async def test_admin_can_demote_themselves_when_another_admin_is_active(
    client, admin, admin_headers, make_user
):
    await make_user(role=Role.ADMIN)

    response = await client.patch(f"{USERS}/{admin.id}", json={"role": "viewer"}, headers=admin_headers)

    assert response.status_code == 200
    assert (await stored_user(admin.id)).role == Role.VIEWER


async def test_admin_can_deactivate_another_admin_when_two_are_active(client, admin_headers, make_user):
    second = await make_user(role=Role.ADMIN)

    response = await client.patch(f"{USERS}/{second.id}", json={"is_active": False}, headers=admin_headers)

    assert response.status_code == 200
    assert (await stored_user(second.id)).is_active is False


async def test_once_the_other_admin_is_demoted_the_remaining_one_is_the_last(
    client, admin, admin_headers, make_user
):
    second = await make_user(role=Role.ADMIN)
    await client.patch(f"{USERS}/{second.id}", json={"role": "researcher"}, headers=admin_headers)

    response = await client.patch(f"{USERS}/{admin.id}", json={"role": "researcher"}, headers=admin_headers)

    assert_problem(response, 409, "LAST_ADMIN")


async def test_inactive_admin_does_not_count_as_another_active_admin_for_demotion(
    client, admin, admin_headers, make_user
):
    await make_user(role=Role.ADMIN, is_active=False)

    response = await client.patch(f"{USERS}/{admin.id}", json={"role": "researcher"}, headers=admin_headers)

    assert_problem(response, 409, "LAST_ADMIN")
    assert (await stored_user(admin.id)).role == Role.ADMIN


async def test_inactive_admin_does_not_count_as_another_active_admin_for_deactivation(
    client, admin, admin_headers, make_user
):
    await make_user(role=Role.ADMIN, is_active=False)

    response = await client.patch(f"{USERS}/{admin.id}", json={"is_active": False}, headers=admin_headers)

    assert_problem(response, 409, "LAST_ADMIN")
    assert (await stored_user(admin.id)).is_active is True


async def test_an_inactive_admin_may_be_demoted_by_the_last_active_admin(client, admin_headers, make_user):
    dormant = await make_user(role=Role.ADMIN, is_active=False)

    response = await client.patch(f"{USERS}/{dormant.id}", json={"role": "viewer"}, headers=admin_headers)

    assert response.status_code == 200
    assert (await stored_user(dormant.id)).role == Role.VIEWER


# Role changes take effect on the next request, with the token already held.


async def test_demoted_admin_loses_admin_access_with_their_existing_token(
    client, admin_headers, auth_headers, make_user
):
    second = await make_user(role=Role.ADMIN)
    second_headers = await auth_headers(second)
    assert (await client.get(USERS, headers=second_headers)).status_code == 200

    await client.patch(f"{USERS}/{second.id}", json={"role": "researcher"}, headers=admin_headers)

    assert_problem(await client.get(USERS, headers=second_headers), 403, "ADMIN_REQUIRED")


async def test_admin_who_demotes_themselves_loses_admin_access_at_once(
    client, admin, admin_headers, make_user
):
    await make_user(role=Role.ADMIN)

    await client.patch(f"{USERS}/{admin.id}", json={"role": "researcher"}, headers=admin_headers)

    assert_problem(await client.get(USERS, headers=admin_headers), 403, "ADMIN_REQUIRED")
    me = await client.get(ME, headers=admin_headers)
    assert me.status_code == 200
    assert me.json()["role"] == "researcher"


async def test_promoted_user_gains_admin_access_with_their_existing_token(
    client, admin_headers, auth_headers, make_user
):
    user = await make_user(role=Role.RESEARCHER)
    user_headers = await auth_headers(user)
    assert (await client.get(USERS, headers=user_headers)).status_code == 403

    await client.patch(f"{USERS}/{user.id}", json={"role": "admin"}, headers=admin_headers)

    assert (await client.get(USERS, headers=user_headers)).status_code == 200


async def test_list_users_refuses_control_characters_in_the_search(client, admin_headers):
    response = await client.get(USERS, params={"q": "a\x00b"}, headers=admin_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(client, make_user, login, db):
    first = await make_user(role=Role.ADMIN)
    second = await make_user(role=Role.ADMIN)
    first_headers, second_headers = bearer(await login(first)), bearer(await login(second))

    responses = await asyncio.gather(
        client.patch(f"{USERS}/{second.id}", json={"role": "viewer"}, headers=first_headers),
        client.patch(f"{USERS}/{first.id}", json={"role": "viewer"}, headers=second_headers),
    )

    assert sorted(r.status_code for r in responses) != [200, 200]
    assert all(r.status_code in (200, 403, 409, 503) for r in responses)
    db.expire_all()
    admins = await db.scalars(select(User).where(User.role == Role.ADMIN, User.is_active.is_(True)))
    assert len(list(admins)) >= 1


# DELETE /users/{id}/login-lock


def login_lock(user_id: uuid.UUID | str) -> str:
    return f"{USERS}/{user_id}/login-lock"


async def lock_out(http, email: str, times: int = 6) -> None:
    for _ in range(times):
        await http.post(TOKEN, data={"username": email, "password": "a wrong password"})


async def test_admin_lifts_an_address_lock(client, client_from, admin_headers, make_user):
    user = await make_user()
    locked_out = client_from("198.51.100.20")
    await lock_out(locked_out, user.email)
    assert (await sign_in(locked_out, user)).status_code == 429

    response = await client.delete(login_lock(user.id), headers=admin_headers)

    assert response.status_code == 204
    assert response.content == b""
    assert (await sign_in(locked_out, user)).status_code == 200


async def test_admin_lifts_an_account_slowdown(client, client_from, admin_headers, make_user, monkeypatch):
    monkeypatch.setattr(auth_settings, "LOGIN_ACCOUNT_MAX_FAILURES", 1)
    user = await make_user()
    await lock_out(client_from("198.51.100.20"), user.email, times=2)
    newcomer = client_from("198.51.100.21")
    assert (await sign_in(newcomer, user)).json()["code"] == "LOGIN_SLOWED"

    await client.delete(login_lock(user.id), headers=admin_headers)

    assert (await sign_in(newcomer, user)).status_code == 200


async def test_lifting_a_lock_leaves_other_users_locks(client, client_from, admin_headers, make_user):
    user, other = await make_user(), await make_user()
    locked_out = client_from("198.51.100.20")
    await lock_out(locked_out, other.email)

    await client.delete(login_lock(user.id), headers=admin_headers)

    assert (await sign_in(locked_out, other)).status_code == 429


async def test_lifting_a_lock_that_is_not_there_is_204(client, admin_headers, make_user):
    user = await make_user()

    response = await client.delete(login_lock(user.id), headers=admin_headers)

    assert response.status_code == 204


async def test_non_admin_cannot_lift_a_lock(client, client_from, make_user, auth_headers):
    user = await make_user()
    locked_out = client_from("198.51.100.20")
    await lock_out(locked_out, user.email)
    researcher = await make_user(role=Role.RESEARCHER)

    response = await client.delete(login_lock(user.id), headers=await auth_headers(researcher))

    assert_problem(response, 403, "ADMIN_REQUIRED")
    assert (await sign_in(locked_out, user)).status_code == 429


async def test_lifting_the_lock_of_an_unknown_user_is_404(client, admin_headers):
    response = await client.delete(login_lock(uuid.uuid4()), headers=admin_headers)

    assert_problem(response, 404, "USER_NOT_FOUND")
