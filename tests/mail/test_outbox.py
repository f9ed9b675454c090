"""The outbox: a mail exists exactly when the change that caused it commits, leaves once, waits
out an SMTP server that is away, gives up on one that refuses for good, and is pruned later."""

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

import main
from src.auth import mails as auth_mails
from src.constants import Environment
from src.database import SessionFactory, engine, utcnow
from src.mail import service
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.mail.constants import SQLITE_CLAIM_LEASE_SECONDS, MailKind, MailStatus
from src.mail.jobs import MailSender, mail_sender_running
from src.mail.models import OutboxMail
from src.third_party.mail import LogTransport, OutgoingMail, SmtpTransport
from tests.smtp_server import SmtpTestServer

ON_POSTGRESQL = engine.dialect.name == "postgresql"


def transport_to(smtp: SmtpTestServer) -> SmtpTransport:
    return SmtpTransport(smtp.url(), timeout=5)


async def deliver(smtp: SmtpTestServer, *, now=None, max_mails: int = 10) -> service.DeliveryCounts:
    return await service.deliver_due_mails(
        transport=transport_to(smtp), composers=COMPOSERS, max_mails=max_mails, now=now
    )


async def queue_notice(recipient: str = "ada@example.org", *, commit: bool = True, **fields) -> OutboxMail:
    """A 'password changed' notice, the simplest kind: it needs no account to compose."""
    async with SessionFactory() as session:
        mail = service.enqueue_mail(
            session,
            kind=MailKind.PASSWORD_CHANGED,
            recipient=recipient,
            params={"full_name": "Ada", "changed_at": "2026-12-07 10:00"},
            **fields,
        )
        if commit:
            await session.commit()
        else:
            await session.rollback()
    return mail


async def row(mail_id) -> OutboxMail:
    async with SessionFactory() as session:
        return await session.get(OutboxMail, mail_id)


async def rows() -> list[OutboxMail]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(OutboxMail)))


# Queued with its transaction


async def test_a_mail_is_queued_only_if_its_transaction_commits():
    await queue_notice(commit=False)
    assert await rows() == []

    kept = await queue_notice()

    (stored,) = await rows()
    assert stored.id == kept.id
    assert (stored.status, stored.attempts) == (MailStatus.PENDING, 0)


async def test_nothing_is_queued_where_no_mail_is_sent(monkeypatch):
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)

    assert await queue_notice() is None
    assert await rows() == []


# Sent once


async def test_a_due_mail_is_sent_once_with_its_row_id_as_message_id(smtp_server):
    mail = await queue_notice()

    first = await deliver(smtp_server)
    second = await deliver(smtp_server)

    assert (first.sent, second.handled) == (1, 0)
    (delivered,) = smtp_server.messages
    # MAIL_FROM's domain (`localhost` here) has no dot: the fallback domain stands in.
    assert delivered.message["Message-ID"] == f"<{mail.id}@studybase.invalid>"
    stored = await row(mail.id)
    assert (stored.status, stored.attempts, stored.last_error) == (MailStatus.SENT, 1, None)
    assert stored.finished_at is not None


async def test_a_round_sends_at_most_its_bound_oldest_first(smtp_server):
    queued = [await queue_notice(f"user{n}@example.org") for n in range(5)]

    counts = await deliver(smtp_server, max_mails=3)

    assert counts.sent == 3
    assert [d.rcpt_tos[0] for d in smtp_server.messages] == [m.recipient for m in queued[:3]]


@pytest.mark.parametrize("senders", [2, 4])
async def test_senders_racing_never_send_a_mail_twice(smtp_server, senders):
    """Each sender has its own session (its own connection); on PostgreSQL they meet at the row
    locks (SKIP LOCKED), on SQLite at the lease. A slow server widens every window."""
    queued = {str((await queue_notice(f"user{n}@example.org")).id) for n in range(12)}

    class SlowTransport:
        def __init__(self) -> None:
            self.inner = transport_to(smtp_server)

        async def send(self, mail: OutgoingMail) -> None:
            await asyncio.sleep(0.02)
            await self.inner.send(mail)

    rounds = await asyncio.gather(
        *(
            service.deliver_due_mails(transport=SlowTransport(), composers=COMPOSERS, max_mails=100)
            for _ in range(senders)
        )
    )

    sent_ids = [d.message["Message-ID"][1:].split("@")[0] for d in smtp_server.messages]
    assert sorted(sent_ids) == sorted(queued)
    assert sum(counts.sent for counts in rounds) == len(queued)
    assert sum(1 for counts in rounds if counts.sent) > 1  # they did share the work
    assert {mail.status for mail in await rows()} == {MailStatus.SENT}


