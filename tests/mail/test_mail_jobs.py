"""MAIL_SENDER=queue: the job queue's workers send the outbox's mail (PostgreSQL). An API process
only queues a `mail:deliver` job after a commit that queued mail; a worker sends it through a real
SMTP server; mail that failed is sent by the workers' schedule once due again, exactly once."""

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import update

from src.database import SessionFactory, engine, utcnow
from src.job_queue import job_app, libpq_conninfo
from src.mail.config import mail_settings
from src.mail.constants import MAIL_QUEUE, MailDelivery, MailStatus
from src.mail.jobs import deliver_mail_due_again, mail_sender_running
from src.mail.models import OutboxMail
from tests.conftest import TEST_DATABASE_URL
from tests.mail.test_outbox import queue_notice, row
from tests.test_job_queue import QUEUE_TABLES

ON_POSTGRESQL = engine.dialect.name == "postgresql"
only_on_postgresql = pytest.mark.skipif(not ON_POSTGRESQL, reason="the job queue lives in PostgreSQL")


@pytest.fixture
def sent_by_the_queue(monkeypatch, smtp_server):
    monkeypatch.setattr(mail_settings, "MAIL_SENDER", MailDelivery.QUEUE)
    monkeypatch.setattr(mail_settings, "SMTP_URL", SecretStr(smtp_server.url()))
    yield
    if ON_POSTGRESQL:
        with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
            connection.execute(f"TRUNCATE {QUEUE_TABLES}")


def deliver_jobs() -> list[str]:
    """The statuses of the `mail:deliver` jobs (a worker also defers the schedule's own as it starts)."""
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        rows = connection.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'mail:deliver' ORDER BY id"
        )
        return [status for (status,) in rows]


async def wait_for_deliver_jobs(count: int) -> list[str]:
    for _ in range(100):  # 5 s at most
        if len(jobs := deliver_jobs()) >= count:
            return jobs
        await asyncio.sleep(0.05)
    return deliver_jobs()


async def run_mail_worker() -> None:
    """A worker of the mail queue that runs what is queued, then stops."""
    await job_app().run_worker_async(queues=[MAIL_QUEUE], wait=False, install_signal_handlers=False)


@only_on_postgresql
async def test_a_commit_that_queued_mail_queues_a_job_and_a_worker_sends_it(
    sent_by_the_queue, smtp_server, client, make_user
):
    user = await make_user(email="forgetful@example.org")

    async with mail_sender_running() as sender:
        assert sender is None  # no sender in the API process: the workers send
        answer = await client.post("/api/v1/auth/password-reset", json={"email": user.email})
        assert answer.status_code == 202, answer.text
        assert await wait_for_deliver_jobs(1) == ["todo"]
        assert smtp_server.messages == []

        await run_mail_worker()

    assert deliver_jobs() == ["succeeded"]
    (delivered,) = smtp_server.messages
    assert delivered.rcpt_tos == ["forgetful@example.org"]
    assert "/reset-password#token=" in delivered.message.get_body(("plain",)).get_content()


@only_on_postgresql
async def test_mail_the_smtp_server_refused_is_sent_by_the_schedule_once_due_again(
    sent_by_the_queue, smtp_server
):
    async with mail_sender_running():  # the API process's side: opens the queue, queues the job
        smtp_server.stop()
        mail = await queue_notice("patient@example.org")
        assert await wait_for_deliver_jobs(1) == ["todo"]
        await run_mail_worker()
    away = await row(mail.id)
    assert (away.status, away.attempts) == (MailStatus.PENDING, 1)

    smtp_server.start()
    async with job_app().open_async():
        await deliver_mail_due_again.defer_async(timestamp=int(time.time()))
        await run_mail_worker()
        assert (await row(mail.id)).status == MailStatus.PENDING  # not due yet: not tried again
        assert smtp_server.messages == []

        async with SessionFactory() as session:  # its backoff has passed
            await session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail.id)
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        for tick in (1, 2):
            await deliver_mail_due_again.defer_async(timestamp=int(time.time()) + tick)
            await run_mail_worker()

    assert (await row(mail.id)).status == MailStatus.SENT
    assert [d.rcpt_tos for d in smtp_server.messages] == [["patient@example.org"]]


@only_on_postgresql
async def test_with_mail_sent_by_each_process_the_schedule_leaves_it_to_them(monkeypatch, smtp_server):
    monkeypatch.setattr(mail_settings, "SMTP_URL", SecretStr(smtp_server.url()))
    assert mail_settings.MAIL_SENDER is MailDelivery.PROCESS
    mail = await queue_notice()
    app = job_app()
    try:
        async with app.open_async():
            await deliver_mail_due_again.defer_async(timestamp=int(time.time()))
            await run_mail_worker()
    finally:
        with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
            connection.execute(f"TRUNCATE {QUEUE_TABLES}")

    assert (await row(mail.id)).status == MailStatus.PENDING
    assert smtp_server.messages == []


@pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite has no job queue")
async def test_mail_sent_by_the_queue_on_sqlite_is_a_start_up_error_that_says_why(sent_by_the_queue):
    with pytest.raises(RuntimeError, match="MAIL_SENDER=queue needs the job queue, which needs PostgreSQL"):
        async with mail_sender_running():
            pass
