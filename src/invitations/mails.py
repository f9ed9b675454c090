"""The invitation mail: queued with the invitation, composed when sent.

Every invited address gets the same mail, account or not (the link's page lets its reader sign in
or register). The link's token is made when the mail leaves, and its hash stored on the
invitation just before the hand-over, but only if this mail is still the invitation's newest
(a resend queues another and kills this one's link).
"""

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth import link_tokens
from src.auth.models import User
from src.auth.utils import hash_secret_token
from src.invitations.constants import INVITATION_LIFETIME_DAYS, INVITATIONS_PAGE, InvitationStatus
from src.invitations.models import Invitation
from src.mail.models import OutboxMail
from src.mail.service import Composition
from src.mail.templates import page_link, render
from src.study.models import Study

EXPIRES_FORMAT = "%Y-%m-%d %H:%M UTC"


async def compose_invitation(session: AsyncSession, mail: OutboxMail, now: datetime) -> Composition | None:
    """Nothing when the invitation was answered, revoked, has expired or was sent again since."""
    invitation = await session.get(Invitation, uuid.UUID(str(mail.params["invitation_id"])))
    if (
        invitation is None
        or invitation.status != InvitationStatus.PENDING
        or invitation.mail_id != mail.id
        or invitation.expires_at <= now
    ):
        return None
    study = await session.get(Study, invitation.study_id)
    inviter = await session.get(User, invitation.invited_by) if invitation.invited_by else None
    if study is None:
        return None
    token = link_tokens.new_link_token()
    content = render(
        "invitation",
        inviter_name=inviter.full_name if inviter is not None else "A study owner",
        study_code=study.code,
        study_title=study.title,
        role=str(invitation.role),
        email=invitation.email,
        days=str(INVITATION_LIFETIME_DAYS),
        expires_at=invitation.expires_at.strftime(EXPIRES_FORMAT),
        link=page_link(INVITATIONS_PAGE, token=token),
    )
    invitation_id, mail_id = invitation.id, mail.id

    async def keep_token(keeping: AsyncSession) -> None:
        await keeping.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                Invitation.mail_id == mail_id,
                Invitation.status == InvitationStatus.PENDING,
            )
            .values(token_hash=hash_secret_token(token))
            .execution_options(synchronize_session=False)
        )

    return Composition(content=content, keep_before_sending=keep_token)
