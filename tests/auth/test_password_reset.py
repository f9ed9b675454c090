"""Password reset by mail, through a real SMTP server: ask, read the mail, follow its link, sign in.

Nothing here says who has an account (same status, body, work and time for any address); a
token works once, only while it is the newest, before any password change and for 30 minutes.
"""

import asyncio
import statistics
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from src.auth.config import auth_settings
from src.auth.constants import PASSWORD_RESET_REQUESTED, LinkTokenPurpose
from src.auth.models import LinkToken, LoginThrottle
from src.auth.utils import hash_secret_token, login_throttle_key
from src.constants import Environment
from src.database import SessionFactory, utcnow
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.mail.constants import MailKind, MailStatus
from src.mail.jobs import send_due_mails
from src.mail.models import OutboxMail
from src.mail.service import deliver_due_mails
from src.third_party.mail import SmtpTransport
from tests.conftest import DEFAULT_PASSWORD, assert_problem, bearer
from tests.smtp_server import Delivered, SmtpTestServer

RESET = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
NEW_PASSWORD = "a brand new passphrase"


async def deliver(smtp: SmtpTestServer, *, now=None):
    return await deliver_due_mails(
        transport=SmtpTransport(smtp.url(), timeout=5), composers=COMPOSERS, max_mails=50, now=now
    )


def link_in(delivered: Delivered) -> str:
    text = delivered.message.get_body(("plain",)).get_content()
    (link,) = [word for word in text.split() if word.startswith(mail_settings.PUBLIC_URL)]
    return link


def token_in(delivered: Delivered) -> str:
    """The token as the page reads it: from the link's fragment, never its query."""
    link = urlsplit(link_in(delivered))
    assert link.path == "/reset-password"
    assert link.query == ""
    (token,) = parse_qs(link.fragment)["token"]
    return token


async def ask_for_reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    response = await client.post(RESET, json={"email": email})
    assert response.status_code == 202, response.text
    return response


async def mailed_token(client, smtp: SmtpTestServer, email: str) -> str:
    before = len(smtp.messages)
    await ask_for_reset(client, email)
    await deliver(smtp)
    assert len(smtp.messages) == before + 1
    return token_in(smtp.messages[-1])


async def confirm(client, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post(CONFIRM, json={"token": token, "new_password": password})


async def sign_in(client, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password})


async def outbox() -> list[OutboxMail]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(OutboxMail).order_by(OutboxMail.created_at)))


# The whole way back in


async def test_a_user_who_forgot_the_password_gets_back_in_from_the_mail_alone(
    client, make_user, smtp_server
):
    user = await make_user(email="ada@example.org", full_name="Ada Lovelace")

    answer = await ask_for_reset(client, "  ADA@example.org ")
    counts = await deliver(smtp_server)

    assert answer.json() == {"detail": PASSWORD_RESET_REQUESTED}
    assert counts.sent == 1
    (delivered,) = smtp_server.messages
    (row,) = await outbox()
    message = delivered.message
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert message["To"] == "ada@example.org"
    assert message["From"] == mail_settings.MAIL_FROM
    assert message["Subject"] == "Reset your Studybase password"
    assert message["Message-ID"].startswith(f"<{row.id}@")
    assert message["Auto-Submitted"] == "auto-generated"
    assert row.status == MailStatus.SENT
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    link = link_in(delivered)
    assert "Ada Lovelace" in text
    assert f"within {auth_settings.PASSWORD_RESET_TOKEN_MINUTES} minutes" in text
    assert f'href="{link}"' in html
    token = token_in(delivered)
    assert len(token) == 43  # 32 random bytes, URL-safe base64

    confirmed = await confirm(client, token)

    assert confirmed.status_code == 204, confirmed.text
    assert (await sign_in(client, user.email, NEW_PASSWORD)).status_code == 200
    assert_problem(await sign_in(client, user.email, DEFAULT_PASSWORD), 401, "INVALID_CREDENTIALS")


