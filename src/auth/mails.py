"""The auth module's mails: queued with the change that causes them, composed when sent.

A reset mail is queued for any address that asks (so asking costs the same whether or not it
has an account); its composer finds the account when the mail is due, and only then makes the
token, whose hash is stored just before the mail is handed to the SMTP server. A registration of an
address that already has an account queues a note to it instead of a second account; where addresses
must be verified, a new address's registration waits (a pending registration) for the link that
makes its account.
"""

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import link_tokens, utils
from src.auth.config import auth_settings
from src.auth.constants import RESET_PASSWORD_PAGE, SIGN_IN_PAGE, VERIFY_EMAIL_PAGE, LinkTokenPurpose
from src.auth.models import PendingRegistration, User
from src.database import utcnow
from src.mail import service as mail_service
from src.mail.constants import MailKind, MailStatus
from src.mail.models import OutboxMail
from src.mail.service import Composition
from src.mail.templates import MailContent, page_link, page_url, render

CHANGED_AT_FORMAT = "%Y-%m-%d %H:%M"


def reset_token_lifetime() -> timedelta:
    return timedelta(minutes=auth_settings.PASSWORD_RESET_TOKEN_MINUTES)


def queue_password_reset_mail(session: AsyncSession, *, email: str, now: datetime) -> None:
    """Not sent within the token's lifetime (the SMTP server away), it is dropped: a link that
    arrives long after it was asked for would only puzzle."""
    mail_service.enqueue_mail(
        session, kind=MailKind.PASSWORD_RESET, recipient=email, discard_after=now + reset_token_lifetime()
    )


def queue_password_changed_notice(session: AsyncSession, *, user: User, now: datetime) -> None:
    mail_service.enqueue_mail(
        session,
        kind=MailKind.PASSWORD_CHANGED,
        recipient=user.email,
        params={"full_name": user.full_name, "changed_at": now.strftime(CHANGED_AT_FORMAT)},
    )


async def _newer_link_queued(session: AsyncSession, mail: OutboxMail) -> bool:
    """Whether a newer mail of the same kind waits for the same address: its link would kill this
    mail's at once (a newer link token replaces the older), so this one is not sent."""
    newer = exists().where(
        OutboxMail.kind == mail.kind,
        OutboxMail.recipient == mail.recipient,
        OutboxMail.status == MailStatus.PENDING,
        OutboxMail.created_at > mail.created_at,
    )
    return bool(await session.scalar(select(newer)))


async def compose_password_reset(
    session: AsyncSession, mail: OutboxMail, now: datetime
) -> Composition | None:
    """Nothing for an address without an active account, nor when a newer request for the same
    address waits (its mail would kill this one's link at once)."""
    user = await session.scalar(select(User).where(User.email == mail.recipient))
    if user is None or not user.is_active or await _newer_link_queued(session, mail):
        return None
    token = link_tokens.new_link_token()
    content = render(
        "password_reset",
        full_name=user.full_name,
        email=user.email,
        minutes=str(auth_settings.PASSWORD_RESET_TOKEN_MINUTES),
        link=page_link(RESET_PASSWORD_PAGE, token=token),
    )

    async def keep_token(keeping: AsyncSession) -> None:
        await link_tokens.store_link_token(
            keeping,
            user_id=user.id,
            purpose=LinkTokenPurpose.PASSWORD_RESET,
            token=token,
            lifetime=reset_token_lifetime(),
            now=now,
        )

    return Composition(content=content, keep_before_sending=keep_token)


async def compose_password_changed(
    _session: AsyncSession, mail: OutboxMail, _now: datetime
) -> Composition | None:
    content = render(
        "password_changed",
        full_name=str(mail.params["full_name"]),
        email=mail.recipient,
        changed_at=str(mail.params["changed_at"]),
        reset_page=page_url(RESET_PASSWORD_PAGE),
    )
    return Composition(content=content)


def verification_token_lifetime() -> timedelta:
    return timedelta(hours=auth_settings.EMAIL_VERIFICATION_TOKEN_HOURS)


