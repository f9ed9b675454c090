"""Business rules of the auth module: accounts, sign-in, sessions and tokens. How often a password
may be tried or a mail asked for is counted in throttles.py; the rows that only grow are pruned by
pruning.py."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy import Row, Select, bindparam, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from src.auth import jwt, link_tokens, mails, throttles, utils
from src.auth.config import auth_settings
from src.auth.constants import (
    IP_ADDRESS_MAX_LENGTH,
    LOGIN_THROTTLE_ACCOUNT_SCOPE,
    REFRESH_TOKEN_BYTES,
    USER_AGENT_MAX_LENGTH,
    LinkTokenPurpose,
    Role,
    UserSort,
)
from src.auth.exceptions import (
    EmailAlreadyVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    LastAdmin,
    PasswordChangeLocked,
    RefreshTokenReused,
    RegistrationClosed,
    SessionRevoked,
    VerificationTokenInvalid,
    WrongPassword,
)
from src.auth.models import AuthSession, RefreshToken, User
from src.auth.schemas import MeUpdate, PasswordChange, TokenPair, UserUpdate
from src.database import count_up_to, escape_like, utcnow
from src.mail import service as mail_service
from src.schemas import PageParams


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The caller of a request: the user and the session their access token names."""

    user: User
    session: AuthSession


@dataclass(frozen=True, slots=True)
class ClientInfo:
    user_agent: str | None
    ip_address: str | None


# Passwords: argon2 is deliberately slow and memory-hungry (19 MiB a hash), so it runs in worker
# threads, never on the event loop, and at most PASSWORD_HASH_CONCURRENCY at a time in this
# process (by default the cores divided among the workers, so one per core machine-wide): a flood
# of sign-ins queues here instead of exhausting memory or the threads other work needs. Callers
# release their database connection before they get here, so waiting holds no connection either.
_password_hashing = anyio.CapacityLimiter(auth_settings.PASSWORD_HASH_CONCURRENCY)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(utils.hash_password, password, limiter=_password_hashing)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    return await anyio.to_thread.run_sync(
        utils.verify_password, password, password_hash, limiter=_password_hashing
    )


# Users.


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    return await _user_with_normalized_email(session, utils.normalize_email(email))


async def _user_with_normalized_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    full_name: str,
    role: Role,
    email_verified: bool = False,
) -> User:
    """An account for an address its maker may know to be taken (an operator, the holder of an
    invitation's mailed link): EmailTaken says so. `email_verified`: the address is known to be its
    owner's."""
    email = utils.normalize_email(email)
    if await email_is_taken(session, email=email):
        raise EmailTaken
    return await insert_user(
        session,
        email=email,
        password_hash=await hash_password(password),
        full_name=full_name,
        role=role,
        email_verified=email_verified,
    )


async def email_is_taken(session: AsyncSession, *, email: str) -> bool:
    """Whether the normalized `email` has an account. Commits: no connection is held afterwards
    (while a password hashes)."""
    taken = await _user_with_normalized_email(session, email) is not None
    await session.commit()
    return taken


