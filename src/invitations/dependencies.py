"""Which invitation the caller means, and may they act on it.

An owner manages the invitations of their study only (anyone else gets the study routes' 404 or
403); an invitee acts on the live invitations to their own address only: anyone else's is 404.
"""

import uuid
from typing import Annotated

from fastapi import Depends

from src.database import DbSession
from src.dependencies import VerifiedUser
from src.invitations import service
from src.invitations.exceptions import InvitationNotFound
from src.invitations.service import ListedInvitation, ReceivedInvitation
from src.study.dependencies import OwnedStudy


async def valid_invitation_for_owner(
    invitation_id: uuid.UUID, access: OwnedStudy, db: DbSession
) -> ListedInvitation:
    listed = await service.get_study_invitation(db, study=access.study, invitation_id=invitation_id)
    if listed is None:
        raise InvitationNotFound
    return listed


StudyInvitation = Annotated[ListedInvitation, Depends(valid_invitation_for_owner)]


async def valid_invitation_for_invitee(
    invitation_id: uuid.UUID, user: VerifiedUser, db: DbSession
) -> ReceivedInvitation:
    received = await service.get_received(db, user=user, invitation_id=invitation_id)
    if received is None:
        raise InvitationNotFound
    return received


MyInvitation = Annotated[ReceivedInvitation, Depends(valid_invitation_for_invitee)]
