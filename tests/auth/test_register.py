import pytest
from sqlalchemy import select

from src import database
from src.auth import service as auth_service
from src.auth import utils
from src.auth.config import auth_settings
from src.auth.models import User

REGISTER = "/api/v1/auth/register"


def registration(**overrides):
    return {
        "email": "ada@example.org",
        "password": "analytical engine",
        "full_name": "Ada Lovelace",
    } | overrides


async def test_register_creates_a_researcher(client, db):
    response = await client.post(REGISTER, json=registration())

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.org"
    assert body["full_name"] == "Ada Lovelace"
    assert body["role"] == "researcher"
    assert body["is_active"] is True
    assert set(body) == {"id", "email", "full_name", "role", "is_active", "created_at", "email_verified_at"}
    assert response.headers["location"] == f"/api/v1/auth/users/{body['id']}"
    stored = await db.scalar(select(User).where(User.email == "ada@example.org"))
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert "analytical engine" not in stored.password_hash


async def test_register_normalizes_email(client):
    response = await client.post(REGISTER, json=registration(email="  Ada@Example.ORG "))

    assert response.status_code == 201
    assert response.json()["email"] == "ada@example.org"


async def test_register_taken_email_in_any_case_is_409(client):
    await client.post(REGISTER, json=registration())

    response = await client.post(REGISTER, json=registration(email="ADA@example.org"))

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "EMAIL_TAKEN"


async def test_register_closed_is_403_and_creates_nothing(client, db, monkeypatch):
    monkeypatch.setattr(auth_settings, "OPEN_REGISTRATION", False)

    response = await client.post(REGISTER, json=registration())

    assert response.status_code == 403
    assert response.json()["code"] == "REGISTRATION_CLOSED"
    assert await db.scalar(select(User)) is None


async def test_register_cannot_choose_its_role(client):
    response = await client.post(REGISTER, json=registration(role="admin"))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "role"]


async def test_register_rejects_bad_input_without_echoing_the_password(client, db):
    cases = [
        registration(email="not-an-email"),
        registration(password="s3cr3t!"),
        registration(password="x" * 1025),
        registration(full_name="   "),
        {"email": "ada@example.org"},
    ]
    for payload in cases:
        response = await client.post(REGISTER, json=payload)
        assert response.status_code == 422, payload
        body = response.json()
        assert body["code"] == "VALIDATION_ERROR"
        assert all(set(error) == {"loc", "msg", "code"} for error in body["errors"])
        assert "s3cr3t!" not in response.text
    assert await db.scalar(select(User)) is None


async def test_register_accepts_the_longest_password(client):
    response = await client.post(REGISTER, json=registration(password="p" * 1024))

    assert response.status_code == 201


async def test_losing_a_registration_race_is_409_not_500(client, db, monkeypatch):
    await client.post(REGISTER, json=registration())

    real_lookup, lookups = auth_service._user_with_normalized_email, []

    async def first_lookup_misses(*args, **kwargs):
        lookups.append(1)  # the first check runs before the other registration commits
        return None if len(lookups) == 1 else await real_lookup(*args, **kwargs)

    monkeypatch.setattr(auth_service, "_user_with_normalized_email", first_lookup_misses)
    response = await client.post(REGISTER, json=registration(full_name="Second Ada"))

    assert response.status_code == 409
    assert response.json()["code"] == "EMAIL_TAKEN"
    assert len(list(await db.scalars(select(User)))) == 1


async def test_control_characters_in_a_name_are_422_not_a_database_error(client, db):
    response = await client.post(REGISTER, json=registration(full_name="Ada\x00Lovelace"))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "full_name"]
    assert await db.scalar(select(User)) is None


async def test_registration_holds_no_database_connection_while_hashing(client, monkeypatch):
    held = []
    real_hash = utils.hash_password
    monkeypatch.setattr(
        utils,
        "hash_password",
        lambda password: held.append(database.engine.sync_engine.pool.checkedout()) or real_hash(password),
    )

    response = await client.post(REGISTER, json=registration())

    assert response.status_code == 201
    assert held == [0]


@pytest.mark.parametrize(
    "character",
    ["\u0085", "\u009b", "\u202e", "\u2066", "\u2028", "\u2029", "\u200b", "\ufeff"],
    ids=[
        "next-line",
        "c1-csi",
        "rtl-override",
        "ltr-isolate",
        "line-separator",
        "paragraph-separator",
        "zero-width-space",
        "byte-order-mark",
    ],
)
async def test_invisible_or_direction_changing_characters_in_a_name_are_422(client, db, character):
    response = await client.post(REGISTER, json=registration(full_name=f"Ada{character}Lovelace"))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "full_name"]
    assert await db.scalar(select(User)) is None


async def test_a_name_spelled_with_a_zero_width_non_joiner_is_accepted(client):
    response = await client.post(
        REGISTER, json=registration(full_name="\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645")
    )

    assert response.status_code == 201, response.text