async def test_the_link_works_the_moment_the_mail_arrives(client, make_user):
    """The token's hash is committed before the mail is handed over: a reader quicker than the
    sender's own commit (the mail read, the link opened) finds it."""
    user = await make_user()
    await ask_for_reset(client, user.email)
    answers = []

    class ReaderAtTheServer:
        async def send(self, mail):
            (link,) = [word for word in mail.text.split() if "#token=" in word]
            (token,) = parse_qs(urlsplit(link).fragment)["token"]
            answers.append(await confirm(client, token))

    await send_due_mails(max_mails=5, transport=ReaderAtTheServer())

    assert [answer.status_code for answer in answers] == [204]


async def test_a_link_whose_mail_did_not_go_out_is_replaced_by_the_next_attempts(
    client, make_user, smtp_server
):
    user = await make_user()
    await ask_for_reset(client, user.email)
    smtp_server.stop()
    await deliver(smtp_server)
    smtp_server.start()
    (waiting,) = await outbox()

    await deliver(smtp_server, now=waiting.next_attempt_at + timedelta(seconds=1))

    async with SessionFactory() as session:
        (stored,) = (await session.scalars(select(LinkToken))).all()
    assert stored.token_hash == hash_secret_token(token_in(smtp_server.messages[0]))


async def test_the_token_is_stored_only_as_its_hash(client, make_user, smtp_server):
    user = await make_user()

    token = await mailed_token(client, smtp_server, user.email)

    async with SessionFactory() as session:
        (stored,) = (await session.scalars(select(LinkToken))).all()
        rows = await session.execute(select(OutboxMail.params, OutboxMail.last_error))
    assert stored.token_hash == hash_secret_token(token)
    assert stored.purpose == LinkTokenPurpose.PASSWORD_RESET
    assert stored.expires_at - stored.created_at == timedelta(
        minutes=auth_settings.PASSWORD_RESET_TOKEN_MINUTES
    )
    assert token not in str(rows.all())


async def test_a_reset_mails_a_notice_that_the_password_was_changed(client, make_user, smtp_server):
    user = await make_user(full_name="Ada <b>Lovelace</b>")
    token = await mailed_token(client, smtp_server, user.email)

    assert (await confirm(client, token)).status_code == 204
    await deliver(smtp_server)

    notice = smtp_server.messages[-1].message
    assert notice["Subject"] == "Your Studybase password was changed"
    assert notice["To"] == user.email
    text = notice.get_body(("plain",)).get_content()
    html = notice.get_body(("html",)).get_content()
    assert "Ada <b>Lovelace</b>" in text
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;" in html
    assert "<b>" not in html
    assert f"{mail_settings.PUBLIC_URL}/reset-password" in text


async def test_a_name_with_markup_is_escaped_in_the_html_of_the_reset_mail(client, make_user, smtp_server):
    user = await make_user(full_name='<img src=x onerror="alert(1)">')

    await mailed_token(client, smtp_server, user.email)

    html = smtp_server.messages[-1].message.get_body(("html",)).get_content()
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


# Nothing says who has an account


async def test_known_and_unknown_addresses_get_the_same_answer_and_the_same_work(
    client, make_user, smtp_server
):
    user = await make_user()

    known = await ask_for_reset(client, user.email)
    unknown = await ask_for_reset(client, "nobody@example.org")

    assert known.json() == unknown.json() == {"detail": PASSWORD_RESET_REQUESTED}
    ignored = {"x-request-id", "content-length", "date"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }
    rows = await outbox()
    assert [(row.kind, row.status) for row in rows] == [(MailKind.PASSWORD_RESET, MailStatus.PENDING)] * 2
    async with SessionFactory() as session:
        throttles = await session.scalar(select(func.count()).select_from(LoginThrottle))
    assert throttles == 2  # one per address, known or not

    await deliver(smtp_server)

    assert [delivered.rcpt_tos for delivered in smtp_server.messages] == [[user.email]]
    assert sorted(row.status for row in await outbox()) == [MailStatus.DROPPED, MailStatus.SENT]


