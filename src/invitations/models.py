"""The invitations table: one row per address invited to a study, until it is answered."""

import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from src.auth.constants import EMAIL_MAX_LENGTH
from src.database import Base, UUIDPrimaryKey, utcnow
from src.invitations.constants import INVITATION_STATUS_MAX_LENGTH, InvitationStatus
from src.study.constants import StudyRole

_PENDING = text("status = 'pending'")


class Invitation(UUIDPrimaryKey, Base):
    """An address invited into a study with a role. Its link's token is stored by hash only, once
    its mail is handed over (`mail_id` names the one mail whose link is live: a resend replaces it).
    Answered, revoked or expired rows stay as a record; only a pending, unexpired one can be used."""

    __tablename__ = "study_invitations"
    __table_args__ = (
        # One pending invitation per study and address: inviting again renews it.
        Index(
            "uq_study_invitations_study_id_email_pending",
            "study_id",
            "email",
            unique=True,
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        # A signed-in user's pending invitations are found by address.
        Index("ix_study_invitations_email_status", "email", "status"),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    # Normalized as account emails are (trimmed, lower-case): compared to them as they are.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    role: Mapped[StudyRole] = mapped_column(
        Enum(
            StudyRole,
            name="invitation_role",
            native_enum=False,
            create_constraint=True,
            length=20,
            values_callable=lambda roles: [role.value for role in roles],
        )
    )
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(
        String(INVITATION_STATUS_MAX_LENGTH), default=InvitationStatus.PENDING
    )
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    mail_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    responded_at: Mapped[datetime | None]
