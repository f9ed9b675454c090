"""Shared dependencies: pagination parameters and the typed current-user aliases."""

import base64
import dataclasses
import json
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt as jose_jwt
from sqlalchemy import update

from src.auth import jwt
from src.auth.constants import JWT_ALGORITHM, Role
from src.auth.models import User
from src.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from src.database import utcnow
from src.dependencies import (
    AdminUser,
    CurrentUser,
    IfMatch,
    PageParams,
    Pagination,
    etag_matches,
    page_params,
)
from src.exceptions import register_exception_handlers
from src.middleware import RequestMiddleware
from tests.conftest import TEST_SECRET_KEY, assert_problem, bearer

USERS = "/api/v1/auth/users"
LOGOUT = "/api/v1/auth/logout"


def build_probe_app() -> FastAPI:
    """A bare app whose routes only return what each dependency hands them."""
    probe = FastAPI()
    probe.add_middleware(RequestMiddleware)  # request ids, as in the real app
    register_exception_handlers(probe)

    @probe.get("/page")
    async def read_page(params: Pagination) -> dict[str, int]:
        return {"page": params.page, "page_size": params.page_size, "offset": params.offset}

    @probe.get("/current-user")
    async def read_current_user(user: CurrentUser) -> dict[str, str]:
        return {"id": str(user.id), "role": user.role}

    @probe.get("/if-match")
    async def read_if_match(expected_version: IfMatch) -> dict[str, int | None]:
        return {"expected_version": expected_version}

    @probe.get("/admin")
    async def read_admin(admin: AdminUser) -> dict[str, str]:
        return {"id": str(admin.id)}

    return probe


@pytest.fixture(scope="module")
def probe_app() -> FastAPI:
    return build_probe_app()


@pytest.fixture
async def probe(probe_app):
    transport = httpx.ASGITransport(app=probe_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        yield http


# PageParams and page_params, called directly.


@pytest.mark.parametrize(
    ("page", "page_size", "offset"),
    [(1, 20, 0), (2, 20, 20), (3, 7, 14), (10, 100, 900), (1, 1, 0), (5, 1, 4)],
)
def test_page_params_offset_skips_the_earlier_pages(page, page_size, offset):
    assert PageParams(page=page, page_size=page_size).offset == offset


async def test_page_params_defaults_to_the_first_page_of_the_default_size():
    params = await page_params()

    assert params == PageParams(page=1, page_size=DEFAULT_PAGE_SIZE)
    assert params.offset == 0


def test_page_params_are_immutable():
    params = PageParams(page=1, page_size=20)

    with pytest.raises(dataclasses.FrozenInstanceError):
        params.page = 2  # type: ignore[misc]


# Pagination through HTTP, on a route that only uses the dependency.


async def test_pagination_reads_page_and_page_size_from_the_query(probe):
    response = await probe.get("/page", params={"page": 4, "page_size": 25})

    assert response.status_code == 200
    assert response.json() == {"page": 4, "page_size": 25, "offset": 75}


async def test_pagination_defaults_without_query_parameters(probe):
    response = await probe.get("/page")

    assert response.json() == {"page": 1, "page_size": DEFAULT_PAGE_SIZE, "offset": 0}


async def test_pagination_accepts_the_maximum_page_size(probe):
    response = await probe.get("/page", params={"page_size": MAX_PAGE_SIZE})

    assert response.status_code == 200
    assert response.json()["page_size"] == MAX_PAGE_SIZE


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "two"}, "page"),
        ({"page": 1_000_001}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": -5}, "page_size"),
        ({"page_size": MAX_PAGE_SIZE + 1}, "page_size"),
        ({"page_size": "many"}, "page_size"),
    ],
)
async def test_pagination_rejects_out_of_range_values_with_422(probe, params, field):
    response = await probe.get("/page", params=params)

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert [error["loc"] for error in response.json()["errors"]] == [["query", field]]


# Pagination through a real list route.


