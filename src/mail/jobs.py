"""The in-process sender: a task of each API process (started in the app's lifespan) that sends
what the outbox holds, at once when this process queued a mail, else every MAIL_POLL_SECONDS.
Several processes and hosts may each run one: the outbox's claim keeps them apart. Operators can
also drain the outbox from cron with `python main.py send-mail` (the same round, bounded)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from src.mail import service
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.third_party.mail import MailTransport, transport_for

logger = logging.getLogger("studybase.mail")
# On shutdown the mail being handed over may finish (bounded by the SMTP timeout), so a mail the
# server took is also marked sent; past this a sender is cancelled and its mail stays pending.
STOP_GRACE_SECONDS = 2.0


def configured_transport() -> MailTransport:
    return transport_for(mail_settings.smtp_url, timeout=mail_settings.SMTP_TIMEOUT_SECONDS)


async def send_due_mails(*, max_mails: int, transport: MailTransport | None = None) -> service.DeliveryCounts:
    """One bounded round (`python main.py send-mail`)."""
    return await service.deliver_due_mails(
        transport=transport or configured_transport(), composers=COMPOSERS, max_mails=max_mails
    )


class MailSender:
    def __init__(self, *, transport: MailTransport, poll_seconds: float, batch: int) -> None:
        self.transport, self.poll_seconds, self.batch = transport, poll_seconds, batch
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        unwatch = service.watch_for_new_mail(self._wake)
        try:
            while not self.stopping.is_set():
                self._wake.clear()
                handled = await self._round()
                if handled < self.batch:  # a full round may have left more due: go on at once
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            unwatch()

    async def _round(self) -> int:
        try:
            counts = await service.deliver_due_mails(
                transport=self.transport, composers=COMPOSERS, max_mails=self.batch, stop=self.stopping
            )
        except Exception as error:  # the database away, say: the mail waits in the outbox meanwhile
            logger.warning(
                "mail_sender_round_failed", extra={"error": f"{type(error).__name__}: {error}"[:300]}
            )
            return 0
        return counts.handled

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()


@contextlib.asynccontextmanager
async def mail_sender_running(transport: MailTransport | None = None) -> AsyncIterator[MailSender | None]:
    """Runs a sender for the block (the app's lifespan). Where no mail can be sent (staging or
    production without SMTP_URL) none runs, and that is logged once."""
    if not mail_settings.sends_mail:
        logger.warning("mail_not_configured", extra={"detail": "SMTP_URL is not set: no mail is sent"})
        yield None
        return
    sender = MailSender(
        transport=transport or configured_transport(),
        poll_seconds=mail_settings.MAIL_POLL_SECONDS,
        batch=mail_settings.MAIL_BATCH_SIZE,
    )
    task = asyncio.create_task(sender.run(), name="mail-sender")
    try:
        yield sender
    finally:
        sender.stop()
        try:
            await asyncio.wait_for(task, mail_settings.SMTP_TIMEOUT_SECONDS + STOP_GRACE_SECONDS)
        except TimeoutError:
            logger.warning("mail_sender_cancelled", extra={"detail": "a mail being sent stays pending"})
