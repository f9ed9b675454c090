"""Routes of study invitations: the owners' under /api/v1/studies/{study_id}, the invitee's under
/api/v1/invitations."""

from fastapi import APIRouter, status

from src.auth.exceptions import EmailNotVerified
from src.database import DbSession, utcnow
from src.dependencies import IdempotentCreate, Pagination, VerifiedUser
from src.exceptions import IDEMPOTENCY_ERRORS, ResourceBusy, problem_responses
from src.invitations import service
from src.invitations.dependencies import MyInvitation, StudyInvitation
from src.invitations.exceptions import InvitationForAnotherAddress, InvitationNotFound, InvitationTokenInvalid
from src.invitations.models import Invitation
from src.invitations.schemas import (
    InvitationAccepted,
    InvitationCreate,
    InvitationRead,
    InvitationTokenBody,
    InvitedStudy,
    ReceivedInvitationRead,
)
from src.invitations.service import ReceivedInvitation
from src.mail.exceptions import MailNotConfigured
from src.schemas import Page, page_of
from src.study.dependencies import OwnedStudy
from src.study.exceptions import BODY, ROLE, TOKEN_ERRORS, AlreadyAMember
from src.study.models import Study

router = APIRouter(tags=["invitations"])


def invitation_read(invitation: Invitation, inviter_name: str | None) -> InvitationRead:
    return InvitationRead(
        id=invitation.id,
        study_id=invitation.study_id,
        email=invitation.email,
        role=invitation.role,
        status=invitation.status,
        invited_by_name=inviter_name,
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        expired=invitation.expires_at <= utcnow(),
    )


def invited_study(study: Study) -> InvitedStudy:
    return InvitedStudy(id=study.id, code=study.code, title=study.title)


def received_read(received: ReceivedInvitation) -> ReceivedInvitationRead:
    return ReceivedInvitationRead(
        id=received.invitation.id,
        study=invited_study(received.study),
        role=received.invitation.role,
        invited_by_name=received.inviter_name,
        expires_at=received.invitation.expires_at,
    )


# The owners' side


@router.post(
    "/studies/{study_id}/members",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InvitationRead,
    summary="Invite someone into the study",
    description="Owners only. Nobody is added here: the address is mailed an invitation "
    "(`{PUBLIC_URL}/invitations#token=...`, working once, for 7 days) and joins with `role` only by "
    "accepting it (`POST /api/v1/invitations/accept`). The answer is the same 202 with the pending "
    "invitation whether or not the address has an account, after the same work: nothing here says who "
    "is registered. Inviting an address that already has a pending invitation renews it (the new role, "
    "a new link, the old link dead). An address of a member is 409 `ALREADY_A_MEMBER`. Roles: `owner` "
    "(everything, including members, status and delete), `editor` (details, sample fields, samples), "
    "`viewer` (read). 503 `MAIL_NOT_CONFIGURED` where the server sends no mail.",
    responses=problem_responses(
        *BODY, *ROLE, AlreadyAMember, MailNotConfigured, ResourceBusy, *IDEMPOTENCY_ERRORS
    ),
)
async def invite_member(
    data: InvitationCreate, access: OwnedStudy, _: IdempotentCreate, db: DbSession
) -> InvitationRead:
    invitation = await service.invite(db, access=access, email=data.email, role=data.role)
    return invitation_read(invitation, access.user.full_name)


@router.get(
    "/studies/{study_id}/invitations",
    response_model=Page[InvitationRead],
    summary="List a study's pending invitations",
    description="Owners only. Invitations not yet accepted, declined or revoked, oldest first; `expired` "
    "ones are listed too (resend gives them a new lifetime).",
    responses=problem_responses(*ROLE),
)
async def list_study_invitations(access: OwnedStudy, page: Pagination, db: DbSession) -> dict:
    listed, total, total_is_exact = await service.list_study_invitations(db, study=access.study, page=page)
    items = [invitation_read(entry.invitation, entry.inviter_name) for entry in listed]
    return page_of(items, total, total_is_exact, page)


@router.post(
    "/studies/{study_id}/invitations/{invitation_id}/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InvitationRead,
    summary="Send a pending invitation again",
    description="Owners only. A new mail with a new link: the link of every earlier mail stops working, "
    "and the invitation lives 7 days from now (an expired one too). An invitation answered or revoked "
    "meanwhile is 404.",
    responses=problem_responses(*ROLE, InvitationNotFound, MailNotConfigured),
)
async def resend_invitation(listed: StudyInvitation, access: OwnedStudy, db: DbSession) -> InvitationRead:
    invitation = await service.resend(db, access=access, invitation=listed.invitation)
    return invitation_read(invitation, listed.inviter_name)


