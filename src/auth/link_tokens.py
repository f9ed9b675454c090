"""One-time tokens mailed in links: stored by hash, one live token per user and purpose, spent by
deleting it. Database work only, inside the caller's transaction (nothing here commits)."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import utils
from src.auth.constants import LINK_TOKEN_BYTES, LinkTokenPurpose
from src.auth.models import LinkToken, User


def new_link_token() -> str:
    return utils.new_secret_token(LINK_TOKEN_BYTES)


async def store_link_token(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    purpose: LinkTokenPurpose,
    token: str,
    lifetime: timedelta,
    now: datetime,
) -> None:
    """Keeps `token` (its hash) as the user's one live token for `purpose`: older ones die."""
    await revoke_link_tokens(session, user_id=user_id, purpose=purpose)
    session.add(
        LinkToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=utils.hash_secret_token(token),
            created_at=now,
            expires_at=now + lifetime,
        )
    )


async def find_link_token(
    session: AsyncSession, *, token: str, purpose: LinkTokenPurpose, now: datetime
) -> LinkToken | None:
    """The live token for `purpose` of an active user, or None (unknown, spent, expired)."""
    return await session.scalar(
        select(LinkToken)
        .join(User, User.id == LinkToken.user_id)
        .where(
            LinkToken.token_hash == utils.hash_secret_token(token),
            LinkToken.purpose == purpose,
            LinkToken.expires_at > now,
            User.is_active.is_(True),
        )
    )


async def spend_link_token(session: AsyncSession, *, token_id: uuid.UUID, now: datetime) -> bool:
    """Deletes the token if it is still live; of two requests spending it at once, one gets True."""
    spent = await session.execute(
        delete(LinkToken)
        .where(LinkToken.id == token_id, LinkToken.expires_at > now)
        .execution_options(synchronize_session=False)
    )
    return spent.rowcount == 1


async def revoke_link_tokens(
    session: AsyncSession, *, user_id: uuid.UUID, purpose: LinkTokenPurpose | None = None
) -> None:
    """Kills the user's tokens for `purpose` (all purposes when None)."""
    statement = delete(LinkToken).where(LinkToken.user_id == user_id)
    if purpose is not None:
        statement = statement.where(LinkToken.purpose == purpose)
    await session.execute(statement.execution_options(synchronize_session=False))
