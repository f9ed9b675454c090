"""How often the auth module lets a password be tried or a mail be asked for, counted per email
(hashed) in LoginThrottle rows: the sign-in lock and slowdown, the lock of a session's wrong current
passwords, and the limits on password-reset, verification and registration mails. Each counts the same
statements whether or not the email has an account."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import utils
from src.auth.config import auth_settings
from src.auth.constants import (
    IP_ADDRESS_MAX_LENGTH,
    LOGIN_THROTTLE_ACCOUNT_SCOPE,
    PASSWORD_RESET_THROTTLE_SCOPE,
    REGISTRATION_THROTTLE_SCOPE,
    VERIFICATION_THROTTLE_SCOPE,
)
from src.auth.exceptions import (
    LoginLocked,
    LoginSlowed,
    PasswordResetLimited,
    RegistrationLimited,
    VerificationMailLimited,
)
from src.auth.models import AuthSession, LoginThrottle, User
from src.database import insert_for
from src.exceptions import TooManyRequests

# Sign-in throttling, per email (known or not, so a throttle says nothing about who has an account):
# - per (email, client address): LOGIN_MAX_FAILURES failures lock that address out of that email,
#   so an attacker locks out only themselves, never the owner elsewhere;
# - per email across all addresses: past LOGIN_ACCOUNT_MAX_FAILURES, addresses that have not signed
#   in to the account recently get one attempt per LOGIN_SLOWDOWN_SECONDS between them, so many
#   addresses guess slowly while the owner's usual devices are not slowed at all;
# - per session, for wrong current passwords at the password change: a lock of that session only.


def lockout() -> timedelta:
    return timedelta(minutes=auth_settings.LOGIN_LOCKOUT_MINUTES)


def _retry_after(until: datetime | None, *, now: datetime, default: timedelta) -> int:
    return int(((until or now + default) - now).total_seconds()) + 1


async def reserve_password_attempt(
    session: AsyncSession, *, key: str, scope: str, now: datetime, locked: type[TooManyRequests]
) -> int:
    """Counts an attempt before its password is checked, so parallel guesses cannot outrun the limit.

    Returns the attempt's number in the current run of attempts; raises `locked` while the scope
    is locked or its attempts are used up. Commits, which also frees the connection for the hash.
    """
    throttle = LoginThrottle
    starts_afresh = or_(throttle.last_attempt_at < now - lockout(), throttle.locked_until <= now)
    reserve = (
        insert_for(session, LoginThrottle)
        .values(email_hash=key, scope=scope, attempt_count=1, last_attempt_at=now)
        .on_conflict_do_update(
            index_elements=[throttle.email_hash, throttle.scope],
            set_={
                "attempt_count": case((starts_afresh, 1), else_=throttle.attempt_count + 1),
                "last_attempt_at": now,
                "locked_until": None,
            },
            where=or_(throttle.locked_until.is_(None), throttle.locked_until <= now),
        )
        .returning(throttle.attempt_count)
    )
    attempt = (await session.execute(reserve)).scalar_one_or_none()
    locked_until = None
    if attempt is None:
        locked_until = await _locked_until(session, key=key, scope=scope)
    await session.commit()
    if attempt is None:
        raise locked(retry_after_seconds=_retry_after(locked_until, now=now, default=lockout()))
    if attempt > auth_settings.LOGIN_MAX_FAILURES:
        # Not locked: the run's other attempts are still in flight and may yet succeed (a script
        # signing in from several threads), so this one is told to retry in a second, not in 15 min.
        raise locked(retry_after_seconds=1)
    return attempt


async def _locked_until(session: AsyncSession, *, key: str, scope: str) -> datetime | None:
    return await session.scalar(
        select(LoginThrottle.locked_until).where(
            LoginThrottle.email_hash == key, LoginThrottle.scope == scope
        )
    )


async def _reserve_account_attempt(session: AsyncSession, *, key: str, now: datetime) -> datetime | None:
    """Counts an attempt against the email's budget across all addresses, before its password is checked.

    Within the budget nothing is slowed; past it each attempt that gets through holds back the
    next one for LOGIN_SLOWDOWN_SECONDS. Returns None when the attempt was counted, else when
    the next one may come. The budget renews once no attempt came for LOGIN_LOCKOUT_MINUTES. Commits.
    """
    throttle = LoginThrottle
    slowdown = timedelta(seconds=auth_settings.LOGIN_SLOWDOWN_SECONDS)
    count = case((throttle.last_attempt_at < now - lockout(), 1), else_=throttle.attempt_count + 1)
    reserve = (
        insert_for(session, LoginThrottle)
        .values(email_hash=key, scope=LOGIN_THROTTLE_ACCOUNT_SCOPE, attempt_count=1, last_attempt_at=now)
        .on_conflict_do_update(
            index_elements=[throttle.email_hash, throttle.scope],
            set_={
                "attempt_count": count,
                "last_attempt_at": now,
                "locked_until": case((count > auth_settings.LOGIN_ACCOUNT_MAX_FAILURES, now + slowdown)),
            },
            where=or_(throttle.locked_until.is_(None), throttle.locked_until <= now),
        )
        .returning(throttle.attempt_count)
    )
    if (await session.execute(reserve)).scalar_one_or_none() is not None:
        await session.commit()
        return None
    locked_until = await _locked_until(session, key=key, scope=LOGIN_THROTTLE_ACCOUNT_SCOPE)
    await session.commit()
    return locked_until or now + slowdown


async def release_attempt(session: AsyncSession, *, key: str, scope: str) -> None:
    """Uncounts a reserved attempt that turned out not to be a failure (refused unchecked, or right)."""
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.email_hash == key, LoginThrottle.scope == scope, LoginThrottle.attempt_count > 0)
        .values(attempt_count=LoginThrottle.attempt_count - 1)
    )
    await session.commit()


async def record_failed_attempt(
    session: AsyncSession, *, key: str, scope: str, attempt: int, now: datetime
) -> None:
    """The failure was counted when the attempt was reserved; the last allowed one locks the scope."""
    if attempt >= auth_settings.LOGIN_MAX_FAILURES:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.email_hash == key, LoginThrottle.scope == scope)
            .values(attempt_count=0, locked_until=now + lockout())
        )
        await session.commit()


async def clear_attempts(session: AsyncSession, *, key: str, scope: str) -> None:
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.email_hash == key, LoginThrottle.scope == scope)
    )


async def signed_in_recently_from(
    session: AsyncSession, *, email: str, ip_address: str | None, now: datetime
) -> bool:
    """Whether the account with this email signed in from this address within a refresh-token lifetime.

    The same query whether the email has an account or not, so it costs the same either way.
    """
    since = now - timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS)
    signed_in = exists().where(
        AuthSession.user_id == User.id,
        User.email == email,
        AuthSession.ip_address == utils.storable_text(ip_address, IP_ADDRESS_MAX_LENGTH),
        AuthSession.created_at > since,
    )
    return bool(await session.scalar(select(signed_in)))


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    number: int  # in the current run of attempts from this address
    counted_for_account: bool


async def reserve_sign_in_attempt(
    session: AsyncSession, *, key: str, address_scope: str, known_address: bool, now: datetime
) -> SignInAttempt:
    """Reserves the attempt for the address (a hard lock) and for the account (a slowdown).

    Both are reserved whoever asks, so a known and an unknown email cost the same work; only an
    address the account signed in from recently may go on when the account is slowed. An attempt
    the slowdown refuses is uncounted for the address again: it was never checked, so no guess.
    """
    number = await reserve_password_attempt(
        session, key=key, scope=address_scope, now=now, locked=LoginLocked
    )
    slowed_until = await _reserve_account_attempt(session, key=key, now=now)
    if slowed_until is not None and not known_address:
        await release_attempt(session, key=key, scope=address_scope)
        slowdown = timedelta(seconds=auth_settings.LOGIN_SLOWDOWN_SECONDS)
        raise LoginSlowed(retry_after_seconds=_retry_after(slowed_until, now=now, default=slowdown))
    return SignInAttempt(number=number, counted_for_account=slowed_until is None)


async def forget_login_throttles(session: AsyncSession, *, email: str) -> None:
    """Every throttle of the (normalized) email, all scopes, inside the caller's transaction."""
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.email_hash == utils.login_throttle_key(email))
    )


