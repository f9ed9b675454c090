"""Errors of study invitations."""

from src.exceptions import NotFound, PermissionDenied, UnprocessableEntity
from src.invitations.constants import ErrorCode


class InvitationNotFound(NotFound):
    code = ErrorCode.INVITATION_NOT_FOUND
    detail = "No such pending invitation (or it is not yours to see)."


class InvitationTokenInvalid(UnprocessableEntity):
    code = ErrorCode.INVITATION_TOKEN_INVALID
    detail = (
        "This invitation link does not work (any more): it was used, declined, revoked, replaced by a "
        "newer mail, or it expired. Ask the study's owner to send it again."
    )


class InvitationForAnotherAddress(PermissionDenied):
    code = ErrorCode.INVITATION_FOR_ANOTHER_ADDRESS
    detail = "This invitation was sent to another email address: sign in with that address to accept it."
