"""Self-registration: the same 202 for a new address and a taken one, so nobody learns who is
registered; the mailbox says which (a verification link, or "someone tried"), through a real SMTP
server here."""

import asyncio
import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from src import database
from src.auth import service as auth_service
from src.auth import utils
from src.auth.config import auth_settings
from src.auth.constants import REGISTRATION_REQUESTED
from src.auth.models import LoginThrottle, User
from src.constants import Environment
from src.database import SessionFactory
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.mail.constants import MailKind, MailStatus
from src.mail.models import OutboxMail
from src.mail.service import deliver_due_mails
from src.third_party.mail import SmtpTransport
from tests.conftest import DEFAULT_PASSWORD, assert_problem, link_token

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
# What may differ between two answers that say the same thing.
PER_RESPONSE_HEADERS = {"x-request-id", "date"}


def registration(**overrides):
    return {
        "email": "ada@example.org",
        "password": "analytical engine",
        "full_name": "Ada Lovelace",
    } | overrides


async def register(client, **overrides):
    response = await client.post(REGISTER, json=registration(**overrides))
    assert response.status_code == 202, response.text
    return response


async def users() -> list[User]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(User).order_by(User.created_at)))


async def outbox() -> list[OutboxMail]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(OutboxMail).order_by(OutboxMail.created_at)))


async def sign_in(client, email: str, password: str):
    return await client.post(TOKEN, data={"username": email, "password": password})


async def deliver(smtp):
    return await deliver_due_mails(
        transport=SmtpTransport(smtp.url(), timeout=5), composers=COMPOSERS, max_mails=50
    )


def same_answer(first, second) -> None:
    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert {k: v for k, v in first.headers.items() if k not in PER_RESPONSE_HEADERS} == {
        k: v for k, v in second.headers.items() if k not in PER_RESPONSE_HEADERS
    }


# A new address


async def test_a_new_address_gets_an_unverified_researcher_and_a_verification_mail(client):
    response = await register(client)

    assert response.json() == {"detail": REGISTRATION_REQUESTED}
    assert "location" not in response.headers
    (stored,) = await users()
    assert (stored.email, stored.full_name, stored.role) == ("ada@example.org", "Ada Lovelace", "researcher")
    assert stored.email_verified_at is None
    assert stored.password_hash.startswith("$argon2id$")
    assert "analytical engine" not in stored.password_hash
    assert [(row.kind, row.recipient) for row in await outbox()] == [
        (MailKind.EMAIL_VERIFICATION, "ada@example.org")
    ]
    assert (await sign_in(client, "ada@example.org", "analytical engine")).status_code == 200


async def test_the_new_address_is_mailed_a_verification_link_that_works(client, smtp_server):
    await register(client, email="  Ada@Example.ORG ")

    await deliver(smtp_server)

    (delivered,) = smtp_server.messages
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert delivered.message["Subject"] == "Verify your Studybase email address"
    token = link_token(delivered.message.get_body(("plain",)).get_content(), "/verify-email")
    assert (await client.post("/api/v1/auth/verify-email", json={"token": token})).status_code == 204
    (stored,) = await users()
    assert stored.email_verified_at is not None


# A taken address


async def test_a_taken_address_in_any_case_gets_the_same_answer_and_no_second_account(client, make_user):
    owner = await make_user(email="ada@example.org", password=DEFAULT_PASSWORD)

    response = await register(client, email="ADA@example.org", password="another passphrase")

    assert response.json() == {"detail": REGISTRATION_REQUESTED}
    assert "location" not in response.headers
    assert [user.id for user in await users()] == [owner.id]
    assert [(row.kind, row.recipient) for row in await outbox()] == [
        (MailKind.REGISTRATION_ATTEMPT, "ada@example.org")
    ]
    # The owner's account is untouched: the old password still signs in, the new one does not.
    assert (await sign_in(client, owner.email, DEFAULT_PASSWORD)).status_code == 200
    assert_problem(await sign_in(client, owner.email, "another passphrase"), 401, "INVALID_CREDENTIALS")


