"""The job queue: procrastinate on PostgreSQL (its tables come from migration 0012), run by
`python main.py worker`, as many of them as wanted, on any host that reaches the database.

What it runs today: the periodic prune (src/pruning.py). There is no queue on SQLite: the embedded
default keeps everything in one process, where `python main.py prune` is the schedule's command.
"""

import functools
import os
import socket

import procrastinate
from sqlalchemy.engine import make_url

from src.config import settings
from src.database import POSTGRESQL_SESSION_OPTIONS, POSTGRESQL_TCP_ARGS
from src.logging import configure_logging
from src.pruning import maintenance_jobs

# On SIGTERM a worker stops taking jobs and lets running ones finish this long, then aborts them
# (and exits); keep it below the orchestrator's kill (compose's stop_grace_period for `worker`).
WORKER_STOP_GRACE_SECONDS = 30.0
# Connections a worker keeps: one listens for new jobs, the others fetch and finish them (a job's
# own database work goes through src.database's engine).
WORKER_POOL_SIZE = 4
# A worker reports itself alive this often; one silent for WORKER_STALLED_SECONDS is pruned by the
# next worker that starts, and the jobs it held are then found by `stalled` queries.
WORKER_HEARTBEAT_SECONDS = 10.0
WORKER_STALLED_SECONDS = 30.0


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
    return app


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_worker() -> None:
    """A worker on every queue until SIGTERM or SIGINT (running jobs get WORKER_STOP_GRACE_SECONDS)."""
    configure_logging(settings.LOG_LEVEL)
    app = job_app()
    async with app.open_async():
        await app.run_worker_async(
            name=worker_name(),
            shutdown_graceful_timeout=WORKER_STOP_GRACE_SECONDS,
            update_heartbeat_interval=WORKER_HEARTBEAT_SECONDS,
            stalled_worker_timeout=WORKER_STALLED_SECONDS,
            install_signal_handlers=True,
        )