async def insert_user(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str,
    full_name: str,
    role: Role,
    email_verified: bool = False,
    queue_mails: Callable[[AsyncSession, User], None] | None = None,
) -> User:
    """Adds and commits the account (normalized `email`); `queue_mails` adds the mails it causes to
    the same transaction. EmailTaken when a concurrent registration of the address won the race
    (the unique index), with nothing written."""
    user = User(
        id=uuid.uuid4(),
        email=email,
        full_name=full_name,
        password_hash=password_hash,
        role=role,
        email_verified_at=utcnow() if email_verified else None,
    )
    session.add(user)
    if queue_mails is not None:
        queue_mails(session, user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if await _user_with_normalized_email(session, email) is not None:
            raise EmailTaken from None
        raise
    return user


def check_registration_open() -> None:
    if not auth_settings.OPEN_REGISTRATION:
        raise RegistrationClosed


# Verified addresses


async def request_verification_mail(session: AsyncSession, *, user: User) -> None:
    """Another verification link for the account (its newest link is the only live one)."""
    if user.email_verified_at is not None:
        raise EmailAlreadyVerified
    mail_service.require_mail()
    now = utcnow()
    await throttles.count_verification_request(session, user=user, now=now)
    mails.queue_verification_mail(session, user)
    await session.commit()


async def verify_email(session: AsyncSession, *, token: str) -> None:
    """Marks the address of the token's account verified, spending the token."""
    purpose = LinkTokenPurpose.EMAIL_VERIFICATION
    now = utcnow()
    found = await link_tokens.find_link_token(session, token=token, purpose=purpose, now=now)
    if found is None or not await link_tokens.spend_link_token(session, token_id=found.id, now=now):
        await session.rollback()
        raise VerificationTokenInvalid
    await session.execute(
        update(User)
        .where(User.id == found.user_id, User.email_verified_at.is_(None))
        .values(email_verified_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def promote_to_admin(session: AsyncSession, *, email: str) -> User | None:
    user = await get_user_by_email(session, email=email)
    if user is None:
        return None
    user.role, user.is_active = Role.ADMIN, True
    await session.commit()
    return user


async def update_me(session: AsyncSession, *, user: User, data: MeUpdate) -> User:
    user.full_name = data.full_name
    await session.commit()
    return user


def _user_filters(query: Select, *, search: str | None, role: Role | None, is_active: bool | None) -> Select:
    if search:
        pattern = f"%{escape_like(search)}%"
        query = query.where(
            or_(User.email.ilike(pattern, escape="\\"), User.full_name.ilike(pattern, escape="\\"))
        )
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    return query


_USER_SORT_COLUMNS = {
    UserSort.CREATED_AT: User.created_at.asc(),
    UserSort.NEWEST_FIRST: User.created_at.desc(),
    UserSort.EMAIL: User.email.asc(),
    UserSort.EMAIL_DESC: User.email.desc(),
    UserSort.FULL_NAME: User.full_name.asc(),
    UserSort.FULL_NAME_DESC: User.full_name.desc(),
}


async def list_users(
    session: AsyncSession,
    *,
    page: PageParams,
    search: str | None,
    role: Role | None,
    is_active: bool | None,
    sort: UserSort,
) -> tuple[list[User], int, bool]:
    """A page of users, the total (counted up to the cap) and whether that total is exact."""
    filtered = _user_filters(select(User), search=search, role=role, is_active=is_active)
    total, total_is_exact = await count_up_to(session, filtered)
    rows = await session.scalars(
        filtered.order_by(_USER_SORT_COLUMNS[sort], User.id).offset(page.offset).limit(page.page_size)
    )
    return list(rows), total, total_is_exact


async def update_user(session: AsyncSession, *, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    deactivated = user.is_active and changes.get("is_active") is False
    if _removes_an_active_admin(user, changes):
        await _update_unless_last_admin(session, user=user, changes=changes)
    else:
        for field, value in changes.items():
            setattr(user, field, value)
    if deactivated:
        await revoke_sessions(session, user_id=user.id, now=utcnow())
    await session.commit()
    return user


def _removes_an_active_admin(user: User, changes: dict[str, object]) -> bool:
    stays_admin = changes.get("role", user.role) == Role.ADMIN and changes.get("is_active", user.is_active)
    return user.role == Role.ADMIN and user.is_active and not stays_admin


async def _update_unless_last_admin(session: AsyncSession, *, user: User, changes: dict[str, object]) -> None:
    """Applies the change only while another active admin exists, checked inside the UPDATE itself.

    On PostgreSQL the active admins' rows are locked first, so two admins demoting each other
    serialize; SQLite serializes writers anyway, and the check in the statement sees the winner.
    """
    await session.execute(
        select(User.id).where(User.role == Role.ADMIN, User.is_active.is_(True)).with_for_update()
    )
    other = aliased(User)
    another_admin = exists().where(other.role == Role.ADMIN, other.is_active.is_(True), other.id != user.id)
    result = await session.execute(update(User).where(User.id == user.id, another_admin).values(**changes))
    if result.rowcount != 1:
        await session.rollback()
        raise LastAdmin


# Sign-in and the password change, throttled by src/auth/throttles.py.


async def authenticate(session: AsyncSession, *, email: str, password: str, ip_address: str | None) -> User:
    """The active user with this email and password; unknown emails cost the same as wrong passwords."""
    now = utcnow()
    email = utils.normalize_email(email)  # once: email-validator is not free on this hot path
    key, address_scope = utils.login_throttle_key(email), utils.address_throttle_scope(ip_address)
    user = await _user_with_normalized_email(session, email)
    known_address = await throttles.signed_in_recently_from(
        session, email=email, ip_address=ip_address, now=now
    )
    attempt = await throttles.reserve_sign_in_attempt(
        session, key=key, address_scope=address_scope, known_address=known_address, now=now
    )
    matches, upgraded_hash = await verify_password(password, user.password_hash if user else None)
    if user is None or not matches or not user.is_active:
        await throttles.record_failed_attempt(
            session, key=key, scope=address_scope, attempt=attempt.number, now=now
        )
        raise InvalidCredentials
    if upgraded_hash is not None:
        user.password_hash = upgraded_hash
    await throttles.clear_attempts(session, key=key, scope=address_scope)
    if attempt.counted_for_account:  # a success is no failure: it does not spend the budget
        await throttles.release_attempt(session, key=key, scope=LOGIN_THROTTLE_ACCOUNT_SCOPE)
    return user


async def clear_login_throttles_by_email(session: AsyncSession, *, email: str) -> User | None:
    user = await get_user_by_email(session, email=email)
    if user is not None:
        await throttles.clear_login_throttles(session, user=user)
    return user


async def change_password(session: AsyncSession, *, caller: Authenticated, data: PasswordChange) -> None:
    """Sets a new password, ends every other session and any reset link, and mails a notice.

    Wrong current passwords are bounded per session, apart from sign-in failures: the caller has
    proved a live session, so what other clients did at sign-in never blocks them here.
    """
    user = caller.user
    now = utcnow()
    key, scope = utils.login_throttle_key(user.email), utils.session_throttle_scope(caller.session.id)
    attempt = await throttles.reserve_password_attempt(
        session, key=key, scope=scope, now=now, locked=PasswordChangeLocked
    )
    matches, _ = await verify_password(data.current_password, user.password_hash)
    if not matches:
        await throttles.record_failed_attempt(session, key=key, scope=scope, attempt=attempt, now=now)
        raise WrongPassword
    user.password_hash = await hash_password(data.new_password)
    await throttles.clear_attempts(session, key=key, scope=scope)
    await revoke_sessions(session, user_id=user.id, now=now, keep=caller.session.id)
    await link_tokens.revoke_link_tokens(session, user_id=user.id, purpose=LinkTokenPurpose.PASSWORD_RESET)
    mails.queue_password_changed_notice(session, user=user, now=now)
    await session.commit()


# Sessions and tokens.


def _session_is_live(auth_session: AuthSession, now: datetime) -> bool:
    return auth_session.revoked_at is None and auth_session.expires_at > now


def _refresh_expiry(now: datetime) -> datetime:
    """Sessions slide: each refresh gives the session another full refresh-token lifetime."""
    return now + timedelta(days=auth_settings.REFRESH_TOKEN_EXPIRE_DAYS)


async def _issue_tokens(session: AsyncSession, *, auth_session: AuthSession, now: datetime) -> TokenPair:
    refresh_token = utils.new_secret_token(REFRESH_TOKEN_BYTES)
    session.add(RefreshToken(session_id=auth_session.id, token_hash=utils.hash_secret_token(refresh_token)))
    auth_session.last_used_at = now
    auth_session.expires_at = _refresh_expiry(now)
    lifetime = timedelta(minutes=auth_settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    access_token = jwt.create_access_token(
        user_id=auth_session.user_id, session_id=auth_session.id, issued_at=now, lifetime=lifetime
    )
    await session.commit()
    return TokenPair(
        access_token=access_token, refresh_token=refresh_token, expires_in=int(lifetime.total_seconds())
    )


async def login(session: AsyncSession, *, email: str, password: str, client: ClientInfo) -> TokenPair:
    user = await authenticate(session, email=email, password=password, ip_address=client.ip_address)
    now = utcnow()
    auth_session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        expires_at=_refresh_expiry(now),
        user_agent=utils.storable_text(client.user_agent, USER_AGENT_MAX_LENGTH),
        ip_address=utils.storable_text(client.ip_address, IP_ADDRESS_MAX_LENGTH),
    )
    session.add(auth_session)
    return await _issue_tokens(session, auth_session=auth_session, now=now)


async def refresh_tokens(session: AsyncSession, *, refresh_token: str) -> TokenPair:
    """Rotates the refresh token; one that was already rotated ends its whole session."""
    now = utcnow()
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, RefreshToken.session_id == AuthSession.id)
            .join(User, AuthSession.user_id == User.id)
            .where(RefreshToken.token_hash == utils.hash_secret_token(refresh_token))
        )
    ).first()
    if row is None:
        raise InvalidRefreshToken
    token, auth_session, user = row
    if not _session_is_live(auth_session, now) or not user.is_active:
        raise InvalidRefreshToken
    # The conditional update lets exactly one of two concurrent uses of the same token win.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    if claimed.rowcount != 1:
        await _end_session(session, auth_session=auth_session, now=now)
        raise RefreshTokenReused
    return await _issue_tokens(session, auth_session=auth_session, now=now)


async def _end_session(session: AsyncSession, *, auth_session: AuthSession, now: datetime) -> None:
    auth_session.revoked_at = now
    await session.commit()


async def revoke_session(session: AsyncSession, *, auth_session: AuthSession) -> None:
    await _end_session(session, auth_session=auth_session, now=utcnow())


async def revoke_all_sessions(session: AsyncSession, *, user: User) -> None:
    await revoke_sessions(session, user_id=user.id, now=utcnow())
    await session.commit()


async def revoke_sessions(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, keep: uuid.UUID | None = None
) -> None:
    """Ends every session of the user but `keep`, inside the caller's transaction."""
    statement = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    await session.execute(statement.values(revoked_at=now).execution_options(synchronize_session=False))


# Built once: building a statement and its cache key cost every authenticated request more CPU than
# running it. The values are bound per request. Another module may extend it with outer joins to
# what the same request reads next (a study and the caller's role in it, by more bound values): the
# caller and those rows then come in one round trip (see `read_caller`).
CALLER_QUERY = (
    select(User, AuthSession)
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(AuthSession.id == bindparam("session_id"), User.id == bindparam("user_id"))
)


async def read_caller(
    session: AsyncSession,
    *,
    claims: jwt.AccessClaims,
    query: Select = CALLER_QUERY,
    values: dict[str, object] | None = None,
) -> tuple[Authenticated, Row]:
    """The caller the claims of a verified access token name, read by `query` (CALLER_QUERY or an
    extension of it whose first two columns are still user and session), with the row it read.
    SessionRevoked unless the session is live and its user active: checked on every request, from
    the database, never from a cache."""
    params = {"session_id": claims.session_id, "user_id": claims.user_id, **(values or {})}
    row = (await session.execute(query, params)).first()
    if row is None:
        raise SessionRevoked
    user, auth_session = row[0], row[1]
    if not _session_is_live(auth_session, utcnow()) or not user.is_active:
        raise SessionRevoked
    return Authenticated(user=user, session=auth_session), row


async def authenticate_access_token(session: AsyncSession, *, token: str) -> Authenticated:
    """The caller behind an access token: signature and claims, then user and session in one query."""
    caller, _ = await read_caller(session, claims=jwt.decode_access_token(token))
    return caller


async def list_active_sessions(session: AsyncSession, *, user: User) -> list[AuthSession]:
    rows = await session.scalars(
        select(AuthSession)
        .where(
            AuthSession.user_id == user.id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utcnow(),
        )
        .order_by(AuthSession.last_used_at.desc(), AuthSession.id)
    )
    return list(rows)


async def get_active_session(
    session: AsyncSession, *, user: User, session_id: uuid.UUID
) -> AuthSession | None:
    auth_session = await session.get(AuthSession, session_id)
    if (
        auth_session is None
        or auth_session.user_id != user.id
        or not _session_is_live(auth_session, utcnow())
    ):
        return None
    return auth_session