async def clear_login_throttles(session: AsyncSession, *, user: User) -> None:
    """Lifts every lock and slowdown on the user's email: all addresses, the account and sessions."""
    await forget_login_throttles(session, email=user.email)
    await session.commit()


async def _count_mail_request(
    session: AsyncSession,
    *,
    email: str,
    now: datetime,
    scope: str,
    max_requests: int,
    limited: type[TooManyRequests],
) -> None:
    """Counts a request for a mail to the (normalized) email in the throttle `scope`: the same
    statement whether or not the address has an account. Past `max_requests` within
    LOGIN_LOCKOUT_MINUTES of the last counted one it is not counted and `limited` is raised, with
    the time until that window ends. Commits."""
    throttle = LoginThrottle
    key = utils.login_throttle_key(email)
    window_over = throttle.last_attempt_at < now - lockout()
    count = (
        insert_for(session, LoginThrottle)
        .values(email_hash=key, scope=scope, attempt_count=1, last_attempt_at=now)
        .on_conflict_do_update(
            index_elements=[throttle.email_hash, throttle.scope],
            set_={
                "attempt_count": case((window_over, 1), else_=throttle.attempt_count + 1),
                "last_attempt_at": now,
            },
            where=or_(window_over, throttle.attempt_count < max_requests),
        )
        .returning(throttle.attempt_count)
    )
    counted = (await session.execute(count)).scalar_one_or_none() is not None
    last = (
        None
        if counted
        else await session.scalar(
            select(throttle.last_attempt_at).where(throttle.email_hash == key, throttle.scope == scope)
        )
    )
    await session.commit()
    if not counted:
        window_ends = (last or now) + lockout()
        raise limited(retry_after_seconds=_retry_after(window_ends, now=now, default=lockout()))


