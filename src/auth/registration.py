"""Self-registration that says nothing about other accounts.

Every registration answers the same 202 after the same steps: it counts against the address's
limit, looks the address up, hashes the password, then writes and commits once. A new address gets
its (unverified) account and a verification mail; an address that already has an account (found by
the lookup, or by the unique index when a concurrent registration wins the race) gets no second
account, and its owner is mailed that someone tried. The caller learns which only from the mailbox.
Registering through an invitation's mailed link is the exception: its holder has the mailbox.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import mails, service
from src.auth.constants import Role
from src.auth.exceptions import EmailTaken
from src.auth.models import User
from src.auth.schemas import RegisterRequest
from src.database import utcnow
from src.mail import service as mail_service


async def register(session: AsyncSession, *, data: RegisterRequest) -> None:
    """Raises, for every address alike: 403 while registration is closed, 503 where no mail is sent
    (the answer sends the caller to their mailbox, and a taken address's owner hears only by mail),
    429 past the per-address limit."""
    service.check_registration_open()
    mail_service.require_mail()
    email = data.email  # normalized by the schema
    await service.count_registration(session, email=email, now=utcnow())
    taken = await service.email_is_taken(session, email=email)
    # Hashed for a taken address too: skipping the slowest step would tell it apart by the time.
    password_hash = await service.hash_password(data.password)
    if not taken and await _made_account(session, email=email, password_hash=password_hash, data=data):
        return
    mails.queue_registration_attempt_notice(session, email=email)
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
