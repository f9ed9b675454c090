"""`python main.py prune`: stale sign-in throttles, long-ended sessions, long-rotated refresh tokens,
expired link tokens and finished mails go, in bounded batches; every row that still changes an
answer stays."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

import main
from src.auth import pruning as auth_pruning
from src.auth.config import auth_settings
from src.auth.constants import LinkTokenPurpose
from src.auth.models import AuthSession, LinkToken, LoginThrottle, RefreshToken, User
from src.auth.utils import hash_secret_token
from src.database import SessionFactory, utcnow
from src.mail.config import mail_settings
from src.mail.constants import MailKind, MailStatus
from src.mail.models import OutboxMail
from tests.conftest import bearer

REFRESH = "/api/v1/auth/refresh"
LIFETIME = timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS)
LOCKOUT = timedelta(minutes=auth_settings.LOGIN_LOCKOUT_MINUTES)


async def add_throttle(*, last_attempt_ago: timedelta, locked_for: timedelta | None = None) -> str:
    now = utcnow()
    key = uuid.uuid4().hex + uuid.uuid4().hex
    async with SessionFactory() as session:
        session.add(
            LoginThrottle(
                email_hash=key,
                scope="account",
                attempt_count=3,
                last_attempt_at=now - last_attempt_ago,
                locked_until=None if locked_for is None else now + locked_for,
            )
        )
        await session.commit()
    return key


async def add_session(
    user: User, *, expires_in: timedelta, revoked_ago: timedelta | None = None, rotated_ago: tuple = ()
) -> uuid.UUID:
    """A session with a refresh token per entry of `rotated_ago` (rotated that long ago) and a current one."""
    now = utcnow()
    session_id = uuid.uuid4()
    async with SessionFactory() as session:
        session.add(
            AuthSession(
                id=session_id,
                user_id=user.id,
                created_at=now - 3 * LIFETIME,
                expires_at=now + expires_in,
                revoked_at=None if revoked_ago is None else now - revoked_ago,
            )
        )
        await session.flush()
        for ago in [*rotated_ago, None]:
            session.add(
                RefreshToken(
                    session_id=session_id,
                    token_hash=uuid.uuid4().hex * 2,
                    rotated_at=None if ago is None else now - ago,
                )
            )
        await session.commit()
    return session_id


async def ids_of(column) -> set:
    async with SessionFactory() as session:
        return set(await session.scalars(select(column)))


async def count_of(model) -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def prune(**bounds) -> auth_pruning.PruneCounts:
    async with SessionFactory() as session:
        return await auth_pruning.prune_auth_rows(session, **bounds)


async def test_only_throttles_whose_run_is_over_and_hold_no_lock_are_pruned():
    stale = await add_throttle(last_attempt_ago=LOCKOUT + timedelta(minutes=1))
    lock_over = await add_throttle(last_attempt_ago=LOCKOUT * 2, locked_for=-timedelta(minutes=1))
    recent = await add_throttle(last_attempt_ago=timedelta(minutes=1))
    locked = await add_throttle(last_attempt_ago=LOCKOUT * 2, locked_for=timedelta(minutes=5))

    counts = await prune()

    assert counts.login_throttles == 2
    assert await ids_of(LoginThrottle.email_hash) == {recent, locked}
    assert stale not in await ids_of(LoginThrottle.email_hash)
    assert lock_over not in await ids_of(LoginThrottle.email_hash)


async def test_sessions_ended_over_a_refresh_lifetime_ago_go_with_their_tokens(make_user):
    user = await make_user()
    day = timedelta(days=1)
    expired_long_ago = await add_session(user, expires_in=-(LIFETIME + day), rotated_ago=(LIFETIME * 2,))
    revoked_long_ago = await add_session(user, expires_in=LIFETIME, revoked_ago=LIFETIME + day)
    revoked_recently = await add_session(user, expires_in=LIFETIME, revoked_ago=day)
    expired_recently = await add_session(user, expires_in=-day)
    live = await add_session(user, expires_in=LIFETIME, rotated_ago=(day,))
    tokens_before = await count_of(RefreshToken)

    counts = await prune()

    assert counts.sessions == 2
    assert await ids_of(AuthSession.id) == {revoked_recently, expired_recently, live}
    assert expired_long_ago not in await ids_of(RefreshToken.session_id)
    assert revoked_long_ago not in await ids_of(RefreshToken.session_id)
    assert counts.refresh_tokens == 3  # 2 of the expired session, 1 of the revoked one
    assert await count_of(RefreshToken) == tokens_before - 3


async def test_tokens_rotated_over_a_refresh_lifetime_ago_go_and_the_session_keeps_working(
    client, make_user, login
):
    user = await make_user()
    tokens = await login(user)
    refreshed = (await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})).json()
    session_id = (await ids_of(AuthSession.id)).pop()
    async with SessionFactory() as session:
        old = RefreshToken(
            session_id=session_id, token_hash="a" * 64, rotated_at=utcnow() - LIFETIME - timedelta(hours=1)
        )
        session.add(old)
        await session.commit()
    before = await ids_of(RefreshToken.id)

    counts = await prune()

    assert counts.refresh_tokens == 1
    assert await ids_of(RefreshToken.id) == before - {old.id}
    # The recently rotated token is still known: showing it again ends the session, as before.
    assert (await client.get("/api/v1/auth/me", headers=bearer(refreshed))).status_code == 200
    again = await client.post(REFRESH, json={"refresh_token": refreshed["refresh_token"]})
    assert again.status_code == 200, again.text


async def test_a_run_deletes_at_most_max_rows_in_batches_and_the_next_continues():
    for _ in range(25):
        await add_throttle(last_attempt_ago=LOCKOUT * 2)

    first = await prune(batch_rows=10, max_rows=20)
    assert first.login_throttles == 20
    assert await count_of(LoginThrottle) == 5

    second = await prune(batch_rows=10, max_rows=20)
    assert second.login_throttles == 5
    assert await count_of(LoginThrottle) == 0


async def test_a_throttle_touched_after_it_was_picked_is_kept():
    key = await add_throttle(last_attempt_ago=LOCKOUT * 2)
    picked_at = utcnow()
    async with SessionFactory() as session:
        throttle = await session.get(LoginThrottle, (key, "account"))
        throttle.last_attempt_at = picked_at  # a sign-in attempt right now
        await session.commit()

    counts = await prune(now=picked_at)

    assert counts.login_throttles == 0
    assert await ids_of(LoginThrottle.email_hash) == {key}


async def test_expired_link_tokens_are_pruned_live_ones_kept(make_user):
    user = await make_user()
    now = utcnow()
    async with SessionFactory() as session:
        for name, expires_in in (("expired", -timedelta(seconds=1)), ("live", timedelta(minutes=5))):
            session.add(
                LinkToken(
                    user_id=user.id,
                    purpose=LinkTokenPurpose.PASSWORD_RESET,
                    token_hash=hash_secret_token(name),
                    expires_at=now + expires_in,
                )
            )
        await session.commit()

    counts = await prune(now=now)

    assert counts.link_tokens == 1
    assert await ids_of(LinkToken.token_hash) == {hash_secret_token("live")}


async def test_the_prune_command_reports_what_it_deleted(make_user):
    user = await make_user()
    await add_throttle(last_attempt_ago=LOCKOUT * 2)
    await add_session(user, expires_in=-(LIFETIME * 2))
    async with SessionFactory() as session:
        session.add(
            LinkToken(
                user_id=user.id,
                purpose=LinkTokenPurpose.PASSWORD_RESET,
                token_hash=hash_secret_token("expired"),
                expires_at=utcnow() - timedelta(minutes=1),
            )
        )
        session.add(
            OutboxMail(
                kind=MailKind.PASSWORD_CHANGED,
                recipient=user.email,
                status=MailStatus.SENT,
                finished_at=utcnow() - timedelta(days=mail_settings.MAIL_KEEP_DAYS + 1),
            )
        )
        await session.commit()

    message = await main.prune(batch_rows=100, max_rows=1000)

    assert message == (
        "Pruned 1 sign-in throttles, 1 ended sessions, 1 refresh tokens, 1 expired link tokens, "
        "0 expired pending registrations, "
        "0 orphan files, 0 expired idempotency keys, 1 finished mails and 0 finished invitations."
    )
    assert await count_of(LoginThrottle) == 0
    assert await count_of(OutboxMail) == 0


@pytest.mark.parametrize("option", ["--max-rows", "--batch-rows"])
def test_the_prune_bounds_must_be_positive(option, capsys):
    with pytest.raises(SystemExit):
        main.parse_args(["prune", option, "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_the_prune_command_has_bounded_defaults():
    args = main.parse_args(["prune"])
    assert (args.batch_rows, args.max_rows) == (1000, 100_000)