@pytest.fixture
async def seven_users_by_email(make_user):
    """An admin and six others; their emails in the order `sort=email` lists them."""
    admin = await make_user(email="a-admin@example.org", role=Role.ADMIN)
    others = [await make_user(email=f"user-{n}@example.org") for n in range(6)]
    return admin, sorted([admin.email, *(user.email for user in others)])


@pytest.mark.parametrize(("page", "start", "end"), [(1, 0, 3), (2, 3, 6), (3, 6, 7), (4, 7, 7)])
async def test_users_list_pages_follow_one_another(
    client, auth_headers, seven_users_by_email, page, start, end
):
    admin, emails = seven_users_by_email

    response = await client.get(
        USERS, params={"page": page, "page_size": 3, "sort": "email"}, headers=await auth_headers(admin)
    )

    assert response.status_code == 200
    body = response.json()
    assert [item["email"] for item in body["items"]] == emails[start:end]
    assert (body["total"], body["page"], body["page_size"]) == (7, page, 3)


async def test_users_list_pages_cover_every_user_exactly_once(client, auth_headers, seven_users_by_email):
    admin, emails = seven_users_by_email
    headers = await auth_headers(admin)

    seen = []
    for page in (1, 2, 3):
        response = await client.get(USERS, params={"page": page, "page_size": 3}, headers=headers)
        seen += [item["email"] for item in response.json()["items"]]

    assert sorted(seen) == emails


@pytest.mark.parametrize("params", [{"page": 0}, {"page_size": 0}, {"page_size": MAX_PAGE_SIZE + 1}])
async def test_users_list_rejects_bad_pagination_with_422(client, auth_headers, make_user, params):
    admin = await make_user(role=Role.ADMIN)

    response = await client.get(USERS, params=params, headers=await auth_headers(admin))

    assert_problem(response, 422, "VALIDATION_ERROR")


# CurrentUser


async def test_current_user_is_the_user_the_token_names(probe, make_user, login):
    await make_user()
    user = await make_user(role=Role.VIEWER)

    response = await probe.get("/current-user", headers=bearer(await login(user)))

    assert response.status_code == 200
    assert response.json() == {"id": str(user.id), "role": "viewer"}


