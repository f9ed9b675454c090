"""Business rules of study invitations: invite, resend, revoke, and the invitee's answer.

Inviting costs the same whatever the address: no account is looked up (only whether a member of
the study has the address, which its owners see anyway), one invitation row, one outbox row, one
activity entry. The mail goes to every address alike; its composer (src/invitations/mails.py)
makes the link's token when the mail leaves and stores its hash then. A study is joined only by
its invitee's answer: accepting adds the membership, in the transaction that spends the invitation.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from src.auth import registration as auth_registration
from src.auth.models import User
from src.auth.schemas import RegisterRequest
from src.auth.utils import hash_secret_token
from src.database import count_up_to, utcnow
from src.exceptions import ResourceBusy
from src.invitations.constants import (
    INVITATION_KEEP_DAYS,
    PRUNE_BATCH_ROWS,
    InvitationStatus,
)
from src.invitations.exceptions import InvitationForAnotherAddress, InvitationNotFound, InvitationTokenInvalid
from src.invitations.models import Invitation
from src.invitations.utils import activity_details, invitation_lifetime
from src.mail import service as mail_service
from src.mail.constants import MailKind
from src.schemas import PageParams
from src.study import activity as study_activity
from src.study import service as study_service
from src.study.constants import ActivityAction, StudyRole
from src.study.exceptions import AlreadyAMember
from src.study.models import Study
from src.study.service import StudyAccess


@dataclass(frozen=True, slots=True)
class ListedInvitation:
    invitation: Invitation
    inviter_name: str | None


@dataclass(frozen=True, slots=True)
class ReceivedInvitation:
    """An invitation as its invitee sees it: with the study it is for."""

    invitation: Invitation
    study: Study
    inviter_name: str | None


def _live(now: datetime) -> ColumnElement[bool]:
    return (Invitation.status == InvitationStatus.PENDING) & (Invitation.expires_at > now)


# The owner's side


def _queue_mail(session: AsyncSession, *, invitation_id: uuid.UUID, email: str, now: datetime) -> dict:
    """Queues the invitation's mail; returns what makes it the only mail whose link will work: the
    link of any earlier mail dies (its token's hash is cleared), and the invitation runs its full
    lifetime from now."""
    lifetime = invitation_lifetime()
    mail = mail_service.enqueue_mail(
        session,
        kind=MailKind.INVITATION,
        recipient=email,
        params={"invitation_id": str(invitation_id)},
        discard_after=now + lifetime,
    )
    return {
        "token_hash": None,
        "expires_at": now + lifetime,
        "mail_id": mail.id if mail is not None else None,
    }


async def _renew_if_pending(
    session: AsyncSession, invitation_id: uuid.UUID, **values: object
) -> Invitation | None:
    """Writes `values` to the invitation only while it is pending (nobody answered or revoked it
    meanwhile); the invitation as written, or None."""
    return await session.scalar(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.status == InvitationStatus.PENDING)
        .values(**values)
        .returning(Invitation)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


async def _pending_for_address(session: AsyncSession, *, study_id: uuid.UUID, email: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Invitation.id).where(
            Invitation.study_id == study_id,
            Invitation.email == email,
            Invitation.status == InvitationStatus.PENDING,
        )
    )


async def invite(session: AsyncSession, *, access: StudyAccess, email: str, role: StudyRole) -> Invitation:
    """Invites the (normalized) `email` with `role`; a pending invitation of the same address is
    renewed instead (the new role, a new link, the old link dead). A member's address is 409
    ALREADY_A_MEMBER: the owner sees the members anyway, so that tells nothing new. Losing a race
    for the same address (another invite, or its answer, between the read and the write) is 409
    RESOURCE_BUSY: nothing was written, and a retry succeeds."""
    mail_service.require_mail()
    now = utcnow()
    study_id = access.study.id
    if await study_service.has_member_with_email(session, study_id=study_id, email=email):
        await session.rollback()
        raise AlreadyAMember
    pending_id = await _pending_for_address(session, study_id=study_id, email=email)
    invitation_id = pending_id or uuid.uuid4()
    values = {"role": role, "invited_by": access.user.id}
    values |= _queue_mail(session, invitation_id=invitation_id, email=email, now=now)
    if pending_id is None:
        invitation = Invitation(
            id=invitation_id,
            study_id=study_id,
            email=email,
            status=InvitationStatus.PENDING,
            created_at=now,
            **values,
        )
        session.add(invitation)
    else:
        renewed = await _renew_if_pending(session, pending_id, **values)
        if renewed is None:
            await session.rollback()
            raise ResourceBusy
        invitation = renewed
    study_activity.record_activity(
        session,
        study_id=study_id,
        actor=access.user,
        action=ActivityAction.MEMBER_INVITED,
        details=activity_details(invitation),
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()  # the same address invited by another request at the same moment
        raise ResourceBusy from None
    return invitation


def _study_invitations(study_id: uuid.UUID) -> Select:
    inviter = aliased(User)
    return (
        select(Invitation, inviter.full_name)
        .outerjoin(inviter, inviter.id == Invitation.invited_by)
        .where(Invitation.study_id == study_id, Invitation.status == InvitationStatus.PENDING)
    )


async def list_study_invitations(
    session: AsyncSession, *, study: Study, page: PageParams
) -> tuple[list[ListedInvitation], int, bool]:
    """The study's pending invitations, expired ones included (an owner may resend them), oldest first."""
    query = _study_invitations(study.id)
    total, total_is_exact = await count_up_to(session, query)
    rows = await session.execute(
        query.order_by(Invitation.created_at, Invitation.email).offset(page.offset).limit(page.page_size)
    )
    return [ListedInvitation(invitation, name) for invitation, name in rows], total, total_is_exact


async def get_study_invitation(
    session: AsyncSession, *, study: Study, invitation_id: uuid.UUID
) -> ListedInvitation | None:
    row = (await session.execute(_study_invitations(study.id).where(Invitation.id == invitation_id))).first()
    return ListedInvitation(*row) if row is not None else None


async def resend(session: AsyncSession, *, access: StudyAccess, invitation: Invitation) -> Invitation:
    """A new mail with a new link (the old link dies), and a new lifetime: an expired one lives again."""
    mail_service.require_mail()
    values = _queue_mail(session, invitation_id=invitation.id, email=invitation.email, now=utcnow())
    renewed = await _renew_if_pending(session, invitation.id, **values)
    if renewed is None:
        await session.rollback()
        raise InvitationNotFound
    study_activity.record_activity(
        session,
        study_id=access.study.id,
        actor=access.user,
        action=ActivityAction.MEMBER_INVITED,
        details=activity_details(renewed, resent=True),
    )
    await session.commit()
    return renewed


async def revoke(session: AsyncSession, *, access: StudyAccess, invitation: Invitation) -> None:
    await _answer(session, invitation, status=InvitationStatus.REVOKED, now=utcnow(), live_only=False)
    study_activity.record_activity(
        session,
        study_id=access.study.id,
        actor=access.user,
        action=ActivityAction.INVITATION_REVOKED,
        details=activity_details(invitation),
    )
    await session.commit()


# The invitee's side


async def _answer(
    session: AsyncSession, invitation: Invitation, *, status: InvitationStatus, now: datetime, live_only: bool
) -> None:
    """Moves a pending invitation to `status`, killing its link; of two answers at once one wins,
    the other is refused (InvitationNotFound, rolled back). Not committed."""
    condition = _live(now) if live_only else Invitation.status == InvitationStatus.PENDING
    answered = await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, condition)
        .values(status=status, token_hash=None, responded_at=now)
        .execution_options(synchronize_session=False)
    )
    if answered.rowcount != 1:
        await session.rollback()
        raise InvitationNotFound