@pytest.mark.skipif(not ON_POSTGRESQL, reason="row locks are PostgreSQL's; SQLite's claim is a lease")
async def test_a_row_another_sender_holds_is_passed_by_not_waited_for(smtp_server):
    held, other = await queue_notice("held@example.org"), await queue_notice("other@example.org")
    async with SessionFactory() as holder:
        await holder.execute(select(OutboxMail).where(OutboxMail.id == held.id).with_for_update())

        counts = await deliver(smtp_server)

        assert counts.sent == 1
        assert [d.rcpt_tos for d in smtp_server.messages] == [[other.recipient]]
    assert (await row(held.id)).status == MailStatus.PENDING


@pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite's lease; PostgreSQL locks the row instead")
async def test_on_sqlite_a_claimed_row_is_leased_away_from_other_senders(smtp_server):
    mail = await queue_notice()

    class ClaimedElsewhere:
        """Looks at the row while its mail is being handed over."""

        async def send(self, outgoing: OutgoingMail) -> None:
            self.seen = await row(mail.id)
            self.others = await deliver(smtp_server)

    transport = ClaimedElsewhere()
    await service.deliver_due_mails(transport=transport, composers=COMPOSERS, max_mails=1)

    assert transport.others.handled == 0
    lease = transport.seen.next_attempt_at - utcnow()
    assert (
        timedelta(seconds=SQLITE_CLAIM_LEASE_SECONDS - 60)
        < lease
        <= timedelta(seconds=SQLITE_CLAIM_LEASE_SECONDS)
    )
    assert (await row(mail.id)).status == MailStatus.SENT


# The SMTP server away for a while


async def test_mail_waits_out_an_smtp_server_that_is_away_and_arrives_once(smtp_server, caplog):
    mail = await queue_notice()
    smtp_server.stop()

    away = await deliver(smtp_server)
    waiting = await row(mail.id)
    too_soon = await deliver(smtp_server)
    smtp_server.start()
    later = waiting.next_attempt_at + timedelta(seconds=1)
    back = await deliver(smtp_server, now=later)
    again = await deliver(smtp_server, now=later)

    assert (away.retried, too_soon.handled, back.sent, again.handled) == (1, 0, 1, 0)
    assert waiting.status == MailStatus.PENDING
    assert waiting.attempts == 1
    assert "Connect" in waiting.last_error or "refused" in waiting.last_error.lower()
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0].message["Message-ID"].startswith(f"<{mail.id}@")
    assert (await row(mail.id)).attempts == 2
    assert [r.msg for r in caplog.records if r.name == "studybase.mail"].count("mail_retry_later") == 1


def test_retries_back_off_exponentially_up_to_a_ceiling(monkeypatch):
    monkeypatch.setattr(mail_settings, "MAIL_RETRY_BASE_SECONDS", 5.0)
    monkeypatch.setattr(mail_settings, "MAIL_RETRY_MAX_SECONDS", 900.0)

    delays = [service.retry_delay(attempt).total_seconds() for attempt in (1, 2, 3, 4, 8, 9, 30, 10_000)]

    assert delays == [5, 10, 20, 40, 640, 900, 900, 900]


