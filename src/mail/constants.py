"""Kinds and states of outgoing mail, and the outbox's limits."""

from enum import StrEnum


class ErrorCode(StrEnum):
    MAIL_NOT_CONFIGURED = "MAIL_NOT_CONFIGURED"


class MailKind(StrEnum):
    """What a mail is for: each kind has a composer (src/mail/composers.py) that writes it."""

    PASSWORD_RESET = "password_reset"
    PASSWORD_CHANGED = "password_changed"
    INVITATION = "invitation"
    EMAIL_VERIFICATION = "email_verification"
    REGISTRATION_ATTEMPT = "registration_attempt"
    # The link that makes a pending registration's account (addresses must be verified).
    REGISTRATION_LINK = "registration_link"


class MailDelivery(StrEnum):
    """MAIL_SENDER: who sends what the outbox holds."""

    PROCESS = "process"  # a sender in each API process (src/mail/jobs.py MailSender)
    QUEUE = "queue"  # the job queue's workers (`python main.py worker`; PostgreSQL only)


class MailStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"  # the SMTP server took it
    FAILED = "failed"  # refused for good, or still refused after MAIL_MAX_ATTEMPTS
    DROPPED = "dropped"  # nothing to send after all (no such account, or past its discard_after)


MAIL_KIND_MAX_LENGTH = 40
MAIL_STATUS_MAX_LENGTH = 20
RECIPIENT_MAX_LENGTH = 320
LAST_ERROR_MAX_LENGTH = 300
# SQLite (one process, no row locks): a claimed row is hidden from other senders this long while
# its message is handed over; longer than any SMTP attempt (SMTP_TIMEOUT_SECONDS) can take.
SQLITE_CLAIM_LEASE_SECONDS = 300
# `python main.py prune`: finished rows deleted per transaction.
PRUNE_BATCH_ROWS = 1000
# MAIL_SENDER=queue: the job queue's queue of mail jobs; the workers look for mail due again after a
# failure this often (a retry's MAIL_RETRY_BASE_SECONDS is then rounded up to the next minute).
MAIL_QUEUE = "mail"
MAIL_DUE_AGAIN_CRON = "* * * * *"
# One delivery job sends rounds of MAIL_BATCH_SIZE until the outbox has nothing due, at most this
# many rounds (a job stays short; the next job or the schedule goes on).
MAIL_JOB_MAX_ROUNDS = 50
