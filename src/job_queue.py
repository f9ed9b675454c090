"""The job queue: procrastinate on PostgreSQL (its tables come from migration 0012), run by
`python main.py worker`, as many of them as wanted, on any host that reaches the database.

What it runs today: the periodic prune (src/pruning.py), outgoing mail with MAIL_SENDER=queue
(src/mail/jobs.py), sample-file imports with IMPORT_RUNNER=queue (src/sampleFileUpload/jobs.py),
and its own upkeep: the jobs of a worker that died are run again (recover_stalled_jobs). There is
no queue on SQLite: the embedded default keeps everything in one process, where `python main.py
prune` is the schedule's command.
"""

import functools
import logging
import os
import socket

import procrastinate
from sqlalchemy.engine import make_url

from src.config import settings
from src.constants import MAINTENANCE_QUEUE
from src.database import POSTGRESQL_SESSION_OPTIONS, POSTGRESQL_TCP_ARGS
from src.logging import configure_logging
from src.mail.jobs import mail_jobs
from src.pruning import maintenance_jobs
from src.sampleFileUpload.jobs import import_jobs

# On SIGTERM a worker stops taking jobs and lets running ones finish this long, then aborts them
# (and exits); keep it below the orchestrator's kill (compose's stop_grace_period for `worker`).
WORKER_STOP_GRACE_SECONDS = 30.0
# Connections a worker keeps: one listens for new jobs, the others fetch and finish them (a job's
# own database work goes through src.database's engine).
WORKER_POOL_SIZE = 4
# The queue's own upkeep: jobs whose worker died (SIGKILL, a lost host) are run again this often,
# and by every worker as it starts.
RECOVER_STALLED_JOBS_CRON = "* * * * *"

logger = logging.getLogger("studybase.jobs")
queue_upkeep = procrastinate.Blueprint()


class JobQueueUnavailable(Exception):
    """The database is SQLite, which has no job queue."""


def job_queue_available(database_url: str | None = None) -> bool:
    return make_url(database_url or settings.DATABASE_URL).get_backend_name() == "postgresql"


def libpq_conninfo(database_url: str) -> str:
    """DATABASE_URL (`postgresql+psycopg://...`, SQLAlchemy's form) as libpq reads it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def job_app() -> procrastinate.App:
    """This process's queue client (one: a task belongs to one App once it is added)."""
    if not job_queue_available():
        raise JobQueueUnavailable
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_conninfo(settings.DATABASE_URL),
        min_size=1,
        max_size=WORKER_POOL_SIZE,
        kwargs={
            **POSTGRESQL_TCP_ARGS,
            "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT_SECONDS,
            "options": POSTGRESQL_SESSION_OPTIONS,
        },
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(maintenance_jobs, namespace="maintenance")
    app.add_tasks_from(queue_upkeep, namespace="queue")
    app.add_tasks_from(mail_jobs, namespace="mail")
    app.add_tasks_from(import_jobs, namespace="imports")
    return app


async def recover_stalled_jobs(app: procrastinate.App) -> int:
    """Jobs left `doing` by a worker that stopped beating (WORKER_STALLED_SECONDS) go back to the
    queue, and the dead worker's row goes: a killed worker's job would otherwise keep its `lock`
    (another prune could never start) and never finish. What such a job wrote was its own
    transaction's, which died with the worker's connection: run again, it starts from nothing."""
    await app.job_manager.prune_stalled_workers(settings.WORKER_STALLED_SECONDS)
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.WORKER_STALLED_SECONDS)
    for job in stalled:
        logger.warning(
            "job_recovered",
            extra={
                "job_id": job.id,
                "task": job.task_name,
                "attempts": job.attempts,
                "worker_id": job.worker_id,
            },
        )
        await app.job_manager.retry_job(job)
    return len(stalled)


@queue_upkeep.periodic(cron=RECOVER_STALLED_JOBS_CRON, periodic_id="recover_stalled_jobs")
@queue_upkeep.task(
    name="recover_stalled_jobs",
    queue=MAINTENANCE_QUEUE,
    queueing_lock="recover_stalled_jobs",
    pass_context=True,
)
async def recover_stalled_jobs_on_schedule(context: procrastinate.JobContext, timestamp: int) -> None:
    await recover_stalled_jobs(context.app)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker() -> None:
    """A worker on every queue until SIGTERM or SIGINT (running jobs get WORKER_STOP_GRACE_SECONDS)."""
    configure_logging(settings.LOG_LEVEL)
    app = job_app()
    async with app.open_async():
        await recover_stalled_jobs(app)
        await app.run_worker_async(
            name=worker_name(),
            shutdown_graceful_timeout=WORKER_STOP_GRACE_SECONDS,
            update_heartbeat_interval=settings.WORKER_STALLED_SECONDS / 3,
            stalled_worker_timeout=settings.WORKER_STALLED_SECONDS,
            install_signal_handlers=True,
        )
