"""Where addresses must be verified, self-registration makes no account until the mailed link is
followed: register + sign in cannot tell a new address from a taken one (both 401 until then), the
link makes the verified account, a newer registration kills the older link, an account made
meanwhile kills the link, and expired registrations are pruned. Mails go through a real SMTP server."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import main
from src.auth import registration
from src.auth import service as auth_service
from src.auth.config import auth_settings
from src.auth.models import PendingRegistration, User
from src.database import SessionFactory, utcnow
from src.mail.constants import MailKind, MailStatus
from tests.auth.test_email_verification import invitation_for
from tests.auth.test_register import deliver, outbox, register, sign_in, users
from tests.auth.test_register import registration as registration_body
from tests.conftest import DEFAULT_PASSWORD, assert_problem, link_token

VERIFY = "/api/v1/auth/verify-email"
PAGE = "/verify-email"
SUBJECT = "Confirm your address to create your Studybase account"


@pytest.fixture(autouse=True)
def verification_required(monkeypatch):
    monkeypatch.setattr(auth_settings, "REQUIRE_EMAIL_VERIFICATION", True)


async def pending_rows() -> list[PendingRegistration]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(PendingRegistration)))


async def mailed_token(smtp, email: str = "ada@example.org") -> str:
    """The token of the newest registration link delivered to `email`."""
    await deliver(smtp)
    (delivered, *_) = [
        item
        for item in reversed(smtp.messages)
        if item.rcpt_tos == [email] and item.message["Subject"] == SUBJECT
    ]
    return link_token(delivered.message.get_body(("plain",)).get_content(), PAGE)


REGISTERED_PASSWORD = "analytical engine"


def link(token: str, password: str = REGISTERED_PASSWORD) -> dict:
    """A registration link's body: the link's holder chooses the account's password."""
    return {"token": token, "password": password}


def problem_without_request_id(response) -> tuple[int, dict]:
    return response.status_code, {k: v for k, v in response.json().items() if k != "request_id"}


async def test_registering_makes_no_account_only_a_pending_registration_and_its_mail(client):
    await register(client, email=" Ada@Example.ORG ")

    assert await users() == []
    (pending,) = await pending_rows()
    assert (pending.email, pending.full_name) == ("ada@example.org", "Ada Lovelace")
    assert not hasattr(pending, "password_hash")  # the password is chosen at the link
    assert pending.token_hash is None  # made with its mail, when the mail is sent
    lifetime = pending.expires_at - pending.created_at
    assert lifetime == timedelta(hours=auth_settings.EMAIL_VERIFICATION_TOKEN_HOURS)
    assert [(row.kind, row.recipient) for row in await outbox()] == [
        (MailKind.REGISTRATION_LINK, "ada@example.org")
    ]


async def test_signing_in_before_the_link_fails_exactly_as_for_a_taken_address(client, make_user):
    """Register address X with password P, then sign in with P: 401 alike for a new X and a taken X."""
    await make_user(email="taken@example.org", password=DEFAULT_PASSWORD)
    await register(client, email="taken@example.org", password="chosen passphrase")
    await register(client, email="new@example.org", password="chosen passphrase")

    taken = await sign_in(client, "taken@example.org", "chosen passphrase")
    new = await sign_in(client, "new@example.org", "chosen passphrase")

    assert_problem(new, 401, "INVALID_CREDENTIALS")
    assert problem_without_request_id(taken) == problem_without_request_id(new)
    assert taken.headers.get("www-authenticate") == new.headers.get("www-authenticate")
    assert [user.email for user in await users()] == ["taken@example.org"]


async def test_the_mailed_link_makes_the_verified_account_then_sign_in_works(client, smtp_server):
    await register(client, full_name="Ada <b>Lovelace</b>")
    await deliver(smtp_server)

    (delivered,) = smtp_server.messages
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert delivered.message["Subject"] == SUBJECT
    text = delivered.message.get_body(("plain",)).get_content()
    assert "Ada <b>Lovelace</b>" in text
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in delivered.message.get_body(("html",)).get_content()
    assert f"within {auth_settings.EMAIL_VERIFICATION_TOKEN_HOURS} hours" in text
    token = link_token(text, PAGE)

    verified = await client.post(VERIFY, json=link(token))

    assert (verified.status_code, verified.content) == (204, b"")
    (user,) = await users()
    assert (user.email, user.full_name, user.role) == ("ada@example.org", "Ada <b>Lovelace</b>", "researcher")
    assert user.email_verified_at is not None
    assert await pending_rows() == []
    signed_in = await sign_in(client, "ada@example.org", "analytical engine")
    assert signed_in.status_code == 200, signed_in.text
    created = await client.post(
        "/api/v1/studies",
        json={"code": "PEND-1", "title": "A study", "sample_fields": []},
        headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
    )
    assert created.status_code == 201, created.text
    assert_problem(await client.post(VERIFY, json=link(token)), 422, "VERIFICATION_TOKEN_INVALID")
    assert len(await users()) == 1