async def test_after_the_last_attempt_a_mail_is_marked_failed_and_logged(smtp_server, monkeypatch, caplog):
    monkeypatch.setattr(mail_settings, "MAIL_MAX_ATTEMPTS", 3)
    mail = await queue_notice()
    smtp_server.stop()
    far = utcnow()

    for _ in range(3):
        far += timedelta(hours=1)
        await deliver(smtp_server, now=far)

    stored = await row(mail.id)
    assert (stored.status, stored.attempts) == (MailStatus.FAILED, 3)
    assert any(r.levelno == logging.ERROR and r.msg == "mail_failed" for r in caplog.records)
    assert (await deliver(smtp_server, now=far + timedelta(days=1))).handled == 0


async def test_a_recipient_refused_for_good_is_not_tried_again(smtp_server):
    smtp_server.handler.refused_recipients.add("gone@example.org")
    mail = await queue_notice("gone@example.org")

    counts = await deliver(smtp_server)

    stored = await row(mail.id)
    assert counts.failed == 1
    assert (stored.status, stored.attempts) == (MailStatus.FAILED, 1)
    assert "550" in stored.last_error


async def test_a_mail_not_sent_before_its_discard_time_is_dropped(smtp_server):
    mail = await queue_notice(discard_after=utcnow() - timedelta(seconds=1))

    counts = await deliver(smtp_server)

    assert counts.dropped == 1
    assert smtp_server.messages == []
    assert (await row(mail.id)).status == MailStatus.DROPPED


async def test_a_reset_mail_asked_for_long_ago_is_dropped_not_sent(client, make_user, smtp_server):
    user = await make_user()
    await client.post("/api/v1/auth/password-reset", json={"email": user.email})
    lifetime = auth_mails.reset_token_lifetime()

    counts = await deliver(smtp_server, now=utcnow() + lifetime + timedelta(seconds=1))

    assert counts.dropped == 1
    assert smtp_server.messages == []


async def test_a_kind_without_a_composer_fails_instead_of_looping(smtp_server):
    mail = await queue_notice()

    counts = await service.deliver_due_mails(transport=transport_to(smtp_server), composers={}, max_mails=10)

    assert counts.failed == 1
    assert "no composer" in (await row(mail.id)).last_error


async def test_a_mail_whose_composing_breaks_waits_like_a_refused_one(smtp_server, caplog):
    mail = await queue_notice()

    async def broken(_session, _mail, _now):
        raise RuntimeError("composer bug")

    counts = await service.deliver_due_mails(
        transport=transport_to(smtp_server), composers={MailKind.PASSWORD_CHANGED: broken}, max_mails=10
    )

    stored = await row(mail.id)
    assert counts.retried == 1
    assert (stored.status, stored.attempts, stored.last_error) == (
        MailStatus.PENDING,
        1,
        "RuntimeError: composer bug",
    )
    assert any(r.msg == "mail_compose_failed" and r.levelno == logging.ERROR for r in caplog.records)
    assert (await deliver(smtp_server, now=stored.next_attempt_at + timedelta(seconds=1))).sent == 1


# The sender in the app's processes


async def test_the_apps_sender_sends_a_queued_mail_at_once(app, client, make_user, caplog):
    """Without SMTP_URL in test, the mail goes to the log in full; the commit wakes the sender, so it
    does not wait for the next poll."""
    user = await make_user()
    caplog.set_level(logging.INFO, logger="studybase.mail")
    async with app.router.lifespan_context(app):
        await client.post("/api/v1/auth/password-reset", json={"email": user.email})
        for _ in range(100):
            logged = [r for r in caplog.records if r.msg == "mail_logged"]
            if logged:
                break
            await asyncio.sleep(0.02)

    (entry,) = logged
    assert entry.to == user.email
    assert "Subject: Reset your Studybase password" in entry.mail
    assert f"{mail_settings.PUBLIC_URL}/reset-password#token=" in entry.mail
    assert [mail.status for mail in await rows()] == [MailStatus.SENT]


async def test_a_sender_polls_for_mail_queued_elsewhere_and_stops_when_told(smtp_server):
    sender = MailSender(transport=transport_to(smtp_server), poll_seconds=0.05, batch=5)
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.1)
        async with SessionFactory() as session:
            session.add(
                OutboxMail(
                    kind=MailKind.PASSWORD_CHANGED,
                    recipient="elsewhere@example.org",
                    params={"full_name": "Ada", "changed_at": "now"},
                )
            )
            await session.commit()  # not through enqueue_mail: as another process would queue it
        await asyncio.to_thread(smtp_server.wait_for, 1)
    finally:
        sender.stop()
        await asyncio.wait_for(task, 5)
    assert smtp_server.messages[0].rcpt_tos == ["elsewhere@example.org"]


