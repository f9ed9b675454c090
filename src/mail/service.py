"""The transactional outbox: a mail is queued in the transaction of the change that causes it, and
handed to the mail service afterwards, once, by whichever sender claims it first.

Claiming: on PostgreSQL a sender locks the row (`FOR UPDATE SKIP LOCKED`: others pass it by),
composes and sends the mail, and marks it sent in that same transaction, so no two senders of any
process or host hand the same row over, and a sender that dies mid-way leaves the row pending for
the next. SQLite has no row locks (and one writer for the whole database, which must not wait on
an SMTP server): there a sender takes a lease on the row (hides it for SQLITE_CLAIM_LEASE_SECONDS)
in a short transaction of its own, then sends and marks it.

A server that does not take a mail gets it again later (MAIL_RETRY_BASE_SECONDS, doubling, at most
MAIL_RETRY_MAX_SECONDS apart) until MAIL_MAX_ATTEMPTS; one that refuses it for good (an unknown
mailbox) does not. The outbox id is the message's Message-ID: the one case where a mail can go out
twice (the server took it and the process died before the commit) delivers two copies of one
message, which mail clients show as one.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from src.database import SessionFactory, utcnow
from src.mail.config import mail_settings
from src.mail.constants import (
    LAST_ERROR_MAX_LENGTH,
    PRUNE_BATCH_ROWS,
    SQLITE_CLAIM_LEASE_SECONDS,
    MailKind,
    MailStatus,
)
from src.mail.exceptions import MailNotConfigured
from src.mail.models import OutboxMail
from src.mail.templates import MailContent
from src.third_party.mail import MailDeliveryFailed, MailTransport, OutgoingMail

logger = logging.getLogger("studybase.mail")


@dataclass(frozen=True, slots=True)
class Composition:
    """What a composer made of an outbox row: the mail's content, and what must be in the database
    before the mail leaves (the hash of the token its link carries). That is written and committed
    in a transaction of its own just before the hand-over: the mail may be read, and its link
    used, before the sender's own transaction ends. If the hand-over then fails, what was kept
    is harmless (nobody has the token), and the next attempt's replaces it."""

    content: MailContent
    keep_before_sending: Callable[[AsyncSession], Awaitable[None]] | None = None


# Makes the mail of one outbox row when it is sent (inside the sender's transaction), or None when
# there is nothing to send after all (the address has no account). Each kind has one.
Composer = Callable[[AsyncSession, OutboxMail, datetime], Awaitable[Composition | None]]


# Queueing


def require_mail() -> None:
    """For the routes that only make sense if a mail goes out: refuse before doing anything."""
    if not mail_settings.sends_mail:
        raise MailNotConfigured


def enqueue_mail(
    session: AsyncSession,
    *,
    kind: MailKind,
    recipient: str,
    params: Mapping[str, Any] | None = None,
    discard_after: datetime | None = None,
) -> OutboxMail | None:
    """Adds a mail to the session's transaction: it exists exactly when that transaction commits.

    Where no mail is sent at all (staging or production without SMTP_URL) nothing is queued:
    the row would only wait for ever.
    """
    if not mail_settings.sends_mail:
        return None
    now = utcnow()
    mail = OutboxMail(
        id=uuid.uuid4(),
        kind=kind,
        recipient=recipient,
        params=dict(params or {}),
        status=MailStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        discard_after=discard_after,
        created_at=now,
    )
    session.add(mail)
    session.info[_QUEUED_KEY] = True
    return mail


# Senders in this process wait on these between rounds; a commit that queued mail wakes them, so
# a mail leaves at once instead of at the next poll.
_QUEUED_KEY = "studybase.mail_queued"
_waiting_senders: set[asyncio.Event] = set()


@event.listens_for(Session, "after_commit")
def _wake_senders_after_commit(session: Session) -> None:
    if session.info.pop(_QUEUED_KEY, False):
        for wake in _waiting_senders:
            wake.set()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_mail(session: Session) -> None:
    session.info.pop(_QUEUED_KEY, None)


def watch_for_new_mail(wake: asyncio.Event) -> Callable[[], None]:
    """Sets `wake` whenever this process commits a queued mail; returns the function that stops it."""
    _waiting_senders.add(wake)
    return lambda: _waiting_senders.discard(wake)


# Sending


