"""Self-registration that says nothing about other accounts.

Every registration answers the same 202 after the same steps: it counts against the address's
limit, looks the address up, hashes the password, then writes and commits once. An address that
already has an account (found by the lookup, or by the unique index when a concurrent registration
wins the race) gets no second account, and its owner is mailed that someone tried. The caller learns
which only from the mailbox.

A new address: where addresses must be verified (REQUIRE_EMAIL_VERIFICATION), no account is made
yet, only a pending registration (no password: the body's is checked, hashed like every other
and dropped) and a mailed link; following the link with a password makes the verified account
with that password. Whoever registers an address last sends the link, but only the mailbox's owner
can follow it, so nobody else can choose the password of the account it makes. Until then signing
in fails exactly as with a wrong password, so registering and then signing in cannot tell a new
address from a taken one either.
Where verification is not required, the (unverified) account is made at once and may sign in: that
setting cannot hide who is registered, since signing in right after registering is its point.

Registering through an invitation's mailed link is the exception: its holder has the mailbox.
"""

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import mails, pruning, service, throttles, utils
from src.auth.config import auth_settings
from src.auth.constants import PRUNE_BATCH_ROWS, Role
from src.auth.exceptions import EmailTaken, PasswordRequired, VerificationTokenInvalid
from src.auth.models import PendingRegistration, User
from src.auth.schemas import RegisterRequest
from src.database import insert_for, utcnow
from src.mail import service as mail_service


async def register(session: AsyncSession, *, data: RegisterRequest) -> None:
    """Raises, for every address alike: 403 while registration is closed, 503 where no mail is sent
    (the answer sends the caller to their mailbox, and a taken address's owner hears only by mail),
    429 past the per-address limit."""
    service.check_registration_open()
    mail_service.require_mail()
    email = data.email  # normalized by the schema
    now = utcnow()
    await throttles.count_registration(session, email=email, now=now)
    taken = await service.email_is_taken(session, email=email)
    # Hashed for a taken address too: skipping the slowest step would tell it apart by the time.
    password_hash = await service.hash_password(data.password)
    if not taken:
        if auth_settings.requires_email_verification:
            await _keep_pending(session, email=email, data=data, now=now)
            return
        if await _made_account(session, email=email, password_hash=password_hash, data=data):
            return
    mails.queue_registration_attempt_notice(session, email=email)
    await session.commit()


async def _keep_pending(session: AsyncSession, *, email: str, data: RegisterRequest, now: datetime) -> None:
    """The address's one pending registration, replacing an older one (a new id and no token yet:
    the older link dies), with the mail whose link makes the account. One upsert, so two
    registrations of the address at once leave one row, the later."""
    values = {
        "id": uuid.uuid4(),
        "full_name": data.full_name,
        "token_hash": None,
        "created_at": now,
        "expires_at": now + mails.verification_token_lifetime(),
    }
    upsert = insert_for(session, PendingRegistration).values(email=email, **values)
    await session.execute(upsert.on_conflict_do_update(index_elements=["email"], set_=values))
    mails.queue_registration_link(session, email=email, now=now)
    await session.commit()


async def _made_account(
    session: AsyncSession, *, email: str, password_hash: str, data: RegisterRequest
) -> bool:
    """False when a concurrent registration of the address won the race (nothing was written)."""
    try:
        await service.insert_user(
            session,
            email=email,
            password_hash=password_hash,
            full_name=data.full_name,
            role=Role.RESEARCHER,
            queue_mails=mails.queue_verification_mail,
        )
    except EmailTaken:
        return False
    return True


async def verify_email(session: AsyncSession, *, token: str, password: str | None) -> None:
    """A pending registration's link makes its account with `password` (PasswordRequired without
    one, the link kept); any other verification link verifies the address of the account it was
    mailed to (service.verify_email), and `password` is ignored. A dead link of either kind is
    VerificationTokenInvalid."""
    now = utcnow()
    pending = await session.scalar(
        select(PendingRegistration).where(
            PendingRegistration.token_hash == utils.hash_secret_token(token),
            PendingRegistration.expires_at > now,
        )
    )
    if pending is None:
        await service.verify_email(session, token=token)
        return
    if password is None:
        raise PasswordRequired
    pending_id, email, full_name = pending.id, pending.email, pending.full_name
    # No connection held while hashing (the slowest step); the delete below re-checks the link.
    await session.rollback()
    password_hash = await service.hash_password(password)
    await _make_pending_account(
        session, pending_id=pending_id, email=email, full_name=full_name, password_hash=password_hash, now=now
    )


async def _make_pending_account(
    session: AsyncSession,
    *,
    pending_id: uuid.UUID,
    email: str,
    full_name: str,
    password_hash: str,
    now: datetime,
) -> User:
    """The verified researcher's account, made in the transaction that spends the registration. An
    account made meanwhile for the address (by an admin, through an invitation's link) kills the
    link: one account, whatever the order (the unique index decides a race)."""
    spent = await session.execute(
        delete(PendingRegistration)
        .where(PendingRegistration.id == pending_id, PendingRegistration.expires_at > now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # spent by a request that got there first
        await session.rollback()
        raise VerificationTokenInvalid
    if await service.get_user_by_email(session, email=email) is not None:
        await session.commit()  # the dead registration goes; nothing else was written
        raise VerificationTokenInvalid
    try:
        return await service.insert_user(
            session,
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            role=Role.RESEARCHER,
            email_verified=True,
        )
    except EmailTaken:
        raise VerificationTokenInvalid from None


async def prune_expired_registrations(
    session: AsyncSession, *, max_rows: int, batch_rows: int = PRUNE_BATCH_ROWS, now: datetime | None = None
) -> int:
    """Deletes up to `max_rows` pending registrations whose link has expired (refused anyway, so
    only clutter), `batch_rows` per transaction."""
    now = now or utcnow()

    async def prune_batch(limit: int) -> int:
        expired = select(PendingRegistration.id).where(PendingRegistration.expires_at <= now).limit(limit)
        result = await session.execute(
            delete(PendingRegistration)
            .where(PendingRegistration.id.in_(expired), PendingRegistration.expires_at <= now)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        return max(result.rowcount or 0, 0)

    return await pruning.in_batches(prune_batch, batch_rows=batch_rows, max_rows=max_rows)


async def register_invited_user(session: AsyncSession, *, data: RegisterRequest) -> User:
    """A researcher's account made through an invitation's mailed link: the mail reached the
    address, so it is verified, and the link's holder may learn that it is taken (EmailTaken)."""
    return await service.create_user(
        session,
        email=data.email,
        password=data.password,
        full_name=data.full_name,
        role=Role.RESEARCHER,
        email_verified=True,
    )
