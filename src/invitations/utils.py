"""Pure helpers of invitations (no I/O)."""

from datetime import timedelta

from src.invitations.constants import INVITATION_LIFETIME_DAYS
from src.invitations.models import Invitation


def invitation_lifetime() -> timedelta:
    return timedelta(days=INVITATION_LIFETIME_DAYS)


def activity_details(invitation: Invitation, **more: object) -> dict[str, object]:
    """What the study's activity log says of an invitation (invited, accepted, declined, revoked)."""
    return {"invitation_id": str(invitation.id), "email": invitation.email, "role": invitation.role, **more}
