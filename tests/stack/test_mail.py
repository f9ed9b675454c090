"""Mail through the real stack: gunicorn's workers send what requests through nginx queued to a real
SMTP server (aiosmtpd on a loopback port, the stack's `stack_smtp`); a user who forgot the password
gets back in from the mail alone, by API and in the browser; the page answers at the link's path."""

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from src.auth.constants import (
    ACCOUNT_CREATED_NOTICE,
    EMAIL_VERIFIED_NOTICE,
    PASSWORD_RESET_REQUESTED,
    REGISTRATION_REQUESTED,
)
from src.auth.exceptions import PasswordRequired
from src.middleware import DASHBOARD_CSP
from tests.conftest import assert_problem, bearer
from tests.smtp_server import Delivered, SmtpTestServer
from tests.stack.conftest import (
    INVITATION_SUBJECT,
    REGISTRATION_ATTEMPT_SUBJECT,
    REGISTRATION_LINK_SUBJECT,
    RESET_SUBJECT,
    STACK_MAIL_FROM,
    STACK_PASSWORD,
    STACK_PUBLIC_URL,
    UNDER_CI,
    VERIFICATION_SUBJECT,
    Stack,
    fresh_client_address,
    mail_settings_for,
    mailed_link_token,
    mails_to,
    register_and_sign_in,
    researcher_with_study,
    running_stack,
)
from tests.stack.test_dashboard_page import (
    ANSWERED_WITH_AN_ERROR,
    CHROMIUM_PATH,
    WAIT_MS,
    browser_missing,
    expect_text,
    sign_in,
)

pytestmark = pytest.mark.stack

NEW_PASSWORD = "a new stack passphrase"
CALLER_PASSWORD = "a caller's stack passphrase"


@pytest.fixture
def smtp(stack_smtp: SmtpTestServer) -> SmtpTestServer:
    return stack_smtp


def reset_link(delivered: Delivered) -> str:
    text = delivered.message.get_body(("plain",)).get_content()
    (link,) = [word for word in text.split() if word.startswith(f"{STACK_PUBLIC_URL}/reset-password#token=")]
    return link


def test_a_forgotten_password_is_reset_from_the_mail_through_nginx(http: httpx.Client, smtp: SmtpTestServer):
    email = "forgetful-api@example.org"
    old_session = register_and_sign_in(http, email)

    asked = http.post("/api/v1/auth/password-reset", json={"email": email})
    nobody = http.post("/api/v1/auth/password-reset", json={"email": "nobody-stack@example.org"})
    (mail,) = mails_to(smtp, email, 1, about=RESET_SUBJECT)

    assert asked.status_code == nobody.status_code == 202
    assert asked.json() == nobody.json() == {"detail": PASSWORD_RESET_REQUESTED}
    assert mail.message["From"] == STACK_MAIL_FROM
    assert mail.message["Message-ID"].endswith("@example.org>")
    (token,) = parse_qs(urlsplit(reset_link(mail)).fragment)["token"]
    confirmed = http.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 204, confirmed.text
    signed_in = http.post("/api/v1/auth/token", data={"username": email, "password": NEW_PASSWORD})
    assert signed_in.status_code == 200
    assert_problem(http.get("/api/v1/auth/me", headers=bearer(old_session)), 401, "SESSION_REVOKED")
    notices = mails_to(smtp, email, 2, about=RESET_SUBJECT)
    assert notices[1].message["Subject"] == "Your Studybase password was changed"
    assert all(delivered.rcpt_tos != ["nobody-stack@example.org"] for delivered in smtp.messages)


def test_nginx_serves_the_reset_page_with_the_page_csp(http: httpx.Client):
    page = http.get("/reset-password")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers.get_list("content-security-policy") == [DASHBOARD_CSP]