async def test_a_newer_registration_replaces_the_older_and_kills_its_link(client, smtp_server):
    await register(client, full_name="First Ada", password="first passphrase")
    first = await mailed_token(smtp_server)
    await register(client, full_name="Second Ada", password="second passphrase")
    second = await mailed_token(smtp_server)

    (pending,) = await pending_rows()
    assert pending.full_name == "Second Ada"
    assert_problem(await client.post(VERIFY, json=link(first)), 422, "VERIFICATION_TOKEN_INVALID")
    assert (await client.post(VERIFY, json=link(second, "link passphrase"))).status_code == 204
    (user,) = await users()
    assert user.full_name == "Second Ada"
    assert (await sign_in(client, "ada@example.org", "link passphrase")).status_code == 200
    for registered in ("first passphrase", "second passphrase"):
        assert_problem(await sign_in(client, "ada@example.org", registered), 401, "INVALID_CREDENTIALS")


async def test_whoever_registers_last_cannot_choose_the_password_of_the_owners_account(client, smtp_server):
    """V registers; A registers V's address with A's password; V follows the newest link with V's
    password: the account takes V's password, never A's, and V's older link is dead."""
    await register(client, password="victim passphrase")
    victims_link = await mailed_token(smtp_server)
    await register(client, password="attacker passphrase")
    newest = await mailed_token(smtp_server)

    assert_problem(
        await client.post(VERIFY, json=link(victims_link, "victim passphrase")),
        422,
        "VERIFICATION_TOKEN_INVALID",
    )
    assert (await client.post(VERIFY, json=link(newest, "victim passphrase"))).status_code == 204

    assert (await sign_in(client, "ada@example.org", "victim passphrase")).status_code == 200
    assert_problem(
        await sign_in(client, "ada@example.org", "attacker passphrase"), 401, "INVALID_CREDENTIALS"
    )


async def test_a_registration_link_without_a_password_is_refused_and_still_works(client, smtp_server):
    await register(client)
    token = await mailed_token(smtp_server)

    missing = await client.post(VERIFY, json={"token": token})
    explicit_null = await client.post(VERIFY, json={"token": token, "password": None})

    assert_problem(missing, 422, "PASSWORD_REQUIRED")
    assert_problem(explicit_null, 422, "PASSWORD_REQUIRED")
    assert await users() == []
    assert (await client.post(VERIFY, json=link(token, "chosen at the link"))).status_code == 204
    assert (await sign_in(client, "ada@example.org", "chosen at the link")).status_code == 200


async def test_a_weak_password_at_the_link_is_refused_by_the_policy_and_the_link_still_works(
    client, smtp_server
):
    await register(client)
    token = await mailed_token(smtp_server)

    weak = await client.post(VERIFY, json=link(token, "short"))

    assert_problem(weak, 422, "VALIDATION_ERROR")
    assert any(error["loc"][-1] == "password" for error in weak.json()["errors"])
    assert await users() == []
    assert (await client.post(VERIFY, json=link(token))).status_code == 204


async def test_an_older_registration_mail_still_waiting_is_not_sent(client, smtp_server):
    await register(client, full_name="First Ada")
    await register(client, full_name="Second Ada")

    await deliver(smtp_server)

    (delivered,) = smtp_server.messages
    assert "Second Ada" in delivered.message.get_body(("plain",)).get_content()
    assert sorted(row.status for row in await outbox()) == sorted([MailStatus.DROPPED, MailStatus.SENT])


async def test_two_registrations_of_a_new_address_at_once_leave_one_pending_row(client):
    answers = await asyncio.gather(
        client.post("/api/v1/auth/register", json=registration_body(full_name="First")),
        client.post("/api/v1/auth/register", json=registration_body(full_name="Second")),
    )

    assert [answer.status_code for answer in answers] == [202, 202]
    assert len(await pending_rows()) == 1
    assert await users() == []