async def find_by_token(session: AsyncSession, *, token: str) -> Invitation:
    """The live invitation whose mailed link carries `token`; else 422 INVITATION_TOKEN_INVALID."""
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == hash_secret_token(token), _live(utcnow()))
    )
    if invitation is None:
        raise InvitationTokenInvalid
    return invitation


def check_addressed_to(invitation: Invitation, user: User) -> None:
    """Both addresses are stored normalized: equal here means equal case-insensitively."""
    if invitation.email != user.email:
        raise InvitationForAnotherAddress


async def accept(session: AsyncSession, *, invitation: Invitation, user: User) -> Invitation:
    """`user` (whose address the invitation is for) joins the study with the invitation's role."""
    now = utcnow()
    await _answer(session, invitation, status=InvitationStatus.ACCEPTED, now=now, live_only=True)
    try:
        await study_service.admit_member(
            session, study_id=invitation.study_id, user=user, role=invitation.role
        )
    except AlreadyAMember:
        await session.rollback()
        raise
    study_activity.record_activity(
        session,
        study_id=invitation.study_id,
        actor=user,
        action=ActivityAction.INVITATION_ACCEPTED,
        details=activity_details(invitation, user_id=str(user.id)),
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AlreadyAMember from None  # joined by a concurrent request
    return invitation


async def decline(session: AsyncSession, *, invitation: Invitation, user: User | None) -> None:
    """`user` is None when declined from the mailed link without signing in."""
    await _answer(session, invitation, status=InvitationStatus.DECLINED, now=utcnow(), live_only=True)
    study_activity.record_activity(
        session,
        study_id=invitation.study_id,
        actor=user,
        action=ActivityAction.INVITATION_DECLINED,
        details=activity_details(invitation),
    )
    await session.commit()


def _received(email: str, now: datetime) -> Select:
    inviter = aliased(User)
    return (
        select(Invitation, Study, inviter.full_name)
        .join(Study, Study.id == Invitation.study_id)
        .outerjoin(inviter, inviter.id == Invitation.invited_by)
        .where(Invitation.email == email, _live(now))
    )


async def list_received(
    session: AsyncSession, *, user: User, page: PageParams
) -> tuple[list[ReceivedInvitation], int, bool]:
    """The live invitations to the user's address, newest first."""
    query = _received(user.email, utcnow())
    total, total_is_exact = await count_up_to(session, query)
    rows = await session.execute(
        query.order_by(Invitation.created_at.desc(), Invitation.id).offset(page.offset).limit(page.page_size)
    )
    return [ReceivedInvitation(*row) for row in rows], total, total_is_exact


async def get_received(
    session: AsyncSession, *, user: User, invitation_id: uuid.UUID
) -> ReceivedInvitation | None:
    """One live invitation to the user's address; None for anyone else's (which is not revealed)."""
    row = (
        await session.execute(_received(user.email, utcnow()).where(Invitation.id == invitation_id))
    ).first()
    return ReceivedInvitation(*row) if row is not None else None


async def accept_with_token(session: AsyncSession, *, token: str, user: User) -> ReceivedInvitation:
    invitation = await find_by_token(session, token=token)
    check_addressed_to(invitation, user)
    study = await session.get(Study, invitation.study_id)
    await _spent_or_invalid(accept(session, invitation=invitation, user=user))
    return ReceivedInvitation(invitation, study, None)


async def decline_with_token(session: AsyncSession, *, token: str) -> None:
    invitation = await find_by_token(session, token=token)
    await _spent_or_invalid(decline(session, invitation=invitation, user=None))


async def _spent_or_invalid(answering) -> None:
    """A token whose invitation was answered between its lookup and the answer is one more dead link."""
    try:
        await answering
    except InvitationNotFound:
        raise InvitationTokenInvalid from None


async def register_invitee(session: AsyncSession, *, data: RegisterRequest, token: str) -> User:
    """An account for the invited address, made through the invitation's link: the mail reached that
    address, so it is verified; and the study is joined at once. An invitation answered or revoked
    while the account was being made leaves the account as it is (verified, not a member)."""
    invitation = await find_by_token(session, token=token)
    if invitation.email != data.email:
        raise InvitationForAnotherAddress
    await session.commit()  # ends the read: no connection is held while the password hashes
    user = await auth_registration.register_invited_user(session, data=data)
    try:
        await accept(session, invitation=invitation, user=user)
    except (InvitationNotFound, AlreadyAMember):
        await session.refresh(user)  # the rollback expired it; the answer shows it
    return user


# Pruning


async def prune_finished_invitations(
    session: AsyncSession, *, max_rows: int, batch_rows: int = PRUNE_BATCH_ROWS, now: datetime | None = None
) -> int:
    """Deletes up to `max_rows` invitations answered, revoked or expired more than
    INVITATION_KEEP_DAYS ago, `batch_rows` per transaction (`python main.py prune`)."""
    cutoff = (now or utcnow()) - timedelta(days=INVITATION_KEEP_DAYS)
    finished = ((Invitation.status != InvitationStatus.PENDING) & (Invitation.responded_at < cutoff)) | (
        Invitation.expires_at < cutoff
    )
    total = 0
    while total < max_rows:
        limit = min(batch_rows, max_rows - total)
        batch = select(Invitation.id).where(finished).limit(limit)
        result = await session.execute(delete(Invitation).where(Invitation.id.in_(batch)))
        await session.commit()
        deleted = max(result.rowcount or 0, 0)
        total += deleted
        if deleted < limit:
            break
    return total