async def test_current_user_without_a_token_is_401(probe):
    response = await probe.get("/current-user")

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_current_user_with_another_auth_scheme_is_401(probe):
    response = await probe.get("/current-user", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert_problem(response, 401, "NOT_AUTHENTICATED")


def _claims_of(tokens: dict) -> dict:
    return jose_jwt.get_unverified_claims(tokens["access_token"])


def _signed(claims: dict, key: str = TEST_SECRET_KEY) -> str:
    return jose_jwt.encode(claims, key, algorithm=JWT_ALGORITHM)


def _unsigned(claims: dict) -> str:
    def segment(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


FORGERIES = {
    "garbage": lambda claims: "not.a.jwt",
    "another key": lambda claims: _signed(claims, key="another-secret-key-that-is-long-enough-987654"),
    "refresh type": lambda claims: _signed(claims | {"type": "refresh"}),
    "no session id": lambda claims: _signed({k: v for k, v in claims.items() if k != "sid"}),
    "no jti": lambda claims: _signed({k: v for k, v in claims.items() if k != "jti"}),
    "subject not a uuid": lambda claims: _signed(claims | {"sub": "admin"}),
    "alg none": lambda claims: _unsigned(claims),
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
async def test_current_user_with_a_forged_token_is_401(probe, make_user, login, forgery):
    claims = _claims_of(await login(await make_user()))

    response = await probe.get("/current-user", headers={"Authorization": f"Bearer {forgery(claims)}"})

    assert_problem(response, 401, "TOKEN_INVALID")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_current_user_with_an_expired_token_is_401(probe, make_user, login):
    user = await make_user()
    claims = _claims_of(await login(user))
    expired = jwt.create_access_token(
        user_id=user.id,
        session_id=uuid.UUID(claims["sid"]),
        issued_at=utcnow() - timedelta(hours=1),
        lifetime=timedelta(minutes=15),
    )

    response = await probe.get("/current-user", headers={"Authorization": f"Bearer {expired}"})

    assert_problem(response, 401, "TOKEN_EXPIRED")


async def test_current_user_with_another_users_session_id_is_401(probe, make_user, login):
    alice = await make_user()
    bob_claims = _claims_of(await login(await make_user()))
    token = _signed(bob_claims | {"sub": str(alice.id)})

    response = await probe.get("/current-user", headers={"Authorization": f"Bearer {token}"})

    assert_problem(response, 401, "SESSION_REVOKED")


async def test_current_user_after_logout_is_401(client, probe, make_user, login):
    tokens = await login(await make_user())
    assert (await client.post(LOGOUT, headers=bearer(tokens))).status_code == 204

    response = await probe.get("/current-user", headers=bearer(tokens))

    assert_problem(response, 401, "SESSION_REVOKED")


async def test_current_user_rejects_a_user_deactivated_outside_the_api(probe, db, make_user, login):
    # Sessions are normally revoked on deactivation; the flag alone must still shut the user out.
    user = await make_user()
    tokens = await login(user)
    await db.execute(update(User).where(User.id == user.id).values(is_active=False))
    await db.commit()

    response = await probe.get("/current-user", headers=bearer(tokens))

    assert_problem(response, 401, "SESSION_REVOKED")


# AdminUser


async def test_admin_user_lets_an_admin_through(probe, make_user, login):
    admin = await make_user(role=Role.ADMIN)

    response = await probe.get("/admin", headers=bearer(await login(admin)))

    assert response.status_code == 200
    assert response.json() == {"id": str(admin.id)}


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.VIEWER])
async def test_admin_user_forbids_other_roles_with_403(probe, make_user, login, role):
    user = await make_user(role=role)

    response = await probe.get("/admin", headers=bearer(await login(user)))

    assert_problem(response, 403, "ADMIN_REQUIRED")


async def test_admin_user_without_a_token_is_401_not_403(probe):
    response = await probe.get("/admin")

    assert_problem(response, 401, "NOT_AUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_admin_user_with_a_revoked_admin_session_is_401(client, probe, make_user, login):
    tokens = await login(await make_user(role=Role.ADMIN))
    await client.post(LOGOUT, headers=bearer(tokens))

    response = await probe.get("/admin", headers=bearer(tokens))

    assert_problem(response, 401, "SESSION_REVOKED")


# If-Match: the version a write expects.


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"3"', 3), (' "12" ', 12), ('"0"', 0), ("*", None)],
)
async def test_if_match_names_the_version_of_an_etag(probe, header, expected):
    response = await probe.get("/if-match", headers={"If-Match": header})

    assert response.status_code == 200
    assert response.json() == {"expected_version": expected}


async def test_a_weak_if_match_never_matches(probe):
    # RFC 9110: If-Match uses the strong comparison, under which a weak tag matches nothing.
    response = await probe.get("/if-match", headers={"If-Match": 'W/"3"'})

    assert_problem(response, 412, "PRECONDITION_FAILED")


async def test_without_if_match_no_version_is_expected(probe):
    response = await probe.get("/if-match")

    assert response.json() == {"expected_version": None}


@pytest.mark.parametrize("header", ["3", '"three"', '"3", "4"', "W/3", '"-1"', '""', '"1234567890123456789"'])
async def test_malformed_if_match_is_a_400_problem(probe, header):
    response = await probe.get("/if-match", headers={"If-Match": header})

    assert_problem(response, 400, "INVALID_IF_MATCH")


@pytest.mark.parametrize(
    ("if_none_match", "matches"),
    [(None, False), ('"abc"', True), ('W/"abc"', True), ('"x", W/"abc"', True), ("*", True), ('"x"', False)],
)
def test_if_none_match_compares_weakly_against_the_current_tag(if_none_match, matches):
    assert etag_matches(if_none_match, '"abc"') is matches