async def test_known_and_unknown_addresses_take_about_the_same_time(client, make_user):
    """Medians over a few tries each, interleaved; the bound is generous (a shared machine), the
    point is that no step (a lookup, a hash) runs for one kind of address only."""
    tries = 9
    users = [await make_user() for _ in range(tries)]
    known_times, unknown_times = [], []
    await ask_for_reset(client, "warm-up@example.org")
    for number, user in enumerate(users):
        for email, times in ((user.email, known_times), (f"nobody{number}@example.org", unknown_times)):
            started = time.perf_counter()
            await ask_for_reset(client, email)
            times.append(time.perf_counter() - started)

    known, unknown = statistics.median(known_times), statistics.median(unknown_times)
    assert max(known, unknown) < 1.5 * min(known, unknown) + 0.005, (known, unknown)


async def test_an_inactive_account_gets_no_mail(client, make_user, smtp_server):
    user = await make_user(is_active=False)

    await ask_for_reset(client, user.email)
    await deliver(smtp_server)

    assert smtp_server.messages == []
    assert [row.status for row in await outbox()] == [MailStatus.DROPPED]


# Limits


async def test_an_address_may_ask_a_few_times_then_gets_429_known_or_not(client, make_user):
    user = await make_user()
    for email in (user.email, "nobody@example.org"):
        for _ in range(auth_settings.PASSWORD_RESET_MAX_REQUESTS):
            await ask_for_reset(client, email)

        refused = await client.post(RESET, json={"email": email})

        assert_problem(refused, 429, "PASSWORD_RESET_LIMITED")
        retry_after = int(refused.headers["retry-after"])
        assert 0 < retry_after <= auth_settings.LOGIN_LOCKOUT_MINUTES * 60 + 1
    assert len(await outbox()) == 2 * auth_settings.PASSWORD_RESET_MAX_REQUESTS


async def test_the_limit_renews_once_the_window_has_passed(client, make_user):
    user = await make_user()
    for _ in range(auth_settings.PASSWORD_RESET_MAX_REQUESTS):
        await ask_for_reset(client, user.email)
    async with SessionFactory() as session:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.email_hash == login_throttle_key(user.email))
            .values(last_attempt_at=utcnow() - timedelta(minutes=auth_settings.LOGIN_LOCKOUT_MINUTES + 1))
        )
        await session.commit()

    await ask_for_reset(client, user.email)


async def test_a_burst_of_requests_sends_one_mail_with_the_newest_link(client, make_user, smtp_server):
    user = await make_user()
    await ask_for_reset(client, user.email)
    await ask_for_reset(client, user.email)

    counts = await deliver(smtp_server)

    assert (counts.sent, counts.dropped) == (1, 1)
    assert (await confirm(client, token_in(smtp_server.messages[0]))).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "not an email"},
        {"email": "a@example.org", "extra": 1},
        {"email": ["a@example.org"]},
    ],
)
async def test_a_request_that_is_not_one_address_is_422(client, body):
    assert_problem(await client.post(RESET, json=body), 422, "VALIDATION_ERROR")


async def test_without_a_mail_service_reset_answers_503_for_everyone(client, make_user, monkeypatch):
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)
    user = await make_user()

    for email in (user.email, "nobody@example.org"):
        assert_problem(await client.post(RESET, json={"email": email}), 503, "MAIL_NOT_CONFIGURED")
    assert await outbox() == []


# Token rules


async def test_a_token_works_once(client, make_user, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)
    assert (await confirm(client, token)).status_code == 204

    again = await confirm(client, token, password="yet another passphrase")

    assert_problem(again, 422, "RESET_TOKEN_INVALID")
    assert (await sign_in(client, user.email, NEW_PASSWORD)).status_code == 200


async def test_two_uses_of_one_token_at_once_change_the_password_once(client, make_user, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)

    first, second = await asyncio.gather(
        confirm(client, token, password="first new passphrase"),
        confirm(client, token, password="second new passphrase"),
    )

    assert sorted([first.status_code, second.status_code]) == [204, 422]
    winner = "first new passphrase" if first.status_code == 204 else "second new passphrase"
    assert (await sign_in(client, user.email, winner)).status_code == 200