async def test_the_owner_of_a_taken_address_is_mailed_that_someone_tried(client, make_user, smtp_server):
    await make_user(email="ada@example.org", full_name="Ada <b>Lovelace</b>")

    await register(client, full_name="Mallory")
    counts = await deliver(smtp_server)

    assert counts.sent == 1
    (delivered,) = smtp_server.messages
    message = delivered.message
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert message["Subject"] == "Someone tried to create a Studybase account with your address"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Ada <b>Lovelace</b>" in text
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html
    assert "Mallory" not in text  # nothing the caller typed reaches the owner
    assert f"{mail_settings.PUBLIC_URL}/reset-password" in text
    assert f'href="{mail_settings.PUBLIC_URL}/reset-password"' in html
    assert f'href="{mail_settings.PUBLIC_URL}/"' in html
    assert len(await users()) == 1


async def test_an_inactive_account_gets_no_note(client, make_user, smtp_server):
    await make_user(email="ada@example.org", is_active=False)

    await register(client)
    await deliver(smtp_server)

    assert smtp_server.messages == []
    assert [row.status for row in await outbox()] == [MailStatus.DROPPED]


# Nothing says who is registered: with verification required (a pending registration for a new
# address) or not (the account at once), the answer, the hashing and the time are the same.


@pytest.fixture(params=[False, True], ids=["verification-off", "verification-required"])
def verification(request, monkeypatch) -> bool:
    monkeypatch.setattr(auth_settings, "REQUIRE_EMAIL_VERIFICATION", request.param)
    return request.param


async def test_new_and_taken_addresses_get_identical_status_body_and_headers(client, make_user, verification):
    await make_user(email="taken@example.org")

    taken = await register(client, email="taken@example.org")
    new = await register(client, email="new@example.org")

    same_answer(taken, new)


async def test_new_and_taken_addresses_cost_one_password_hash_each(
    client, make_user, monkeypatch, verification
):
    """The slowest step runs for both: skipping it for a taken address would show in the time."""
    await make_user(email="taken@example.org")
    hashed = []
    real_hash = utils.hash_password
    monkeypatch.setattr(utils, "hash_password", lambda secret: hashed.append(secret) or real_hash(secret))

    await register(client, email="taken@example.org", password="first passphrase")
    await register(client, email="new@example.org", password="second passphrase")

    assert hashed == ["first passphrase", "second passphrase"]


async def test_new_and_taken_addresses_take_about_the_same_time(client, make_user, verification):
    """Medians over a few tries each, interleaved, as for password reset; the bound is generous (a
    shared machine), the point is that no step (a hash, a write) runs for one kind only."""
    tries = 7
    taken_users = [await make_user() for _ in range(tries)]
    taken_times, new_times = [], []
    await register(client, email="warm-up@example.org")
    for number, user in enumerate(taken_users):
        for email, times in ((user.email, taken_times), (f"new{number}@example.org", new_times)):
            started = time.perf_counter()
            await register(client, email=email)
            times.append(time.perf_counter() - started)

    taken, new = statistics.median(taken_times), statistics.median(new_times)
    assert max(taken, new) < 1.5 * min(taken, new) + 0.005, (taken, new)


async def test_registration_holds_no_database_connection_while_hashing(
    client, make_user, monkeypatch, verification
):
    await make_user(email="taken@example.org")
    held = []
    real_hash = utils.hash_password
    monkeypatch.setattr(
        utils,
        "hash_password",
        lambda password: held.append(database.engine.sync_engine.pool.checkedout()) or real_hash(password),
    )

    await register(client, email="taken@example.org")
    await register(client, email="new@example.org")

    assert held == [0, 0]


# Races