async def test_a_round_that_fails_is_logged_and_the_sender_goes_on(monkeypatch, caplog):
    calls = 0

    async def failing_round(**_options):
        nonlocal calls
        calls += 1
        raise ConnectionError("database away")

    monkeypatch.setattr(service, "deliver_due_mails", failing_round)
    sender = MailSender(transport=LogTransport(), poll_seconds=0.01, batch=5)
    task = asyncio.create_task(sender.run())
    await asyncio.sleep(0.1)
    sender.stop()
    await asyncio.wait_for(task, 5)

    assert calls >= 2
    assert any(r.msg == "mail_sender_round_failed" for r in caplog.records)


async def test_no_sender_runs_where_no_mail_is_sent(monkeypatch, caplog):
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)

    async with mail_sender_running() as sender:
        assert sender is None

    assert any(r.msg == "mail_not_configured" for r in caplog.records)


async def test_a_sender_stuck_in_a_send_is_cancelled_on_shutdown(monkeypatch, caplog):
    monkeypatch.setattr(mail_settings, "SMTP_TIMEOUT_SECONDS", 0.1)
    mail = await queue_notice()
    started = asyncio.Event()

    class Hanging:
        async def send(self, _mail):
            started.set()
            await asyncio.sleep(60)

    async with mail_sender_running(Hanging()):
        await asyncio.wait_for(started.wait(), 5)

    assert any(r.msg == "mail_sender_cancelled" for r in caplog.records)
    assert (await row(mail.id)).status == MailStatus.PENDING


# python main.py send-mail and prune


async def test_the_send_mail_command_reports_what_it_did(caplog):
    await queue_notice()

    message = await main.send_mail(max_mails=10)

    assert message == "Sent 1 mails; 0 to try again later, 0 failed, 0 dropped."


async def test_the_send_mail_command_refuses_where_no_mail_is_sent(monkeypatch):
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)

    with pytest.raises(SystemExit, match="SMTP_URL is not set"):
        await main.send_mail(max_mails=10)


def test_the_send_mail_command_is_bounded():
    assert main.parse_args(["send-mail"]).max_mails == main.SEND_MAIL_MAX
    assert main.parse_args(["send-mail", "--max-mails", "5"]).max_mails == 5


async def test_finished_mails_are_pruned_after_the_keep_time_pending_ones_never(smtp_server):
    old_sent, fresh_sent, pending = (
        await queue_notice("a@example.org"),
        await queue_notice("b@example.org"),
        None,
    )
    await deliver(smtp_server)
    pending = await queue_notice("c@example.org", discard_after=None)
    async with SessionFactory() as session:
        stored = await session.get(OutboxMail, old_sent.id)
        stored.finished_at = utcnow() - timedelta(days=mail_settings.MAIL_KEEP_DAYS, seconds=1)
        waiting = await session.get(OutboxMail, pending.id)
        waiting.created_at = utcnow() - timedelta(days=365)
        await session.commit()

    async with SessionFactory() as session:
        pruned = await service.prune_finished_mails(session, max_rows=100, batch_rows=1)

    assert pruned == 1
    assert {mail.id for mail in await rows()} == {fresh_sent.id, pending.id}


async def test_pruning_is_bounded_per_run():
    for number in range(5):
        mail = await queue_notice(f"user{number}@example.org")
        async with SessionFactory() as session:
            stored = await session.get(OutboxMail, mail.id)
            stored.status, stored.finished_at = MailStatus.SENT, utcnow() - timedelta(days=30)
            await session.commit()

    async with SessionFactory() as session:
        first = await service.prune_finished_mails(session, max_rows=3, batch_rows=2)
        second = await service.prune_finished_mails(session, max_rows=3, batch_rows=2)

    assert (first, second) == (3, 2)
