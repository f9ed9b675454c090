"""Password reset by mail: ask for a link, then set a new password with the link's token.

Asking costs the same whether or not the address has an account: the same statements run (the
throttle, one outbox row), nobody is looked up and no password is hashed; the sender finds the
account later (src/auth/mails.py). The answer is always the same 202.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import link_tokens, mails, service, throttles
from src.auth.constants import LinkTokenPurpose
from src.auth.exceptions import ResetTokenInvalid
from src.auth.models import User
from src.auth.schemas import PasswordResetConfirm
from src.database import utcnow
from src.mail import service as mail_service


async def request_password_reset(session: AsyncSession, *, email: str) -> None:
    """`email` is normalized (the schema's Email). Raises 503 where no mail is sent, 429 past the
    per-address limit, for every address alike."""
    mail_service.require_mail()
    now = utcnow()
    await throttles.count_password_reset_request(session, email=email, now=now)
    mails.queue_password_reset_mail(session, email=email, now=now)
    await session.commit()


async def confirm_password_reset(session: AsyncSession, *, data: PasswordResetConfirm) -> None:
    """Sets the new password if the token is live, spending it; every session of the user ends,
    every other reset link dies, sign-in locks are lifted (the mailbox's owner has shown up) and
    a notice is mailed."""
    purpose = LinkTokenPurpose.PASSWORD_RESET
    found = await link_tokens.find_link_token(session, token=data.token, purpose=purpose, now=utcnow())
    await session.commit()  # ends the read: no connection is held while the password hashes
    if found is None:
        raise ResetTokenInvalid
    password_hash = await service.hash_password(data.new_password)
    now = utcnow()
    # Spent in the same transaction as the change: of two uses at once, one wins, the other is refused.
    if not await link_tokens.spend_link_token(session, token_id=found.id, now=now):
        await session.rollback()
        raise ResetTokenInvalid
    user = await session.get(User, found.user_id)
    if user is None or not user.is_active:  # deactivated (or deleted) while the password hashed
        await session.rollback()
        raise ResetTokenInvalid
    user.password_hash = password_hash
    await link_tokens.revoke_link_tokens(session, user_id=user.id, purpose=purpose)
    await service.revoke_sessions(session, user_id=user.id, now=now)
    await throttles.forget_login_throttles(session, email=user.email)
    mails.queue_password_changed_notice(session, user=user, now=now)
    await session.commit()