@router.delete(
    "/studies/{study_id}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a pending invitation",
    description="Owners only. Its link stops working at once; the address can be invited again later.",
    responses=problem_responses(*ROLE, InvitationNotFound),
)
async def revoke_invitation(listed: StudyInvitation, access: OwnedStudy, db: DbSession) -> None:
    await service.revoke(db, access=access, invitation=listed.invitation)


# The invitee's side


@router.get(
    "/invitations",
    response_model=Page[ReceivedInvitationRead],
    summary="Your pending invitations",
    description="The live invitations to your account's address, newest first, each with its study "
    "and role: accept or decline one by its `id`, without the mail. Where addresses must be verified "
    "(`REQUIRE_EMAIL_VERIFICATION`), these routes need a verified address (else 403 `EMAIL_NOT_VERIFIED`): "
    "the address is what names you here.",
    responses=problem_responses(*TOKEN_ERRORS, EmailNotVerified),
)
async def list_my_invitations(user: VerifiedUser, page: Pagination, db: DbSession) -> dict:
    received, total, total_is_exact = await service.list_received(db, user=user, page=page)
    return page_of([received_read(entry) for entry in received], total, total_is_exact, page)


@router.post(
    "/invitations/accept",
    response_model=InvitationAccepted,
    summary="Accept an invitation with its mailed token",
    description="`token` is the `token` of the mailed link's fragment. Signed in with the invited "
    "address (compared case-insensitively), you join the study with the invitation's role. A token "
    "that is unknown, used, declined, revoked, replaced by a resend or expired is one and the same 422 "
    "`INVITATION_TOKEN_INVALID`; signed in with another address, 403 `INVITATION_FOR_ANOTHER_ADDRESS` "
    "(the token stays usable). Without an account, register with the token instead "
    "(`POST /api/v1/auth/register` with `invitation_token`). Where addresses must be verified "
    "(`REQUIRE_EMAIL_VERIFICATION`), an account not yet verified gets 403 `EMAIL_NOT_VERIFIED`.",
    responses=problem_responses(
        *BODY,
        *TOKEN_ERRORS,
        EmailNotVerified,
        InvitationTokenInvalid,
        InvitationForAnotherAddress,
        AlreadyAMember,
    ),
)
async def accept_invitation_with_token(
    data: InvitationTokenBody, user: VerifiedUser, db: DbSession
) -> InvitationAccepted:
    accepted = await service.accept_with_token(db, token=data.token, user=user)
    return InvitationAccepted(study=invited_study(accepted.study), role=accepted.invitation.role)


@router.post(
    "/invitations/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Decline an invitation with its mailed token",
    description="No sign-in needed: the mailed token is the proof. The invitation ends and its link "
    "stops working; a dead token is 422 `INVITATION_TOKEN_INVALID`.",
    responses=problem_responses(*BODY, InvitationTokenInvalid),
)
async def decline_invitation_with_token(data: InvitationTokenBody, db: DbSession) -> None:
    await service.decline_with_token(db, token=data.token)


@router.post(
    "/invitations/{invitation_id}/accept",
    response_model=InvitationAccepted,
    summary="Accept one of your pending invitations",
    description="An invitation from `GET /api/v1/invitations`. Anyone else's, and one no longer pending, "
    "is 404.",
    responses=problem_responses(*TOKEN_ERRORS, EmailNotVerified, InvitationNotFound, AlreadyAMember),
)
async def accept_invitation(received: MyInvitation, user: VerifiedUser, db: DbSession) -> InvitationAccepted:
    await service.accept(db, invitation=received.invitation, user=user)
    return InvitationAccepted(study=invited_study(received.study), role=received.invitation.role)


@router.post(
    "/invitations/{invitation_id}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Decline one of your pending invitations",
    description="An invitation from `GET /api/v1/invitations`. Anyone else's, and one no longer pending, "
    "is 404.",
    responses=problem_responses(*TOKEN_ERRORS, EmailNotVerified, InvitationNotFound),
)
async def decline_invitation(received: MyInvitation, user: VerifiedUser, db: DbSession) -> None:
    await service.decline(db, invitation=received.invitation, user=user)