@pytest.fixture(scope="module")
async def browser(stack: Stack) -> AsyncIterator:
    problem = browser_missing()
    if problem:
        if UNDER_CI:
            pytest.fail(f"the browser tests need Chromium and Playwright under CI: {problem}")
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, args=["--no-sandbox"], headless=True
        )
        yield chromium
        await chromium.close()


@contextlib.asynccontextmanager
async def tab_on(browser, started: Stack) -> AsyncIterator:
    """A browser tab on `started`'s nginx that fails the test on any script error or CSP refusal."""
    context = await browser.new_context(base_url=started.base_url)
    tab = await context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield tab
    await context.close()
    # Chromium logs each 4xx the page asked for (the spent link's 422), which the page shows;
    # anything else (a script error, a CSP refusal) is a bug.
    assert [error for error in errors if not error.startswith(ANSWERED_WITH_AN_ERROR)] == []


@pytest.fixture
async def page(browser, stack: Stack) -> AsyncIterator:
    async with tab_on(browser, stack) as tab:
        yield tab


async def test_in_the_browser_forgot_password_then_the_mailed_link_signs_you_back_in(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    email = "forgetful-page@example.org"
    register_and_sign_in(http, email)

    await page.goto("/")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_role("button", name="Forgot password?").click()
    await expect_text(page.locator("#forgot-title"), "Reset your password")
    assert await page.locator("#forgot-email").input_value() == email
    await page.get_by_role("button", name="Send reset link").click()
    await expect_text(page.locator("#forgot-done"), PASSWORD_RESET_REQUESTED)

    (mail,) = mails_to(smtp, email, 1, about=RESET_SUBJECT)
    link = urlsplit(reset_link(mail))
    await page.goto(f"{link.path}#{link.fragment}")
    await expect_text(page.locator("#reset-title"), "Choose a new password")
    assert "token" not in page.url  # taken out of the address bar (and the history) at once
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("Repeat it", exact=True).fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Set new password").click()
    await expect_text(
        page.locator("#sign-in-message"),
        "Your password was changed and every session ended. Sign in with the new one.",
    )
    assert urlsplit(page.url).path == "/"

    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect_text(page.locator("#signed-in-as"), email)

    # The same link again: refused, and said so on the page.
    await page.goto(f"{link.path}#{link.fragment}")
    await page.get_by_label("New password", exact=True).fill("yet another stack passphrase")
    await page.get_by_label("Repeat it", exact=True).fill("yet another stack passphrase")
    await page.get_by_role("button", name="Set new password").click()
    await expect_text(
        page.locator("#reset-message"),
        "This password-reset link is no longer valid (used, replaced or expired); ask for a new one.",
    )


# Registration says nothing about who is registered; the mailbox does


def test_registering_a_taken_address_through_nginx_answers_as_a_new_one_and_mails_its_owner(
    http: httpx.Client, smtp: SmtpTestServer
):
    taken, new = (f"{kind}-{uuid.uuid4().hex[:8]}@example.org" for kind in ("taken", "new"))
    register_and_sign_in(http, taken)

    def registering(email: str) -> httpx.Response:
        body = {"email": email, "password": CALLER_PASSWORD, "full_name": "Caller"}
        return http.post("/api/v1/auth/register", json=body)

    again, fresh = registering(taken), registering(new)

    assert again.status_code == fresh.status_code == 202
    assert again.json() == fresh.json() == {"detail": REGISTRATION_REQUESTED}
    per_response = {"x-request-id", "date"}
    assert {k: v for k, v in again.headers.items() if k not in per_response} == {
        k: v for k, v in fresh.headers.items() if k not in per_response
    }
    (note,) = mails_to(smtp, taken, 1, about=REGISTRATION_ATTEMPT_SUBJECT)
    text = note.message.get_body(("plain",)).get_content()
    assert f"{STACK_PUBLIC_URL}/reset-password" in text
    mails_to(smtp, new, 1, about=VERIFICATION_SUBJECT)
    # No second account: the caller's password does not open the owner's.
    refused = http.post("/api/v1/auth/token", data={"username": taken, "password": CALLER_PASSWORD})
    assert_problem(refused, 401, "INVALID_CREDENTIALS")


@pytest.fixture(scope="module")
def verifying_stack(stack_database: str, stack_smtp: SmtpTestServer) -> Iterator[Stack]:
    """A stack with production's default: addresses must be verified."""
    settings = mail_settings_for(stack_smtp) | {"REQUIRE_EMAIL_VERIFICATION": "true"}
    with running_stack(stack_database, settings=settings) as started:
        yield started


def test_where_addresses_must_be_verified_register_then_sign_in_tells_nothing_until_the_link(
    verifying_stack: Stack, smtp: SmtpTestServer
):
    """Register address X with password P and sign in with P: 401 alike whether X was new or taken;
    the new address's account exists only once its mailed link is followed. (Each party speaks from
    an address of its own: nginx's strict zone counts registrations and links per client address.)"""
    taken, new = (f"{kind}-{uuid.uuid4().hex[:8]}@example.org" for kind in ("owned", "pending"))
    owner, caller, newcomer = (
        httpx.Client(
            base_url=verifying_stack.base_url,
            transport=httpx.HTTPTransport(local_address=fresh_client_address()),
            timeout=10,
        )
        for _ in range(3)
    )

    def follow_link(http: httpx.Client, email: str, password: str) -> httpx.Response:
        """The newest registration link, followed with the password the account gets."""
        token = mailed_link_token(
            mails_to(smtp, email, 1, about=REGISTRATION_LINK_SUBJECT)[-1], "/verify-email"
        )
        return http.post("/api/v1/auth/verify-email", json={"token": token, "password": password})

    with owner, caller, newcomer:
        owner_body = {"email": taken, "password": STACK_PASSWORD, "full_name": "Owner"}
        assert owner.post("/api/v1/auth/register", json=owner_body).status_code == 202
        assert follow_link(owner, taken, STACK_PASSWORD).status_code == 204

        answers = {}
        for email in (taken, new):
            body = {"email": email, "password": CALLER_PASSWORD, "full_name": "Caller"}
            registered = caller.post("/api/v1/auth/register", json=body)
            form = {"username": email, "password": CALLER_PASSWORD}
            signed_in = caller.post("/api/v1/auth/token", data=form)
            assert_problem(signed_in, 401, "INVALID_CREDENTIALS")
            problem = {k: v for k, v in signed_in.json().items() if k != "request_id"}
            answers[email] = (registered.status_code, registered.json(), signed_in.status_code, problem)
        assert answers[taken] == answers[new]
        assert answers[new][:3] == (202, {"detail": REGISTRATION_REQUESTED}, 401)

        mails_to(smtp, taken, 1, about=REGISTRATION_ATTEMPT_SUBJECT)
        assert follow_link(newcomer, new, CALLER_PASSWORD).status_code == 204
        signed_in = newcomer.post("/api/v1/auth/token", data={"username": new, "password": CALLER_PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        me = newcomer.get("/api/v1/auth/me", headers=bearer(signed_in.json())).json()
        assert (me["email"], me["role"]) == (new, "researcher")
        assert me["email_verified_at"] is not None
        assert_problem(follow_link(newcomer, new, CALLER_PASSWORD), 422, "VERIFICATION_TOKEN_INVALID")


async def test_in_the_browser_a_registration_link_asks_for_the_password_the_account_gets(
    browser, verifying_stack: Stack, smtp: SmtpTestServer
):
    """V registers, then A registers V's address with A's password; V opens the newest link: the
    page asks for the password (the server's PASSWORD_REQUIRED) and the account gets V's, not A's."""
    email = f"link-page-{uuid.uuid4().hex[:8]}@example.org"
    victim, attacker = "the victim's passphrase", "the attacker's passphrase"
    clients = [
        httpx.Client(
            base_url=verifying_stack.base_url,
            transport=httpx.HTTPTransport(local_address=fresh_client_address()),
            timeout=10,
        )
        for _ in range(2)
    ]
    with clients[0] as owner, clients[1] as other:
        for http, password in ((owner, victim), (other, attacker)):
            body = {"email": email, "password": password, "full_name": "Link Page"}
            assert http.post("/api/v1/auth/register", json=body).status_code == 202
        newest = mails_to(smtp, email, 2, about=REGISTRATION_LINK_SUBJECT)[-1]

        async with tab_on(browser, verifying_stack) as page:
            await page.goto(page_link(newest, "/verify-email"))
            await expect_text(page.locator("#verify-message"), PasswordRequired.detail)
            await page.locator("#verify-password").fill(victim)
            await page.locator("#verify-repeat-password").fill("something else entirely")
            await page.get_by_role("button", name="Create account").click()
            await expect_text(page.locator("#verify-message"), "The two passwords differ.")
            await page.locator("#verify-repeat-password").fill(victim)
            await page.get_by_role("button", name="Create account").click()
            await expect_text(page.locator("#verify-done"), ACCOUNT_CREATED_NOTICE)
            assert await page.locator("#verify-form").is_hidden()
            assert "token" not in page.url

        signed_in = owner.post("/api/v1/auth/token", data={"username": email, "password": victim})
        assert signed_in.status_code == 200, signed_in.text
        refused = other.post("/api/v1/auth/token", data={"username": email, "password": attacker})
        assert_problem(refused, 401, "INVALID_CREDENTIALS")


async def test_in_the_browser_creating_an_account_sends_you_to_your_mail_then_to_sign_in(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    email = f"register-page-{uuid.uuid4().hex[:8]}@example.org"

    await page.goto("/")
    await page.get_by_role("button", name="Create an account").click()
    await expect_text(page.locator("#register-title"), "Create an account")
    await page.get_by_label("Email for the new account").fill(email)
    await page.get_by_label("Full name").fill("Page Registrant")
    await page.get_by_label("Password for the new account").fill(STACK_PASSWORD)
    await page.get_by_role("button", name="Create account", exact=True).click()

    await expect_text(page.locator("#register-done"), REGISTRATION_REQUESTED)
    assert await page.locator("#register-form").is_hidden()
    (mail,) = mails_to(smtp, email, 1, about=VERIFICATION_SUBJECT)
    await page.get_by_role("button", name="Back to sign-in").click()
    assert await page.get_by_label("Email", exact=True).input_value() == email
    await page.get_by_label("Password", exact=True).fill(STACK_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect_text(page.locator("#signed-in-as"), email)
    await page.goto(page_link(mail, "/verify-email"))
    await expect_text(page.locator("#verify-done"), EMAIL_VERIFIED_NOTICE)


async def test_in_the_browser_registering_a_taken_address_looks_the_same_and_mails_its_owner(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    email = f"taken-page-{uuid.uuid4().hex[:8]}@example.org"
    register_and_sign_in(http, email)

    await page.goto("/")
    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Email for the new account").fill(email)
    await page.get_by_label("Full name").fill("Someone Else")
    await page.get_by_label("Password for the new account").fill("someone else's passphrase")
    await page.get_by_role("button", name="Create account", exact=True).click()

    await expect_text(page.locator("#register-done"), REGISTRATION_REQUESTED)
    assert await page.locator("#register-message").text_content() == ""
    mails_to(smtp, email, 1, about=REGISTRATION_ATTEMPT_SUBJECT)


# Invitations and verification, from the mailed links, in the browser


def invite(http: httpx.Client, owner, email: str, role: str) -> None:
    invited = http.post(
        f"{owner.study_url}/members", json={"email": email, "role": role}, headers=owner.headers
    )
    assert invited.status_code == 202, invited.text


def verified_at(http: httpx.Client, headers: dict[str, str]) -> str | None:
    return http.get("/api/v1/auth/me", headers=headers).json()["email_verified_at"]


def page_link(delivered: Delivered, path: str) -> str:
    """The link's path and fragment, as the browser opens it."""
    return f"{path}#token={mailed_link_token(delivered, path)}"


async def test_in_the_browser_an_invited_colleague_without_an_account_joins_from_the_mail(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    owner = researcher_with_study(http, "inviter")
    email = f"invited-page-{uuid.uuid4().hex[:8]}@example.org"
    invite(http, owner, email, "editor")
    (mail,) = mails_to(smtp, email, 1, about=INVITATION_SUBJECT)

    await page.goto(page_link(mail, "/invitations"))
    await expect_text(page.locator("#invitation-title"), "An invitation to a study")
    assert "token" not in page.url  # taken out of the address bar (and the history) at once
    await page.get_by_label("The invited email address").fill(email)
    await page.get_by_label("Your name").fill("Invited Colleague")
    await page.get_by_label("Choose a password").fill(STACK_PASSWORD)
    await page.get_by_role("button", name="Create account and accept").click()

    await expect_text(
        page.locator("#overview-notice"),
        "Your account is ready, its address verified, and you joined the study.",
    )
    await expect_text(page.locator("#studies-table tbody td").first, owner.study["code"])
    assert verified_at(http, bearer(register_and_sign_in_existing(http, email))) is not None


def register_and_sign_in_existing(http: httpx.Client, email: str) -> dict:
    signed_in = http.post("/api/v1/auth/token", data={"username": email, "password": STACK_PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    return signed_in.json()


async def test_in_the_browser_a_signed_in_colleague_declines_then_accepts_from_the_list(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    first = researcher_with_study(http, "listfirst")
    second = researcher_with_study(http, "listsecond")
    email = f"listed-{uuid.uuid4().hex[:8]}@example.org"
    register_and_sign_in(http, email)
    for owner in (first, second):
        invite(http, owner, email, "viewer")

    await sign_in(page, email)
    listed = page.locator("#my-invitations-list li")
    await expect_text(listed.filter(has_text=first.study["code"]), re.compile(first.study["code"]))
    await listed.filter(has_text=first.study["code"]).get_by_role("button", name="Decline").click()
    await expect_text(
        page.locator("#overview-notice"), f"You declined the invitation to {first.study['code']}."
    )
    await listed.filter(has_text=second.study["code"]).get_by_role("button", name="Accept").click()

    await expect_text(
        page.locator("#overview-notice"),
        f"You joined the study {second.study['code']} ({second.study['title']}) as viewer.",
    )
    await expect_text(page.locator("#studies-table tbody td").first, second.study["code"])
    assert await page.locator("#my-invitations").is_hidden()


async def test_in_the_browser_the_verification_link_verifies_the_address(
    page, http: httpx.Client, smtp: SmtpTestServer
):
    email = f"verify-page-{uuid.uuid4().hex[:8]}@example.org"
    tokens = register_and_sign_in(http, email)
    (mail,) = mails_to(smtp, email, 1, about=VERIFICATION_SUBJECT)

    await page.goto(page_link(mail, "/verify-email"))

    await expect_text(page.locator("#verify-done"), EMAIL_VERIFIED_NOTICE)
    assert "token" not in page.url
    assert verified_at(http, bearer(tokens)) is not None
    await page.goto("/")
    await page.goto(page_link(mail, "/verify-email"))  # the same link again: spent, and said so
    await expect_text(
        page.locator("#verify-message"),
        "This verification link is no longer valid (used, replaced or expired); ask for a new one.",
    )


@pytest.mark.parametrize("path", ["/invitations", "/verify-email"])
def test_nginx_serves_the_invitation_and_verification_pages_with_the_page_csp(http: httpx.Client, path):
    page = http.get(path)

    assert page.status_code == 200
    assert page.headers.get_list("content-security-policy") == [DASHBOARD_CSP]
