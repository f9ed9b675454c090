"""Who sends what the outbox holds (MAIL_SENDER).

`process` (the default): a task of each API process (started in the app's lifespan) sends it, at
once when this process queued a mail, else every MAIL_POLL_SECONDS. Several processes and hosts may
each run one: the outbox's claim keeps them apart.

`queue` (PostgreSQL): the job queue's workers send it (`mail:deliver`, src/job_queue.py); an API
process only queues a job after each commit that queued mail, and the workers look every minute for
mail due again after a failure (`mail:deliver_due_again`). A job that dies with its worker is run
again by another (stalled-job recovery): the outbox's claim and Message-ID keep a mail from leaving
twice, as with racing senders.

Either way operators can drain the outbox from cron with `python main.py send-mail` (the same round,
bounded)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import procrastinate

from src.mail import service
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.mail.constants import MAIL_DUE_AGAIN_CRON, MAIL_JOB_MAX_ROUNDS, MAIL_QUEUE, MailDelivery
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
    """Runs a sender for the block (the app's lifespan), or with MAIL_SENDER=queue has the workers
    told of new mail. Where no mail can be sent (staging or production without SMTP_URL) none runs,
    and that is logged once."""
    if not mail_settings.sends_mail:
        logger.warning("mail_not_configured", extra={"detail": "SMTP_URL is not set: no mail is sent"})
        yield None
        return
    if mail_settings.MAIL_SENDER is MailDelivery.QUEUE:
        async with mail_jobs_queued():
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


# ---------------------------------------------------------------------------------------------
# MAIL_SENDER=queue: the jobs (run by `python main.py worker`), and what an API process does


async def deliver_until_nothing_is_due(transport: MailTransport | None = None) -> service.DeliveryCounts:
    """Rounds of MAIL_BATCH_SIZE until a round finds fewer due (at most MAIL_JOB_MAX_ROUNDS)."""
    total = service.DeliveryCounts()
    if not mail_settings.sends_mail:
        logger.warning("mail_not_configured", extra={"detail": "SMTP_URL is not set: no mail is sent"})
        return total
    transport = transport or configured_transport()
    for _ in range(MAIL_JOB_MAX_ROUNDS):
        counts = await service.deliver_due_mails(
            transport=transport, composers=COMPOSERS, max_mails=mail_settings.MAIL_BATCH_SIZE
        )
        for name in ("sent", "retried", "failed", "dropped"):
            setattr(total, name, getattr(total, name) + getattr(counts, name))
        if counts.handled < mail_settings.MAIL_BATCH_SIZE:
            break
    return total


mail_jobs = procrastinate.Blueprint()


@mail_jobs.task(name="deliver", queue=MAIL_QUEUE)
async def deliver_queued_mail() -> None:
    """Queued by an API process after a commit that queued mail: it leaves at once."""
    await deliver_until_nothing_is_due()


# queueing_lock: a worker that was down does not find a pile of these waiting.
@mail_jobs.periodic(cron=MAIL_DUE_AGAIN_CRON, periodic_id="deliver_due_again")
@mail_jobs.task(name="deliver_due_again", queue=MAIL_QUEUE, queueing_lock="deliver_due_again")
async def deliver_mail_due_again(timestamp: int) -> None:
    """Mail whose attempt failed is due again later (backoff); this finds it, and any mail whose
    `deliver` job was never queued (the database away at that moment). With MAIL_SENDER=process
    the API processes send everything themselves, and this does nothing."""
    if mail_settings.MAIL_SENDER is MailDelivery.QUEUE:
        await deliver_until_nothing_is_due()


class MailJobQueuer:
    """In an API process with MAIL_SENDER=queue: after each commit of this process that queued mail,
    a `mail:deliver` job (commits close together share one)."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    async def run(self) -> None:
        unwatch = service.watch_for_new_mail(self._wake)
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._queue_a_job()
        finally:
            unwatch()

    async def _queue_a_job(self) -> None:
        try:
            await deliver_queued_mail.defer_async()
        except Exception as error:  # the database away, say: the workers' schedule finds the mail
            logger.warning("mail_job_not_queued", extra={"error": f"{type(error).__name__}: {error}"[:300]})


@contextlib.asynccontextmanager
async def mail_jobs_queued() -> AsyncIterator[None]:
    from src.job_queue import JobQueueUnavailable, job_app  # the queue's app adds this module's jobs

    try:
        app = job_app()
    except JobQueueUnavailable:
        raise RuntimeError(
            "MAIL_SENDER=queue needs the job queue, which needs PostgreSQL (DATABASE_URL); "
            "on SQLite use MAIL_SENDER=process"
        ) from None
    async with app.open_async():
        task = asyncio.create_task(MailJobQueuer().run(), name="mail-job-queuer")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