async def test_an_account_made_meanwhile_kills_the_link_like_any_dead_token(client, smtp_server, make_user):
    await register(client)
    token = await mailed_token(smtp_server)
    admin_made = await make_user(email="ada@example.org")
    dead = await client.post(VERIFY, json=link("x" * 43))

    refused = await client.post(VERIFY, json=link(token))

    assert_problem(refused, 422, "VERIFICATION_TOKEN_INVALID")
    assert problem_without_request_id(refused) == problem_without_request_id(dead)
    assert [user.id for user in await users()] == [admin_made.id]
    assert await pending_rows() == []  # the dead registration went with the refusal


async def test_an_account_registered_meanwhile_through_an_invitation_kills_the_link(
    client, smtp_server, make_user, make_study, auth_headers
):
    await register(client, email="grace@example.org", password="pending passphrase")
    token = await mailed_token(smtp_server, "grace@example.org")
    _, invitation = await invitation_for(client, make_user, make_study, auth_headers, "grace@example.org")
    body = registration_body(
        email="grace@example.org", password=DEFAULT_PASSWORD, invitation_token=invitation
    )
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201

    assert_problem(await client.post(VERIFY, json=link(token)), 422, "VERIFICATION_TOKEN_INVALID")
    assert [user.email for user in await users() if user.email == "grace@example.org"] == [
        "grace@example.org"
    ]
    assert (await sign_in(client, "grace@example.org", DEFAULT_PASSWORD)).status_code == 200
    assert_problem(
        await sign_in(client, "grace@example.org", "pending passphrase"), 401, "INVALID_CREDENTIALS"
    )


async def test_the_unique_index_refuses_an_account_that_appears_at_the_last_moment(
    client, smtp_server, make_user, monkeypatch
):
    await register(client)
    token = await mailed_token(smtp_server)
    admin_made = await make_user(email="ada@example.org")
    real_lookup = auth_service.get_user_by_email

    async def misses_the_account(*args, **kwargs):  # as if made after the lookup, before the insert
        return None

    monkeypatch.setattr(auth_service, "get_user_by_email", misses_the_account)
    refused = await client.post(VERIFY, json=link(token))
    monkeypatch.setattr(auth_service, "get_user_by_email", real_lookup)

    assert_problem(refused, 422, "VERIFICATION_TOKEN_INVALID")
    assert [user.id for user in await users()] == [admin_made.id]


async def test_no_registration_mail_leaves_once_the_address_has_an_account(client, smtp_server, make_user):
    await register(client)
    await make_user(email="ada@example.org")

    await deliver(smtp_server)

    assert smtp_server.messages == []
    assert [row.status for row in await outbox()] == [MailStatus.DROPPED]


async def test_an_expired_registration_link_is_dead_and_pruned(client, smtp_server):
    await register(client)
    token = await mailed_token(smtp_server)
    await register(client, email="later@example.org")
    async with SessionFactory() as session:
        await session.execute(
            update(PendingRegistration)
            .where(PendingRegistration.email == "ada@example.org")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()

    assert_problem(await client.post(VERIFY, json=link(token)), 422, "VERIFICATION_TOKEN_INVALID")
    assert await users() == []
    async with SessionFactory() as session:
        pruned = await registration.prune_expired_registrations(session, max_rows=10, batch_rows=1)
    assert pruned == 1
    assert [row.email for row in await pending_rows()] == ["later@example.org"]


async def test_python_main_prune_counts_expired_registrations(client):
    await register(client)
    async with SessionFactory() as session:
        await session.execute(update(PendingRegistration).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    message = await main.prune(batch_rows=100, max_rows=1000)

    assert "1 expired pending registrations" in message
    assert await pending_rows() == []


async def test_without_the_requirement_registration_makes_the_account_at_once(client, monkeypatch):
    """Development's default: the point is signing in right after registering, so this setting
    cannot hide who is registered (docs/security.md says so)."""
    monkeypatch.setattr(auth_settings, "REQUIRE_EMAIL_VERIFICATION", False)

    await register(client)

    assert await pending_rows() == []
    assert [user.email for user in await users()] == ["ada@example.org"]
    assert (await sign_in(client, "ada@example.org", "analytical engine")).status_code == 200


async def test_a_registration_link_does_not_verify_another_account(client, smtp_server, make_user):
    """A registration's token lives on its pending row, not in link_tokens: it only ever makes its
    own address's account."""
    other = await make_user(email="other@example.org", verified=False)
    await register(client)
    token = await mailed_token(smtp_server)

    assert (await client.post(VERIFY, json=link(token))).status_code == 204
    async with SessionFactory() as session:
        stored = await session.get(User, other.id)
    assert stored is not None
    assert stored.email_verified_at is None