def _verification_link_mail(template: str, *, full_name: str, email: str, token: str) -> MailContent:
    """A mail with a link to the verification page (an account's, or a pending registration's)."""
    return render(
        template,
        full_name=full_name,
        email=email,
        hours=str(auth_settings.EMAIL_VERIFICATION_TOKEN_HOURS),
        link=page_link(VERIFY_EMAIL_PAGE, token=token),
    )


def queue_verification_mail(session: AsyncSession, user: User) -> None:
    """A link to verify the account's address; not sent within the link's lifetime, dropped."""
    mail_service.enqueue_mail(
        session,
        kind=MailKind.EMAIL_VERIFICATION,
        recipient=user.email,
        discard_after=utcnow() + verification_token_lifetime(),
    )


async def compose_email_verification(
    session: AsyncSession, mail: OutboxMail, now: datetime
) -> Composition | None:
    """Nothing once the address is verified, for an inactive account, or when a newer request waits."""
    user = await session.scalar(select(User).where(User.email == mail.recipient))
    if (
        user is None
        or not user.is_active
        or user.email_verified_at is not None
        or await _newer_link_queued(session, mail)
    ):
        return None
    token = link_tokens.new_link_token()
    content = _verification_link_mail(
        "email_verification", full_name=user.full_name, email=user.email, token=token
    )
    user_id = user.id

    async def keep_token(keeping: AsyncSession) -> None:
        await link_tokens.store_link_token(
            keeping,
            user_id=user_id,
            purpose=LinkTokenPurpose.EMAIL_VERIFICATION,
            token=token,
            lifetime=verification_token_lifetime(),
            now=now,
        )

    return Composition(content=content, keep_before_sending=keep_token)


def queue_registration_attempt_notice(session: AsyncSession, *, email: str) -> None:
    """To the owner of an address someone tried to register again: the caller is told nothing."""
    mail_service.enqueue_mail(session, kind=MailKind.REGISTRATION_ATTEMPT, recipient=email)


async def compose_registration_attempt(
    session: AsyncSession, mail: OutboxMail, _now: datetime
) -> Composition | None:
    """Nothing for an inactive account: signing in or resetting would not help it."""
    user = await session.scalar(select(User).where(User.email == mail.recipient))
    if user is None or not user.is_active:
        return None
    content = render(
        "registration_attempt",
        full_name=user.full_name,
        email=user.email,
        sign_in_page=page_url(SIGN_IN_PAGE),
        reset_page=page_url(RESET_PASSWORD_PAGE),
    )
    return Composition(content=content)


def queue_registration_link(session: AsyncSession, *, email: str, now: datetime) -> None:
    """The link that makes a pending registration's account; not sent within its lifetime, dropped."""
    mail_service.enqueue_mail(
        session,
        kind=MailKind.REGISTRATION_LINK,
        recipient=email,
        discard_after=now + verification_token_lifetime(),
    )


async def compose_registration_link(
    session: AsyncSession, mail: OutboxMail, now: datetime
) -> Composition | None:
    """Nothing once the registration is gone (followed, expired), when the address got an account
    meanwhile (its link would be dead), or when a newer registration's mail waits."""
    pending = await session.scalar(
        select(PendingRegistration).where(
            PendingRegistration.email == mail.recipient, PendingRegistration.expires_at > now
        )
    )
    if (
        pending is None
        or await session.scalar(select(exists().where(User.email == mail.recipient)))
        or await _newer_link_queued(session, mail)
    ):
        return None
    token = link_tokens.new_link_token()
    content = _verification_link_mail(
        "registration_link", full_name=pending.full_name, email=pending.email, token=token
    )
    pending_id = pending.id

    async def keep_token(keeping: AsyncSession) -> None:
        # By id: a newer registration of the address (a new row) never gets this mail's token.
        await keeping.execute(
            update(PendingRegistration)
            .where(PendingRegistration.id == pending_id)
            .values(token_hash=utils.hash_secret_token(token))
            .execution_options(synchronize_session=False)
        )

    return Composition(content=content, keep_before_sending=keep_token)
