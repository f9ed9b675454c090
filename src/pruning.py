"""Pruning what only grows, across modules: `python main.py prune` runs it once, the job queue's
worker (src/job_queue.py) on PRUNE_CRON. Bounded per run; the next run goes on where it stopped."""

import logging
from dataclasses import dataclass

from procrastinate import Blueprint, JobContext

from src import idempotency
from src.auth import pruning as auth_pruning
from src.auth import registration
from src.auth.constants import PRUNE_BATCH_ROWS, PRUNE_MAX_ROWS_PER_TABLE
from src.config import settings
from src.constants import MAINTENANCE_QUEUE
from src.database import SessionFactory
from src.exceptions import StorageUnavailable
from src.invitations import service as invitation_service
from src.mail import service as mail_service
from src.sampleFileUpload import jobs as sample_file_jobs
from src.sampleFileUpload import service as sample_file_service
from src.sampleFileUpload.storage import get_storage

logger = logging.getLogger("studybase.pruning")


@dataclass(frozen=True, slots=True)
class Pruned:
    auth: auth_pruning.PruneCounts
    expired_registrations: int
    orphan_files: int | None  # None: the file store (STORAGE_URL) did not answer; the rest was pruned
    idempotency_keys: int
    finished_mails: int
    finished_invitations: int
    abandoned_imports: int = 0

    def summary(self) -> str:
        summary = (
            f"Pruned {self.auth.login_throttles} sign-in throttles, {self.auth.sessions} ended sessions, "
            f"{self.auth.refresh_tokens} refresh tokens, {self.auth.link_tokens} expired link tokens, "
            f"{self.expired_registrations} expired pending registrations, "
            f"{self.orphan_files or 0} orphan files, {self.idempotency_keys} expired idempotency keys, "
            f"{self.finished_mails} finished mails and {self.finished_invitations} finished invitations."
        )
        if self.abandoned_imports:
            summary += f" {self.abandoned_imports} imports a stopped API process left unfinished are failed."
        if self.orphan_files is None:
            summary += " Orphan files were not pruned: the file store (STORAGE_URL) is not answering."
        return summary


async def prune_what_only_grows(*, batch_rows: int, max_rows: int) -> Pruned:
    """Stale sign-in rows (auth_pruning.prune_auth_rows), expired pending registrations, files no
    record names (prune_orphan_files), expired idempotency keys, finished mails and finished
    invitations: at most `max_rows` of each kind; and imports a killed API process left unfinished
    end `failed` (sample_file_jobs)."""
    async with SessionFactory() as session:
        auth = await auth_pruning.prune_auth_rows(session, batch_rows=batch_rows, max_rows=max_rows)
        registrations = await registration.prune_expired_registrations(
            session, max_rows=max_rows, batch_rows=batch_rows
        )
        try:
            files: int | None = await sample_file_service.prune_orphan_files(
                session, storage=get_storage(), max_files=max_rows
            )
        except StorageUnavailable:  # the rest is pruned all the same; the summary says so
            files = None
        keys = await idempotency.prune_expired(session, max_rows=max_rows)
        mails = await mail_service.prune_finished_mails(session, max_rows=max_rows, batch_rows=batch_rows)
        invitations = await invitation_service.prune_finished_invitations(
            session, max_rows=max_rows, batch_rows=batch_rows
        )
    abandoned = await sample_file_jobs.fail_abandoned_imports()
    return Pruned(
        auth=auth,
        expired_registrations=registrations,
        orphan_files=files,
        idempotency_keys=keys,
        finished_mails=mails,
        finished_invitations=invitations,
        abandoned_imports=abandoned,
    )


# ---------------------------------------------------------------------------------------------
# The periodic job (src/job_queue.py runs it on PostgreSQL)

maintenance_jobs = Blueprint()
# The queue's own finished jobs only grow too: kept this long, for an operator to look into.
FINISHED_JOBS_KEEP_HOURS = 7 * 24


@maintenance_jobs.periodic(cron=settings.PRUNE_CRON, periodic_id="prune")
# queueing_lock: at most one prune waits in the queue (a worker that was down does not pile them
# up); lock: one runs at a time, however many workers there are.
@maintenance_jobs.task(
    name="prune", queue=MAINTENANCE_QUEUE, queueing_lock="prune", lock="prune", pass_context=True
)
async def prune_on_schedule(context: JobContext, timestamp: int) -> None:
    pruned = await prune_what_only_grows(batch_rows=PRUNE_BATCH_ROWS, max_rows=PRUNE_MAX_ROWS_PER_TABLE)
    await context.app.job_manager.delete_old_jobs(
        nb_hours=FINISHED_JOBS_KEEP_HOURS, include_failed=True, include_cancelled=True, include_aborted=True
    )
    log = logger.warning if pruned.orphan_files is None else logger.info
    log("pruned", extra={"summary": pruned.summary(), "scheduled_at": timestamp})