@dataclass(slots=True)
class DeliveryCounts:
    sent: int = 0
    retried: int = 0  # not taken this time; tried again later
    failed: int = 0
    dropped: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.dropped

    def count(self, status: str) -> None:
        name = {MailStatus.PENDING: "retried"}.get(status, status)
        setattr(self, name, getattr(self, name) + 1)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: the base, doubling, capped."""
    seconds = mail_settings.MAIL_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 32)
    return timedelta(seconds=min(seconds, mail_settings.MAIL_RETRY_MAX_SECONDS))


def _due(now: datetime) -> Any:
    return (OutboxMail.status == MailStatus.PENDING) & (OutboxMail.next_attempt_at <= now)


async def _claim_with_row_lock(session: AsyncSession, now: datetime) -> OutboxMail | None:
    """PostgreSQL: the oldest due row nobody else holds, locked until this transaction ends."""
    return await session.scalar(
        select(OutboxMail)
        .where(_due(now))
        .order_by(OutboxMail.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def _claim_with_lease(session: AsyncSession, now: datetime) -> OutboxMail | None:
    """SQLite: the oldest due row, hidden from other senders by moving its next attempt past the
    lease; the update only wins while the row is still as it was read (another sender's lease
    would have moved it). Committed at once: SQLite's one write lock is not held while sending."""
    while True:
        candidate = (
            await session.execute(
                select(OutboxMail.id, OutboxMail.next_attempt_at)
                .where(_due(now))
                .order_by(OutboxMail.next_attempt_at)
                .limit(1)
            )
        ).first()
        if candidate is None:
            return None
        leased = await session.execute(
            update(OutboxMail)
            .where(
                OutboxMail.id == candidate.id,
                OutboxMail.status == MailStatus.PENDING,
                OutboxMail.next_attempt_at == candidate.next_attempt_at,
            )
            .values(next_attempt_at=now + timedelta(seconds=SQLITE_CLAIM_LEASE_SECONDS))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        if leased.rowcount == 1:
            return await session.get(OutboxMail, candidate.id, populate_existing=True)


async def _claim_next_due(session: AsyncSession, now: datetime) -> OutboxMail | None:
    if session.get_bind().dialect.name == "postgresql":
        return await _claim_with_row_lock(session, now)
    return await _claim_with_lease(session, now)


def _finish(mail: OutboxMail, status: MailStatus, *, now: datetime, error: str | None = None) -> None:
    mail.status, mail.finished_at = status, now
    mail.last_error = error[:LAST_ERROR_MAX_LENGTH] if error else None


def _record_failure(mail: OutboxMail, failure: MailDeliveryFailed, *, now: datetime) -> None:
    reason = str(failure)
    if failure.permanent or mail.attempts >= mail_settings.MAIL_MAX_ATTEMPTS:
        _finish(mail, MailStatus.FAILED, now=now, error=reason)
        logger.error(
            "mail_failed",
            extra={"message_id": str(mail.id), "kind": mail.kind, "attempts": mail.attempts, "error": reason},
        )
        return
    mail.next_attempt_at = now + retry_delay(mail.attempts)
    mail.last_error = reason[:LAST_ERROR_MAX_LENGTH]
    logger.warning(
        "mail_retry_later",
        extra={
            "message_id": str(mail.id),
            "kind": mail.kind,
            "attempts": mail.attempts,
            "next_attempt_at": mail.next_attempt_at.isoformat(),
            "error": reason,
        },
    )


async def _attempt(
    session: AsyncSession,
    mail: OutboxMail,
    *,
    transport: MailTransport,
    composers: Mapping[str, Composer],
    session_factory: async_sessionmaker[AsyncSession],
    now: datetime,
) -> MailStatus:
    """Composes and hands over one claimed mail; the row says what happened (the caller commits)."""
    if mail.discard_after is not None and mail.discard_after <= now:
        _finish(mail, MailStatus.DROPPED, now=now, error="not sent before its discard_after")
        return MailStatus.DROPPED
    composer = composers.get(mail.kind)
    if composer is None:
        _finish(mail, MailStatus.FAILED, now=now, error=f"no composer for the kind {mail.kind!r}")
        logger.error(
            "mail_failed", extra={"message_id": str(mail.id), "kind": mail.kind, "error": mail.last_error}
        )
        return MailStatus.FAILED
    composition = await composer(session, mail, now)
    if composition is None:
        _finish(mail, MailStatus.DROPPED, now=now)
        return MailStatus.DROPPED
    mail.attempts += 1
    if composition.keep_before_sending is not None:
        async with session_factory() as keeping:
            await composition.keep_before_sending(keeping)
            await keeping.commit()
    try:
        await transport.send(
            OutgoingMail(
                message_id=str(mail.id),
                sender=mail_settings.MAIL_FROM,
                recipient=mail.recipient,
                subject=composition.content.subject,
                text=composition.content.text,
                html=composition.content.html,
            )
        )
    except MailDeliveryFailed as failure:
        _record_failure(mail, failure, now=utcnow())
        return MailStatus(mail.status)
    _finish(mail, MailStatus.SENT, now=utcnow())
    logger.info("mail_sent", extra={"message_id": str(mail.id), "kind": mail.kind, "attempts": mail.attempts})
    return MailStatus.SENT


async def _deliver_next(
    session: AsyncSession,
    *,
    transport: MailTransport,
    composers: Mapping[str, Composer],
    session_factory: async_sessionmaker[AsyncSession],
    now: datetime,
) -> MailStatus | None:
    """Claims, sends and marks one due mail in one transaction; None when none is due."""
    try:
        mail = await _claim_next_due(session, now)
    except BaseException:
        await session.rollback()
        raise
    if mail is None:
        await session.rollback()  # ends the read
        return None
    mail_id, attempts = mail.id, mail.attempts
    try:
        status = await _attempt(
            session, mail, transport=transport, composers=composers, session_factory=session_factory, now=now
        )
        await session.commit()
    except Exception as error:
        await session.rollback()
        return await _postpone_after_error(session, mail_id=mail_id, attempts=attempts, error=error)
    except BaseException:
        await session.rollback()
        raise
    return status


async def _postpone_after_error(
    session: AsyncSession, *, mail_id: uuid.UUID, attempts: int, error: Exception
) -> MailStatus:
    """A mail whose composing broke (a bug, the database gone mid-way) counts an attempt and waits
    like one the server did not take, so that one bad row neither blocks nor floods the sender."""
    now = utcnow()
    attempts += 1
    given_up = attempts >= mail_settings.MAIL_MAX_ATTEMPTS
    reason = f"{type(error).__name__}: {error}"[:LAST_ERROR_MAX_LENGTH]
    changes: dict[str, Any] = {"attempts": attempts, "last_error": reason}
    if given_up:
        changes |= {"status": MailStatus.FAILED, "finished_at": now}
    else:
        changes["next_attempt_at"] = now + retry_delay(attempts)
    # Unless another sender has taken it meanwhile (it was unlocked by the rollback).
    await session.execute(
        update(OutboxMail)
        .where(
            OutboxMail.id == mail_id,
            OutboxMail.status == MailStatus.PENDING,
            OutboxMail.attempts == attempts - 1,
        )
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    logger.error("mail_compose_failed", exc_info=error, extra={"message_id": str(mail_id), "error": reason})
    return MailStatus.FAILED if given_up else MailStatus.PENDING


async def deliver_due_mails(
    *,
    transport: MailTransport,
    composers: Mapping[str, Composer],
    max_mails: int,
    session_factory: async_sessionmaker[AsyncSession] = SessionFactory,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> DeliveryCounts:
    """Sends up to `max_mails` due mails, one transaction each, oldest first; stops early when
    none is due (or `stop` is set). `now` moves the clock for the whole round (tests)."""
    counts = DeliveryCounts()
    async with session_factory() as session:
        while counts.handled < max_mails and not (stop and stop.is_set()):
            status = await _deliver_next(
                session,
                transport=transport,
                composers=composers,
                session_factory=session_factory,
                now=now or utcnow(),
            )
            if status is None:
                break
            counts.count(status)
    return counts


# Pruning


async def prune_finished_mails(
    session: AsyncSession, *, max_rows: int, batch_rows: int = PRUNE_BATCH_ROWS, now: datetime | None = None
) -> int:
    """Deletes up to `max_rows` mails finished (sent, failed, dropped) more than MAIL_KEEP_DAYS ago,
    `batch_rows` per transaction (`python main.py prune`)."""
    cutoff = (now or utcnow()) - timedelta(days=mail_settings.MAIL_KEEP_DAYS)
    total = 0
    while total < max_rows:
        limit = min(batch_rows, max_rows - total)
        finished = select(OutboxMail.id).where(OutboxMail.finished_at < cutoff).limit(limit)
        result = await session.execute(delete(OutboxMail).where(OutboxMail.id.in_(finished)))
        await session.commit()
        deleted = max(result.rowcount or 0, 0)
        total += deleted
        if deleted < limit:
            break
    return total
