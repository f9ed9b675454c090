"""Error codes, states and limits of study invitations."""

from enum import StrEnum


class ErrorCode(StrEnum):
    INVITATION_NOT_FOUND = "INVITATION_NOT_FOUND"
    INVITATION_TOKEN_INVALID = "INVITATION_TOKEN_INVALID"
    INVITATION_FOR_ANOTHER_ADDRESS = "INVITATION_FOR_ANOTHER_ADDRESS"


class InvitationStatus(StrEnum):
    PENDING = "pending"  # mailed, waiting for an answer (until expires_at)
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"


# An invitation's link works this long after it was (re)sent.
INVITATION_LIFETIME_DAYS = 7
INVITATION_STATUS_MAX_LENGTH = 20
# `python main.py prune` deletes invitations answered, revoked or expired this many days ago (the
# activity log keeps what happened); rows per transaction.
INVITATION_KEEP_DAYS = 30
PRUNE_BATCH_ROWS = 1000
# The page that reads an invitation's token from its fragment (nginx/html, src/page.py).
INVITATIONS_PAGE = "/invitations"
