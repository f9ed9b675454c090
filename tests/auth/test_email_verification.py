"""Verified addresses: registration mails a link, following it verifies the address; where
verification is required, an unverified account signs in and reads but neither creates studies nor
accepts invitations. Registering through an invitation's link verifies the address at once."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from src.auth.config import AuthSettings, auth_settings
from src.auth.models import LinkToken, User
from src.constants import Environment
from src.database import SessionFactory, utcnow
from src.invitations.models import Invitation
from src.mail.composers import COMPOSERS
from src.mail.constants import MailKind
from src.mail.models import OutboxMail
from src.mail.service import deliver_due_mails
from src.study.models import StudyMember
from src.third_party.mail import SmtpTransport
from tests.conftest import DEFAULT_PASSWORD, assert_problem, bearer, link_token, send_kept_mails
from tests.smtp_server import SmtpTestServer

REGISTER = "/api/v1/auth/register"
VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/verify-email/resend"
ME = "/api/v1/auth/me"
STUDIES = "/api/v1/studies"
PAGE = "/verify-email"


@pytest.fixture
def verification_required(monkeypatch):
    monkeypatch.setattr(auth_settings, "REQUIRE_EMAIL_VERIFICATION", True)


async def deliver(smtp: SmtpTestServer):
    return await deliver_due_mails(
        transport=SmtpTransport(smtp.url(), timeout=5), composers=COMPOSERS, max_mails=50
    )


async def register(client, email: str = "ada@example.org", **more) -> dict:
    """Self-registration answers 202 (the same for any address); through an invitation's link, 201
    with the account."""
    body = {"email": email, "password": DEFAULT_PASSWORD, "full_name": "Ada Lovelace", **more}
    response = await client.post(REGISTER, json=body)
    assert response.status_code == (201 if "invitation_token" in more else 202), response.text
    return response.json()


async def sign_in(client, email: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", data={"username": email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 200, response.text
    return bearer(response.json())


async def verification_token() -> str:
    (mail,) = [mail for mail in await send_kept_mails() if PAGE in mail.text]
    return link_token(mail.text, PAGE)


def new_study(code: str = "VER-1") -> dict:
    return {"code": code, "title": "A study", "sample_fields": []}


@pytest.mark.parametrize(
    ("environment", "required"),
    [
        (Environment.DEVELOPMENT, False),
        (Environment.TEST, False),
        (Environment.STAGING, True),
        (Environment.PRODUCTION, True),
    ],
)
def test_verification_is_required_by_default_in_staging_and_production_only(environment, required):
    assert AuthSettings(ENVIRONMENT=environment).requires_email_verification is required
    assert AuthSettings(
        ENVIRONMENT=environment, REQUIRE_EMAIL_VERIFICATION=not required
    ).requires_email_verification is (not required)


async def test_registration_mails_a_link_that_verifies_the_address(client, smtp_server):
    await register(client, "Ada@Example.org")
    await deliver(smtp_server)

    unverified = await client.get("/api/v1/auth/me", headers=await sign_in(client, "ada@example.org"))
    assert unverified.json()["email_verified_at"] is None
    (delivered,) = smtp_server.messages
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert delivered.message["Subject"] == "Verify your Studybase email address"
    text = delivered.message.get_body(("plain",)).get_content()
    assert f"within {auth_settings.EMAIL_VERIFICATION_TOKEN_HOURS} hours" in text
    token = link_token(text, PAGE)
    assert len(token) == 43

    verified = await client.post(VERIFY, json={"token": token})

    assert verified.status_code == 204, verified.text
    me = (await client.get(ME, headers=await sign_in(client, "ada@example.org"))).json()
    assert me["email_verified_at"] is not None
    assert_problem(await client.post(VERIFY, json={"token": token}), 422, "VERIFICATION_TOKEN_INVALID")


async def test_an_accounts_link_ignores_a_password_sent_along(client):
    """Only a registration's link sets a password; an account's link leaves its password alone."""
    await register(client)

    verified = await client.post(
        VERIFY, json={"token": await verification_token(), "password": "another passphrase"}
    )

    assert verified.status_code == 204, verified.text
    me = (await client.get(ME, headers=await sign_in(client, "ada@example.org"))).json()
    assert me["email_verified_at"] is not None
    refused = await client.post(
        "/api/v1/auth/token", data={"username": "ada@example.org", "password": "another passphrase"}
    )
    assert_problem(refused, 401, "INVALID_CREDENTIALS")


async def test_an_unverified_account_reads_but_neither_creates_nor_accepts(
    client, verification_required, make_user, make_study, auth_headers
):
    """An account made before addresses had to be verified (registration no longer makes one)."""
    await make_user(email="ada@example.org", password=DEFAULT_PASSWORD, verified=False)
    headers = await sign_in(client, "ada@example.org")
    assert (await client.post(RESEND, headers=headers)).status_code == 202
    owner = await make_user()
    study = await make_study(owner=owner)
    await client.post(
        f"{STUDIES}/{study.id}/members",
        json={"email": "ada@example.org", "role": "viewer"},
        headers=await auth_headers(owner),
    )
    mails = await send_kept_mails()
    invitation_mail = next(mail for mail in mails if "/invitations#" in mail.text)
    verification_mail = next(mail for mail in mails if f"{PAGE}#" in mail.text)
    invitation_token = link_token(invitation_mail.text, "/invitations")
    invitation_id = (
        await client.get(f"{STUDIES}/{study.id}/invitations", headers=await auth_headers(owner))
    ).json()["items"][0]["id"]

    assert (await client.get(ME, headers=headers)).status_code == 200
    assert (await client.get(STUDIES, headers=headers)).status_code == 200
    assert_problem(await client.post(STUDIES, json=new_study(), headers=headers), 403, "EMAIL_NOT_VERIFIED")
    refused = [
        await client.post("/api/v1/invitations/accept", json={"token": invitation_token}, headers=headers),
        await client.get("/api/v1/invitations", headers=headers),
        await client.post(f"/api/v1/invitations/{invitation_id}/accept", headers=headers),
        await client.post(f"/api/v1/invitations/{invitation_id}/decline", headers=headers),
    ]
    for response in refused:
        assert_problem(response, 403, "EMAIL_NOT_VERIFIED")

    verify = {"token": link_token(verification_mail.text, PAGE)}
    assert (await client.post(VERIFY, json=verify)).status_code == 204

    assert (await client.post(STUDIES, json=new_study(), headers=headers)).status_code == 201
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation_token}, headers=headers
    )
    assert accepted.status_code == 200, accepted.text


async def test_without_the_requirement_an_unverified_account_works_as_before(client):
    await register(client)
    headers = await sign_in(client, "ada@example.org")

    assert (await client.post(STUDIES, json=new_study(), headers=headers)).status_code == 201


async def test_a_resend_mails_a_new_link_and_kills_the_old_one(client):
    await register(client)
    first = await verification_token()
    headers = await sign_in(client, "ada@example.org")

    resent = await client.post(RESEND, headers=headers)
    second = await verification_token()

    assert resent.status_code == 202, resent.text
    assert resent.json() == {"detail": "A new verification link is on its way to your address."}
    assert_problem(await client.post(VERIFY, json={"token": first}), 422, "VERIFICATION_TOKEN_INVALID")
    assert (await client.post(VERIFY, json={"token": second})).status_code == 204


async def test_resending_is_limited_per_account(client):
    await register(client)
    headers = await sign_in(client, "ada@example.org")
    for _ in range(auth_settings.EMAIL_VERIFICATION_MAX_REQUESTS):
        assert (await client.post(RESEND, headers=headers)).status_code == 202

    limited = await client.post(RESEND, headers=headers)

    assert_problem(limited, 429, "VERIFICATION_MAIL_LIMITED")
    assert 0 < int(limited.headers["retry-after"]) <= auth_settings.LOGIN_LOCKOUT_MINUTES * 60
    async with SessionFactory() as session:
        queued = await session.scalar(
            select(func.count()).select_from(OutboxMail).where(OutboxMail.kind == MailKind.EMAIL_VERIFICATION)
        )
    assert queued == 1 + auth_settings.EMAIL_VERIFICATION_MAX_REQUESTS


async def test_a_verified_account_gets_409_for_a_resend(client, make_user, auth_headers):
    user = await make_user()

    assert_problem(await client.post(RESEND, headers=await auth_headers(user)), 409, "EMAIL_ALREADY_VERIFIED")


async def test_an_expired_verification_token_is_refused(client):
    await register(client)
    token = await verification_token()
    async with SessionFactory() as session:
        await session.execute(update(LinkToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    assert_problem(await client.post(VERIFY, json={"token": token}), 422, "VERIFICATION_TOKEN_INVALID")


async def test_a_reset_token_does_not_verify(client, make_user):
    user = await make_user(verified=False)
    await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    (mail,) = await send_kept_mails()

    response = await client.post(VERIFY, json={"token": link_token(mail.text, "/reset-password")})

    assert_problem(response, 422, "VERIFICATION_TOKEN_INVALID")


# Registering through an invitation's link


async def invitation_for(client, make_user, make_study, auth_headers, email: str) -> tuple[object, str]:
    owner = await make_user()
    study = await make_study(owner=owner)
    invited = await client.post(
        f"{STUDIES}/{study.id}/members",
        json={"email": email, "role": "editor"},
        headers=await auth_headers(owner),
    )
    assert invited.status_code == 202, invited.text
    (mail,) = await send_kept_mails()
    return study, link_token(mail.text, "/invitations")


async def test_registering_through_the_invitation_link_verifies_and_joins(
    client, make_user, make_study, auth_headers, verification_required, monkeypatch
):
    monkeypatch.setattr(auth_settings, "OPEN_REGISTRATION", False)  # invited addresses still register
    study, token = await invitation_for(client, make_user, make_study, auth_headers, "grace@example.org")

    registered = await register(client, "GRACE@example.org", invitation_token=token)

    assert registered["email_verified_at"] is not None
    headers = await sign_in(client, "grace@example.org")
    assert (await client.get(f"{STUDIES}/{study.id}", headers=headers)).json()["my_role"] == "editor"
    assert (await client.post(STUDIES, json=new_study(), headers=headers)).status_code == 201
    assert await send_kept_mails() == []  # no verification mail: the address is verified
    async with SessionFactory() as session:
        assert (await session.scalar(select(Invitation.status))) == "accepted"


async def test_registering_with_an_invitation_for_another_address_creates_nothing(
    client, make_user, make_study, auth_headers
):
    _, token = await invitation_for(client, make_user, make_study, auth_headers, "grace@example.org")

    response = await client.post(
        REGISTER,
        json={
            "email": "mallory@example.org",
            "password": DEFAULT_PASSWORD,
            "full_name": "M",
            "invitation_token": token,
        },
    )

    assert_problem(response, 403, "INVITATION_FOR_ANOTHER_ADDRESS")
    async with SessionFactory() as session:
        assert await session.scalar(select(User).where(User.email == "mallory@example.org")) is None


async def test_registering_with_a_dead_invitation_token_creates_nothing(client, monkeypatch):
    monkeypatch.setattr(auth_settings, "OPEN_REGISTRATION", False)

    response = await client.post(
        REGISTER,
        json={
            "email": "grace@example.org",
            "password": DEFAULT_PASSWORD,
            "full_name": "G",
            "invitation_token": "x" * 43,
        },
    )

    assert_problem(response, 422, "INVITATION_TOKEN_INVALID")
    async with SessionFactory() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0
        assert await session.scalar(select(func.count()).select_from(StudyMember)) == 0


async def test_registration_stays_closed_without_an_invitation(client, monkeypatch):
    monkeypatch.setattr(auth_settings, "OPEN_REGISTRATION", False)

    response = await client.post(
        REGISTER, json={"email": "grace@example.org", "password": DEFAULT_PASSWORD, "full_name": "G"}
    )

    assert_problem(response, 403, "REGISTRATION_CLOSED")