async def count_password_reset_request(session: AsyncSession, *, email: str, now: datetime) -> None:
    """Counts a reset request for the (normalized) email, known or not. Past
    PASSWORD_RESET_MAX_REQUESTS within LOGIN_LOCKOUT_MINUTES, PasswordResetLimited. Commits."""
    await _count_mail_request(
        session,
        email=email,
        now=now,
        scope=PASSWORD_RESET_THROTTLE_SCOPE,
        max_requests=auth_settings.PASSWORD_RESET_MAX_REQUESTS,
        limited=PasswordResetLimited,
    )


async def count_verification_request(session: AsyncSession, *, user: User, now: datetime) -> None:
    """Counts a verification mail asked for again by the account. Past
    EMAIL_VERIFICATION_MAX_REQUESTS within LOGIN_LOCKOUT_MINUTES, VerificationMailLimited. Commits."""
    await _count_mail_request(
        session,
        email=user.email,
        now=now,
        scope=VERIFICATION_THROTTLE_SCOPE,
        max_requests=auth_settings.EMAIL_VERIFICATION_MAX_REQUESTS,
        limited=VerificationMailLimited,
    )


async def count_registration(session: AsyncSession, *, email: str, now: datetime) -> None:
    """Counts a self-registration of the (normalized) email, new or taken alike. Past
    REGISTRATION_MAX_REQUESTS within LOGIN_LOCKOUT_MINUTES, RegistrationLimited. Commits."""
    await _count_mail_request(
        session,
        email=email,
        now=now,
        scope=REGISTRATION_THROTTLE_SCOPE,
        max_requests=auth_settings.REGISTRATION_MAX_REQUESTS,
        limited=RegistrationLimited,
    )
