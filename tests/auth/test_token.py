"""Sign-in: the OAuth2 password grant, throttling without user enumeration, password hashing."""

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from passlib.context import CryptContext
from sqlalchemy import event, select, update

from src import database
from src.auth import utils
from src.auth.config import auth_settings
from src.auth.models import AuthSession, LoginThrottle, User
from src.auth.utils import login_throttle_key
from src.database import utcnow
from tests.conftest import DEFAULT_PASSWORD, bearer

TOKEN = "/api/v1/auth/token"


def credentials(email: str, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    return {"username": email, "password": password}


async def fail_logins(client, email: str, times: int) -> None:
    for _ in range(times):
        response = await client.post(TOKEN, data=credentials(email, "wrong password!"))
        assert response.status_code == 401


async def test_token_returns_a_bearer_pair(client, make_user):
    user = await make_user()

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert response.headers["cache-control"] == "no-store"
    me = await client.get("/api/v1/auth/me", headers=bearer(body))
    assert me.json()["email"] == user.email


async def test_token_accepts_the_full_oauth2_form_swagger_sends(client, make_user):
    user = await make_user()
    form = credentials(user.email) | {"grant_type": "password", "scope": "", "client_id": ""}

    response = await client.post(TOKEN, data=form)

    assert response.status_code == 200


async def test_token_rejects_other_grant_types(client, make_user):
    user = await make_user()

    response = await client.post(TOKEN, data=credentials(user.email) | {"grant_type": "client_credentials"})

    assert response.status_code == 422


async def test_token_email_is_case_and_space_insensitive(client, make_user):
    user = await make_user(email="grace@example.org")

    response = await client.post(TOKEN, data=credentials("  GRACE@Example.org "))

    assert response.status_code == 200
    assert user.email == "grace@example.org"


async def test_token_records_the_session_client(client, make_user, db):
    user = await make_user()

    await client.post(TOKEN, data=credentials(user.email), headers={"User-Agent": "pytest-agent/1.0"})

    stored = await db.scalar(select(AuthSession).where(AuthSession.user_id == user.id))
    assert stored.user_agent == "pytest-agent/1.0"
    assert stored.ip_address == "203.0.113.7"


async def test_wrong_password_and_unknown_email_get_the_same_401(client, make_user):
    user = await make_user()

    wrong_password = await client.post(TOKEN, data=credentials(user.email, "not the password"))
    unknown_email = await client.post(TOKEN, data=credentials("nobody@example.org", "not the password"))

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.headers["www-authenticate"] == "Bearer"
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(wrong_password.json()) == strip(unknown_email.json())
    assert wrong_password.json()["code"] == "INVALID_CREDENTIALS"


async def test_unknown_email_still_verifies_a_password_hash(client, monkeypatch):
    verified = []
    real_verify = utils.password_context.verify
    monkeypatch.setattr(
        utils.password_context,
        "verify",
        lambda secret, hash_: verified.append(hash_) or real_verify(secret, hash_),
    )

    response = await client.post(TOKEN, data=credentials("nobody@example.org", "whatever password"))

    assert response.status_code == 401
    assert verified == [utils.DUMMY_PASSWORD_HASH]


async def test_inactive_user_gets_the_same_401_as_a_wrong_password(client, make_user):
    user = await make_user(is_active=False)

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_CREDENTIALS"


async def test_password_hashing_and_checking_run_off_the_event_loop(client, monkeypatch):
    loop_thread = threading.get_ident()
    threads = []
    real_hash, real_verify = utils.password_context.hash, utils.password_context.verify_and_update
    monkeypatch.setattr(
        utils.password_context,
        "hash",
        lambda secret: threads.append(threading.get_ident()) or real_hash(secret),
    )
    monkeypatch.setattr(
        utils.password_context,
        "verify_and_update",
        lambda secret, hash_: threads.append(threading.get_ident()) or real_verify(secret, hash_),
    )
    payload = {"email": "ada@example.org", "password": DEFAULT_PASSWORD, "full_name": "Ada"}

    await client.post("/api/v1/auth/register", json=payload)
    await client.post(TOKEN, data=credentials("ada@example.org"))

    assert len(threads) == 2
    assert loop_thread not in threads


async def test_outdated_hash_is_upgraded_at_the_next_login(client, make_user, db):
    user = await make_user()
    weak = CryptContext(schemes=["argon2"], argon2__memory_cost=8192, argon2__time_cost=1)
    old_hash = weak.hash(DEFAULT_PASSWORD)
    await db.execute(update(User).where(User.id == user.id).values(password_hash=old_hash))
    await db.commit()

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 200
    db.expire_all()
    new_hash = await db.scalar(select(User.password_hash).where(User.id == user.id))
    assert new_hash != old_hash
    assert "m=19456,t=2,p=1" in new_hash
    assert not utils.password_context.needs_update(new_hash)


async def test_failed_login_does_not_upgrade_the_hash(client, make_user, db):
    user = await make_user()
    weak_hash = CryptContext(schemes=["argon2"], argon2__memory_cost=8192, argon2__time_cost=1).hash("x" * 12)
    await db.execute(update(User).where(User.id == user.id).values(password_hash=weak_hash))
    await db.commit()

    await client.post(TOKEN, data=credentials(user.email, "y" * 12))

    db.expire_all()
    assert await db.scalar(select(User.password_hash).where(User.id == user.id)) == weak_hash


async def test_lockout_after_five_failures_for_a_known_email(client, make_user):
    user = await make_user()
    await fail_logins(client, user.email, 5)

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 429
    assert response.json()["code"] == "LOGIN_LOCKED"
    assert 14 * 60 < int(response.headers["retry-after"]) <= 15 * 60 + 1


async def test_lockout_applies_to_unknown_emails_too(client):
    await fail_logins(client, "ghost@example.org", 5)

    response = await client.post(TOKEN, data=credentials("ghost@example.org"))

    assert response.status_code == 429
    assert "retry-after" in response.headers


async def test_lockout_counts_emails_case_insensitively(client, make_user):
    user = await make_user(email="case@example.org")
    await fail_logins(client, "CASE@example.org", 5)

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 429


async def test_lockout_is_per_email(client, make_user):
    victim, other = await make_user(), await make_user()
    await fail_logins(client, victim.email, 5)

    response = await client.post(TOKEN, data=credentials(other.email))

    assert response.status_code == 200


async def test_success_resets_the_failure_count(client, make_user, db):
    user = await make_user()
    await fail_logins(client, user.email, 4)
    assert (await client.post(TOKEN, data=credentials(user.email))).status_code == 200

    await fail_logins(client, user.email, 4)

    assert (await client.post(TOKEN, data=credentials(user.email))).status_code == 200


async def test_lockout_ends_after_its_period(client, make_user, db):
    user = await make_user()
    await fail_logins(client, user.email, 5)
    await db.execute(
        update(LoginThrottle)
        .where(LoginThrottle.email_hash == login_throttle_key(user.email))
        .values(locked_until=utcnow() - timedelta(seconds=1))
    )
    await db.commit()

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 200


async def test_old_failures_do_not_add_up_to_a_lockout(client, make_user, db):
    user = await make_user()
    await fail_logins(client, user.email, 4)
    stale = utcnow() - timedelta(minutes=auth_settings.LOGIN_LOCKOUT_MINUTES + 1)
    await db.execute(update(LoginThrottle).values(last_attempt_at=stale))
    await db.commit()

    await fail_logins(client, user.email, 1)

    assert (await client.post(TOKEN, data=credentials(user.email))).status_code == 200


async def test_lockout_threshold_and_period_are_configurable(client, make_user, monkeypatch):
    monkeypatch.setattr(auth_settings, "LOGIN_MAX_FAILURES", 2)
    monkeypatch.setattr(auth_settings, "LOGIN_LOCKOUT_MINUTES", 1)
    user = await make_user()
    await fail_logins(client, user.email, 2)

    response = await client.post(TOKEN, data=credentials(user.email))

    assert response.status_code == 429
    assert int(response.headers["retry-after"]) <= 61


# The policy: a hard lock per (email, address); per email across addresses, a slowdown.

ATTACKER = "198.51.100.66"
WRONG = "wrong password!"


async def statuses_and_codes(http, email: str, password: str, times: int) -> list[tuple[int, str | None]]:
    answers = []
    for _ in range(times):
        response = await http.post(TOKEN, data=credentials(email, password))
        answers.append((response.status_code, response.json().get("code")))
    return answers


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(client, client_from, make_user):
    owner = await make_user()
    attacker = client_from(ATTACKER)

    answers = await statuses_and_codes(attacker, owner.email, WRONG, auth_settings.LOGIN_MAX_FAILURES + 3)

    assert answers[-1] == (429, "LOGIN_LOCKED")
    assert (await client.post(TOKEN, data=credentials(owner.email))).status_code == 200


async def test_the_guessing_address_stays_locked_even_with_the_right_password(client_from, make_user):
    owner = await make_user()
    attacker = client_from(ATTACKER)
    await statuses_and_codes(attacker, owner.email, WRONG, auth_settings.LOGIN_MAX_FAILURES)

    response = await attacker.post(TOKEN, data=credentials(owner.email))

    assert response.status_code == 429
    assert response.json()["code"] == "LOGIN_LOCKED"


async def fail_from_new_addresses(client_from, email: str, count: int, first: int = 1) -> list:
    answers = []
    for n in range(first, first + count):
        answers += await statuses_and_codes(client_from(f"198.51.100.{n}"), email, WRONG, 1)
    return answers


@pytest.fixture
def small_account_budget(monkeypatch) -> int:
    monkeypatch.setattr(auth_settings, "LOGIN_ACCOUNT_MAX_FAILURES", 3)
    return 3


async def test_past_the_account_budget_new_addresses_get_one_attempt_per_slowdown(
    client_from, make_user, small_account_budget
):
    owner = await make_user()
    within_budget = await fail_from_new_addresses(client_from, owner.email, small_account_budget)

    let_through, slowed = await fail_from_new_addresses(client_from, owner.email, 2, first=10)

    assert within_budget == [(401, "INVALID_CREDENTIALS")] * small_account_budget
    assert let_through == (401, "INVALID_CREDENTIALS")
    assert slowed == (429, "LOGIN_SLOWED")


async def test_a_slowed_attempt_says_when_to_retry(client_from, make_user, small_account_budget):
    owner = await make_user()
    await fail_from_new_addresses(client_from, owner.email, small_account_budget + 1)

    response = await client_from("192.0.2.1").post(TOKEN, data=credentials(owner.email))

    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= auth_settings.LOGIN_SLOWDOWN_SECONDS + 1


async def test_the_slowdown_lets_the_next_attempt_through_once_its_time_has_come(
    client_from, make_user, small_account_budget, db
):
    owner = await make_user()
    await fail_from_new_addresses(client_from, owner.email, small_account_budget + 1)
    await db.execute(update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
    await db.commit()

    response = await client_from("192.0.2.1").post(TOKEN, data=credentials(owner.email))

    assert response.status_code == 200


async def test_the_owner_signs_in_from_a_known_address_while_the_account_is_slowed(
    client, client_from, make_user, small_account_budget
):
    owner = await make_user()
    assert (await client.post(TOKEN, data=credentials(owner.email))).status_code == 200
    await fail_from_new_addresses(client_from, owner.email, small_account_budget + 1)
    assert (await client_from("192.0.2.1").post(TOKEN, data=credentials(owner.email))).status_code == 429

    response = await client.post(TOKEN, data=credentials(owner.email))

    assert response.status_code == 200


async def test_an_address_known_long_ago_is_slowed_like_a_new_one(
    client, client_from, make_user, small_account_budget, db
):
    owner = await make_user()
    assert (await client.post(TOKEN, data=credentials(owner.email))).status_code == 200
    long_ago = utcnow() - timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS + 1)
    await db.execute(update(AuthSession).values(created_at=long_ago))
    await db.commit()
    await fail_from_new_addresses(client_from, owner.email, small_account_budget + 1)

    response = await client.post(TOKEN, data=credentials(owner.email))

    assert response.status_code == 429
    assert response.json()["code"] == "LOGIN_SLOWED"


async def test_slowed_attempts_are_not_counted_toward_the_addresss_lock(
    client_from, make_user, small_account_budget, db
):
    owner = await make_user()
    await fail_from_new_addresses(client_from, owner.email, small_account_budget + 1)
    typo_maker = client_from("192.0.2.1")
    slowed = await statuses_and_codes(typo_maker, owner.email, WRONG, auth_settings.LOGIN_MAX_FAILURES + 1)
    await db.execute(update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
    await db.commit()

    response = await typo_maker.post(TOKEN, data=credentials(owner.email))

    assert set(slowed) == {(429, "LOGIN_SLOWED")}
    assert response.status_code == 200


async def test_successes_do_not_spend_the_account_budget(client_from, make_user, small_account_budget):
    owner = await make_user()
    for n in range(small_account_budget + 2):
        response = await client_from(f"192.0.2.{n + 1}").post(TOKEN, data=credentials(owner.email))
        assert response.status_code == 200

    answers = await fail_from_new_addresses(client_from, owner.email, small_account_budget)

    assert answers == [(401, "INVALID_CREDENTIALS")] * small_account_budget


async def test_parallel_guesses_from_many_addresses_cannot_outrun_the_account_budget(
    client_from, make_user, small_account_budget, monkeypatch
):
    owner = await make_user()
    checked = []
    real_verify = utils.verify_password
    monkeypatch.setattr(utils, "verify_password", lambda *args: checked.append(1) or real_verify(*args))
    guessers = [client_from(f"198.51.100.{n}") for n in range(1, 21)]

    responses = await asyncio.gather(
        *(
            guesser.post(TOKEN, data=credentials(owner.email, f"guess {n}"))
            for n, guesser in enumerate(guessers)
        )
    )

    assert len(checked) <= small_account_budget + 1
    assert sum(response.status_code == 429 for response in responses) >= 20 - small_account_budget - 1


async def test_an_unknown_email_is_throttled_exactly_like_a_known_one(client_from, make_user, monkeypatch):
    owner = await make_user()
    budget = auth_settings.LOGIN_MAX_FAILURES + 2
    monkeypatch.setattr(auth_settings, "LOGIN_ACCOUNT_MAX_FAILURES", budget)

    async def scenario(email: str, network: str) -> list:
        one_address = await statuses_and_codes(
            client_from(f"{network}.1"), email, WRONG, auth_settings.LOGIN_MAX_FAILURES + 1
        )
        many_addresses = []
        for n in range(2, 6):  # two more within the budget, one let through past it, one slowed
            many_addresses += await statuses_and_codes(client_from(f"{network}.{n}"), email, WRONG, 1)
        return one_address + many_addresses

    known = await scenario(owner.email, "198.51.100")
    unknown = await scenario("nobody@example.org", "203.0.113")

    assert known == unknown
    assert known[auth_settings.LOGIN_MAX_FAILURES] == (429, "LOGIN_LOCKED")
    assert known[-2:] == [(401, "INVALID_CREDENTIALS"), (429, "LOGIN_SLOWED")]


async def statements_of(send) -> list[str]:
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        await send()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    return statements


async def test_a_wrong_guess_does_the_same_work_for_known_and_unknown_emails_even_from_a_known_address(
    client, make_user
):
    owner = await make_user()
    assert (await client.post(TOKEN, data=credentials(owner.email))).status_code == 200

    known = await statements_of(lambda: client.post(TOKEN, data=credentials(owner.email, WRONG)))
    unknown = await statements_of(lambda: client.post(TOKEN, data=credentials("nobody@example.org", WRONG)))

    assert known == unknown


async def test_token_rejects_missing_and_oversized_fields(client):
    missing = await client.post(TOKEN, data={"username": "a@example.org"})
    oversized = await client.post(TOKEN, data=credentials("a@example.org", "p" * 1025))

    assert missing.status_code == oversized.status_code == 422
    assert "p" * 100 not in oversized.text


async def test_parallel_guesses_cannot_outrun_the_lockout(client, make_user, monkeypatch):
    user = await make_user()
    checked = []
    real_verify = utils.verify_password
    monkeypatch.setattr(utils, "verify_password", lambda *args: checked.append(1) or real_verify(*args))

    responses = await asyncio.gather(
        *(client.post(TOKEN, data=credentials(user.email, f"guess number {n}")) for n in range(20))
    )

    statuses = [response.status_code for response in responses]
    assert len(checked) <= auth_settings.LOGIN_MAX_FAILURES
    assert statuses.count(401) <= auth_settings.LOGIN_MAX_FAILURES
    assert statuses.count(429) >= 20 - auth_settings.LOGIN_MAX_FAILURES


async def test_password_checks_hold_no_database_connection_and_run_at_most_the_concurrency_setting(
    client, make_user, monkeypatch
):
    users = [await make_user() for _ in range(4)]
    running, peak, held = [0], [0], []
    lock = threading.Lock()
    real_verify = utils.verify_password

    def observed_verify(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            held.append(database.engine.sync_engine.pool.checkedout())
        try:
            time.sleep(0.05)
            return real_verify(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(utils, "verify_password", observed_verify)

    alone = await client.post(TOKEN, data=credentials(users[0].email))
    responses = await asyncio.gather(*(client.post(TOKEN, data=credentials(u.email)) for u in users * 2))

    assert alone.status_code == 200
    assert held[0] == 0  # the request gave its connection back before hashing
    assert all(response.status_code == 200 for response in responses)
    assert peak[0] <= auth_settings.PASSWORD_HASH_CONCURRENCY


async def test_control_characters_in_the_username_are_422_not_500(client):
    response = await client.post(TOKEN, data=credentials("ada\x00@example.org"))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "username"]


async def test_a_username_that_grows_when_lowercased_is_just_wrong(client):
    response = await client.post(TOKEN, data=credentials("\u0130" * 320))

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_CREDENTIALS"


async def test_sign_in_normalizes_the_email_exactly_as_registration_did(client):
    for typed in ("Jose\u0301@example.org", "ada@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.net"):
        body = {"email": typed, "password": DEFAULT_PASSWORD, "full_name": "Unicode"}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 202

        response = await client.post(TOKEN, data=credentials(typed))

        assert response.status_code == 200, typed


def test_client_header_text_is_stored_printable_and_cut_to_its_column():
    assert utils.storable_text("agent\x00/1.0\n" + "x" * 600, 512) == ("agent/1.0" + "x" * 600)[:512]
    assert utils.storable_text("\x00\x01", 45) is None
    assert utils.storable_text(None, 45) is None


async def test_parallel_right_passwords_past_the_budget_are_told_to_retry_at_once_not_locked(
    client, make_user
):
    user = await make_user()
    requests = auth_settings.LOGIN_MAX_FAILURES + 3

    responses = await asyncio.gather(
        *(client.post(TOKEN, data=credentials(user.email)) for _ in range(requests))
    )

    refused = [response for response in responses if response.status_code == 429]
    assert all(response.status_code in (200, 429) for response in responses)
    assert all(response.headers["retry-after"] == "1" for response in refused)
    assert (await client.post(TOKEN, data=credentials(user.email))).status_code == 200