async def test_an_expired_token_is_refused(client, make_user, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)
    async with SessionFactory() as session:
        await session.execute(update(LinkToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    assert_problem(await confirm(client, token), 422, "RESET_TOKEN_INVALID")
    assert (await sign_in(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_a_newer_request_kills_the_older_link(client, make_user, smtp_server):
    user = await make_user()
    older = await mailed_token(client, smtp_server, user.email)
    newer = await mailed_token(client, smtp_server, user.email)

    assert_problem(await confirm(client, older), 422, "RESET_TOKEN_INVALID")
    assert (await confirm(client, newer)).status_code == 204


async def test_a_password_change_kills_the_link_and_mails_a_notice(client, make_user, login, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)
    tokens = await login(user)

    changed = await client.post(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "changed by hand passphrase"},
        headers=bearer(tokens),
    )
    await deliver(smtp_server)

    assert changed.status_code == 204
    assert_problem(await confirm(client, token), 422, "RESET_TOKEN_INVALID")
    assert smtp_server.messages[-1].message["Subject"] == "Your Studybase password was changed"


async def test_a_reset_kills_the_other_links_of_the_account(client, make_user, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)
    async with SessionFactory() as session:
        # A second live token, as a race between two mails could leave one.
        session.add(
            LinkToken(
                user_id=user.id,
                purpose=LinkTokenPurpose.PASSWORD_RESET,
                token_hash=hash_secret_token("another-live-token"),
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        await session.commit()

    assert (await confirm(client, token)).status_code == 204
    assert_problem(await confirm(client, "another-live-token"), 422, "RESET_TOKEN_INVALID")


@pytest.mark.parametrize("token", ["", "x" * 129])
async def test_a_token_of_impossible_length_is_refused_unread(client, token):
    assert_problem(await confirm(client, token), 422, "VALIDATION_ERROR")


async def test_an_unknown_token_is_refused_like_a_used_one(client):
    assert_problem(await confirm(client, "A" * 43), 422, "RESET_TOKEN_INVALID")


async def test_the_password_rules_apply_and_a_refused_password_keeps_the_token(
    client, make_user, smtp_server
):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)

    assert_problem(await confirm(client, token, password="short"), 422, "VALIDATION_ERROR")
    assert_problem(await confirm(client, token, password="nul\x00inside passphrase"), 422, "VALIDATION_ERROR")
    assert (await confirm(client, token)).status_code == 204


async def test_a_token_of_a_deactivated_account_is_refused(client, make_user, smtp_server):
    user = await make_user()
    token = await mailed_token(client, smtp_server, user.email)
    async with SessionFactory() as session:
        from src.auth.models import User

        await session.execute(update(User).where(User.id == user.id).values(is_active=False))
        await session.commit()

    assert_problem(await confirm(client, token), 422, "RESET_TOKEN_INVALID")


# What a reset ends and lifts


async def test_a_reset_ends_every_session(client, make_user, login, smtp_server):
    user = await make_user()
    phone, laptop = await login(user), await login(user)
    token = await mailed_token(client, smtp_server, user.email)

    assert (await confirm(client, token)).status_code == 204

    for tokens in (phone, laptop):
        assert_problem(await client.get(ME, headers=bearer(tokens)), 401, "SESSION_REVOKED")
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_problem(refreshed, 401, "REFRESH_TOKEN_INVALID")


async def test_a_reset_lifts_the_sign_in_lock_of_the_account(client, make_user, smtp_server):
    user = await make_user()
    for _ in range(auth_settings.LOGIN_MAX_FAILURES):
        await sign_in(client, user.email, "wrong password!")
    assert_problem(await sign_in(client, user.email, DEFAULT_PASSWORD), 429, "LOGIN_LOCKED")
    token = await mailed_token(client, smtp_server, user.email)

    assert (await confirm(client, token)).status_code == 204

    assert (await sign_in(client, user.email, NEW_PASSWORD)).status_code == 200