async def test_losing_the_race_on_the_unique_index_is_the_same_202_and_one_account(client, db, monkeypatch):
    await register(client)
    real_lookup, lookups = auth_service._user_with_normalized_email, []

    async def first_lookup_misses(*args, **kwargs):
        lookups.append(1)  # the first check runs before the other registration commits
        return None if len(lookups) == 1 else await real_lookup(*args, **kwargs)

    monkeypatch.setattr(auth_service, "_user_with_normalized_email", first_lookup_misses)
    response = await register(client, full_name="Second Ada")

    assert response.json() == {"detail": REGISTRATION_REQUESTED}
    (stored,) = await users()
    assert stored.full_name == "Ada Lovelace"
    kinds = [row.kind for row in await outbox()]
    assert kinds == [MailKind.EMAIL_VERIFICATION, MailKind.REGISTRATION_ATTEMPT]


async def test_two_registrations_of_one_address_at_once_are_both_202_with_one_account(client):
    first, second = await asyncio.gather(
        client.post(REGISTER, json=registration(full_name="First")),
        client.post(REGISTER, json=registration(full_name="Second")),
    )

    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    same_answer(first, second)
    assert len(await users()) == 1
    assert sorted(row.kind for row in await outbox()) == sorted(
        [MailKind.EMAIL_VERIFICATION, MailKind.REGISTRATION_ATTEMPT]
    )


# Limits and refusals, the same for every address


async def test_an_address_may_register_a_few_times_then_gets_429_new_or_taken(client, make_user):
    await make_user(email="taken@example.org")
    for email in ("taken@example.org", "new@example.org"):
        for _ in range(auth_settings.REGISTRATION_MAX_REQUESTS):
            await register(client, email=email)

        refused = await client.post(REGISTER, json=registration(email=email))

        assert_problem(refused, 429, "REGISTRATION_LIMITED")
        assert 0 < int(refused.headers["retry-after"]) <= auth_settings.LOGIN_LOCKOUT_MINUTES * 60 + 1
    notes = [row for row in await outbox() if row.kind == MailKind.REGISTRATION_ATTEMPT]
    # taken: every allowed try; new: every try after the first (which made the account).
    assert len(notes) == 2 * auth_settings.REGISTRATION_MAX_REQUESTS - 1
    assert len(await users()) == 2


async def test_the_limit_renews_once_the_window_has_passed(client, make_user):
    await make_user(email="taken@example.org")
    for _ in range(auth_settings.REGISTRATION_MAX_REQUESTS):
        await register(client, email="taken@example.org")
    async with SessionFactory() as session:
        await session.execute(
            update(LoginThrottle).values(
                last_attempt_at=database.utcnow() - timedelta(minutes=auth_settings.LOGIN_LOCKOUT_MINUTES + 1)
            )
        )
        await session.commit()

    await register(client, email="taken@example.org")


async def test_register_closed_is_403_for_every_address_and_writes_nothing(client, make_user, monkeypatch):
    await make_user(email="taken@example.org")
    monkeypatch.setattr(auth_settings, "OPEN_REGISTRATION", False)

    for email in ("taken@example.org", "new@example.org"):
        refused = await client.post(REGISTER, json=registration(email=email))
        assert_problem(refused, 403, "REGISTRATION_CLOSED")
    assert len(await users()) == 1
    assert await outbox() == []


async def test_without_a_mail_service_registration_is_503_for_every_address(client, make_user, monkeypatch):
    """The answer sends the caller to their mailbox: where no mail leaves, it would be a lie."""
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)
    await make_user(email="taken@example.org")

    for email in ("taken@example.org", "new@example.org"):
        refused = await client.post(REGISTER, json=registration(email=email))
        assert_problem(refused, 503, "MAIL_NOT_CONFIGURED")
    assert len(await users()) == 1
    async with SessionFactory() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMail)) == 0


# Input


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
    await register(client, password="p" * 1024)

    assert len(await users()) == 1


async def test_control_characters_in_a_name_are_422_not_a_database_error(client, db):
    response = await client.post(REGISTER, json=registration(full_name="Ada\x00Lovelace"))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "full_name"]
    assert await db.scalar(select(User)) is None


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
    await register(client, full_name="\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645")

    (stored,) = await users()
    assert stored.full_name == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
