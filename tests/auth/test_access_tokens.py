"""Every way an access token can be wrong gets 401 with WWW-Authenticate: Bearer."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from jose import jwt
from sqlalchemy import select, update

from src.auth import jwt as auth_jwt
from src.auth.models import AuthSession
from tests.conftest import TEST_SECRET_KEY, bearer

ME = "/api/v1/auth/me"


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def valid_claims(db, user) -> dict:
    session_id = await db.scalar(select(AuthSession.id).where(AuthSession.user_id == user.id))
    now = datetime.now(UTC)
    return {
        "sub": str(user.id),
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "type": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }


def sign(claims: dict, key: str = TEST_SECRET_KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def assert_rejected(client, token: str, code: str = "TOKEN_INVALID") -> None:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


@pytest.fixture
async def signed_in(make_user, login, db):
    user = await make_user()
    await login(user)
    return user, await valid_claims(db, user)


async def test_a_hand_signed_token_with_all_claims_is_accepted(client, signed_in):
    _, claims = signed_in

    response = await client.get(ME, headers={"Authorization": f"Bearer {sign(claims)}"})

    assert response.status_code == 200


async def test_missing_token_is_401(client):
    response = await client.get(ME)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "NOT_AUTHENTICATED"


async def test_non_bearer_scheme_is_401(client):
    response = await client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


@pytest.mark.parametrize("claim", ["sub", "sid", "jti", "type", "iat", "exp"])
async def test_token_missing_a_claim_is_401(client, signed_in, claim):
    _, claims = signed_in
    del claims[claim]

    await assert_rejected(client, sign(claims))


async def test_wrong_signature_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims, key="another-key-another-key-another-key!!"))


async def test_tampered_payload_is_401(client, signed_in, make_user):
    _, claims = signed_in
    header, _, signature = sign(claims).split(".")
    other = await make_user()

    await assert_rejected(client, ".".join([header, b64(claims | {"sub": str(other.id)}), signature]))


async def test_alg_none_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.")


async def test_other_hmac_algorithm_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims, algorithm="HS512"))


async def test_expired_token_is_401_token_expired(client, signed_in):
    _, claims = signed_in
    past = datetime.now(UTC) - timedelta(minutes=1)

    await assert_rejected(
        client,
        sign(claims | {"iat": int(past.timestamp()) - 60, "exp": int(past.timestamp())}),
        "TOKEN_EXPIRED",
    )


async def test_wrong_token_type_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims | {"type": "refresh"}))


async def test_non_uuid_subject_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims | {"sub": "admin"}))


async def test_garbage_token_is_401(client):
    await assert_rejected(client, "not.a.jwt")


async def test_token_naming_an_unknown_session_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims | {"sid": str(uuid.uuid4())}), "SESSION_REVOKED")


async def test_token_naming_someone_elses_session_is_401(client, signed_in, make_user):
    _, claims = signed_in
    other = await make_user()

    await assert_rejected(client, sign(claims | {"sub": str(other.id)}), "SESSION_REVOKED")


async def test_token_of_a_revoked_session_is_401(client, make_user, login):
    tokens = await login(await make_user())
    await client.post("/api/v1/auth/logout", headers=bearer(tokens))

    await assert_rejected(client, tokens["access_token"], "SESSION_REVOKED")


# Only the canonical spelling of a token (issue 11, item 11)


def flip_unused_low_bits(segment: str) -> str:
    """The same bytes spelled differently: the last character's bits past the final byte set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused_bits = {2: 4, 3: 2}[len(segment) % 4]
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | ((1 << unused_bits) - 1)]


async def test_a_signature_whose_length_leaves_unused_bits(client, signed_in):
    # HS256 signatures are 32 bytes: 43 characters, the last carrying 2 unused bits.
    _, claims = signed_in

    assert len(sign(claims).split(".")[2]) % 4 == 3


@pytest.mark.parametrize(
    "respell",
    [
        lambda token: token + "=",
        lambda token: token + "==",
        lambda token: token + "\xff",
        lambda token: token + "\x85",
        lambda token: token.rsplit(".", 1)[0] + "." + flip_unused_low_bits(token.rsplit(".", 1)[1]),
    ],
    ids=["padding", "double-padding", "non-ascii-byte", "c1-control", "flipped-unused-bits"],
)
async def test_another_spelling_of_a_valid_token_is_401(client, signed_in, respell):
    _, claims = signed_in
    token = sign(claims)
    respelled = respell(token)
    # python-jose alone takes it for the same token: the check has to come before it.
    assert respelled != token
    assert jwt.decode(respelled, TEST_SECRET_KEY, algorithms=["HS256"]) == claims

    response = await client.get(ME, headers={"Authorization": f"Bearer {respelled}".encode("latin-1")})

    assert response.status_code == 401
    assert response.json()["code"] == "TOKEN_INVALID"


async def test_a_segment_of_a_length_base64_cannot_have_is_401(client, signed_in):
    _, claims = signed_in

    await assert_rejected(client, sign(claims) + "AA")


async def test_a_token_seen_before_is_refused_once_it_expires(client, signed_in, monkeypatch):
    """Verified tokens are remembered per worker; their expiry is still checked on every request."""
    _, claims = signed_in
    token = sign(claims)
    assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 200

    monkeypatch.setattr(auth_jwt, "now_in_seconds", lambda: claims["exp"] + 1)

    await assert_rejected(client, token, "TOKEN_EXPIRED")


async def test_a_token_seen_before_is_refused_once_its_session_is_revoked(client, signed_in, db):
    """Remembering a verified signature decides nothing about the session: it is read every time."""
    _, claims = signed_in
    token = sign(claims)
    assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 200

    await db.execute(update(AuthSession).values(revoked_at=datetime.now(UTC)))
    await db.commit()

    await assert_rejected(client, token, "SESSION_REVOKED")
