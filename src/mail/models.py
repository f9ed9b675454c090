"""The outbox: every mail the app means to send, written in the transaction of what caused it."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from src.database import Base, UUIDPrimaryKey, utcnow
from src.mail.constants import (
    LAST_ERROR_MAX_LENGTH,
    MAIL_KIND_MAX_LENGTH,
    MAIL_STATUS_MAX_LENGTH,
    RECIPIENT_MAX_LENGTH,
    MailStatus,
)


class OutboxMail(UUIDPrimaryKey, Base):
    """One mail to send. Its id is the message's Message-ID. It holds what the mail is about
    (`kind`, `params`), not its text: the text, and any one-time token its link carries, are made
    when it is sent, so no usable token is ever stored (only its hash, as it is mailed)."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        # The sender's question: which pending mails are due, oldest first.
        Index("ix_mail_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    kind: Mapped[str] = mapped_column(String(MAIL_KIND_MAX_LENGTH))
    recipient: Mapped[str] = mapped_column(String(RECIPIENT_MAX_LENGTH))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(MAIL_STATUS_MAX_LENGTH), default=MailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Not sent by then: dropped (a reset link mailed hours late would only confuse).
    discard_after: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it was sent, failed for good or dropped; finished rows are pruned MAIL_KEEP_DAYS later.
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(String(LAST_ERROR_MAX_LENGTH))
