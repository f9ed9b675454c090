"""The import as a job (IMPORT_RUNNER), and how an upload waits for it.

An upload is stored and recorded `queued` (service.import_sample_file); its job
(import_runs.import_queued_file) imports it and leaves the record finished. Who runs that job:

`process` (the default, and SQLite's only choice): the API process that took the upload, as a task
beside its requests, so `python main.py` alone imports files. Progress goes to the record every
IMPORT_PROGRESS_SECONDS in a short transaction of its own on PostgreSQL; on SQLite, whose one writer
is the import itself until it commits, it is kept in this process (the only one) and read from here.
A process that stops ends its running imports `failed`; one killed outright leaves them unfinished,
and the next start of an API process (or prune) ends those past any import's bounds `failed`.

`queue` (PostgreSQL): the job queue's workers (`imports:import_file`, src/job_queue.py), one import
per study at a time (the job's `lock`), a user's later uploads behind everyone's first (`priority`).
A worker killed mid-import is found by stalled-job recovery and its job run again from nothing (its
transaction died with it); after IMPORT_MAX_ATTEMPTS the record says `failed`.
"""

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import procrastinate
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src import database
from src.database import SessionFactory, utcnow
from src.deadlines import current_deadline
from src.sampleFileUpload import import_runs
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    IMPORT_PRIORITY_FIRST,
    IMPORT_PRIORITY_FLOOR,
    IMPORTS_QUEUE,
    UNFINISHED_STATUSES,
    ImportRunner,
    SampleFileStatus,
)
from src.sampleFileUpload.exceptions import ImportCancelled, ImportFailed, ImportFinished
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.storage import Storage, get_storage

logger = logging.getLogger("studybase.imports")
# How often an upload (or a cancel) waiting on another process's job looks at the record.
POLL_SECONDS = 0.2
# A cancel waits IMPORT_PROGRESS_SECONDS and this long for the running import to stop (it looks at
# its progress points), but leaves at least CANCEL_ANSWER_SECONDS of its request's deadline
# (REQUEST_TIMEOUT_SECONDS) to answer 202 in: past the deadline it would answer 503 "nothing was
# changed" for a cancel that was asked.
CANCEL_WAIT_MARGIN_SECONDS = 3.0
CANCEL_ANSWER_SECONDS = 1.0


@dataclasses.dataclass(slots=True)
class LiveImport:
    """An import this process runs: its progress, its cancel, its end."""

    rows_read: int = 0
    rows_total: int | None = None
    cancel: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


_LIVE: dict[uuid.UUID, LiveImport] = {}
_TASKS: set[asyncio.Task[None]] = set()


class JobProgress:
    """import_runs.ImportProgress: the rows read, written to the record after the first batch (with the
    file's rows as far as they are known, readers.Sheet.data_rows_claimed) and then at most every
    IMPORT_PROGRESS_SECONDS, in a short transaction of its own (where the database has more than one
    writer), which also reads whether the import's cancel was asked; ImportCancelled then. Written
    only while the record is still this run's (`importing` under its claim), like the final write:
    a run that lost it (claimed again, or ended by the sweep) stops there (import_runs.ClaimLost)."""

    def __init__(self, file_id: uuid.UUID, *, live: LiveImport | None, to_database: bool) -> None:
        self.file_id, self.live, self.to_database = file_id, live, to_database
        self.claim: int | None = None
        self.total: int | None = None
        self._written_at: float | None = None

    def claimed(self, claim: int) -> None:
        self.claim = claim

    def rows_total(self, rows: int | None) -> None:
        self.total = rows
        if self.live is not None:
            self.live.rows_total = rows

    def cancel_asked(self) -> bool:
        """Asked of this process (on SQLite a cancel is told only here: the import holds the one writer)."""
        return self.live is not None and self.live.cancel.is_set()

    async def rows_read(self, rows: int) -> None:
        if self.live is not None:
            self.live.rows_read = rows
        if self.cancel_asked():
            raise ImportCancelled
        if not self.to_database or (
            self._written_at is not None
            and time.monotonic() - self._written_at < upload_settings.IMPORT_PROGRESS_SECONDS
        ):
            return
        self._written_at = time.monotonic()
        asked = await _write_progress(self.file_id, self.claim, rows, self.total)
        if asked is None:
            raise import_runs.ClaimLost
        if asked:
            raise ImportCancelled


async def _write_progress(file_id: uuid.UUID, claim: int | None, rows: int, total: int | None) -> bool | None:
    """Writes the rows read (and the file's, as far as known) while the record is the run's under
    `claim`; whether the import's cancel was asked, None when the record is no longer the run's."""
    async with SessionFactory() as session:
        asked = await session.scalar(
            update(SampleFile)
            .where(
                SampleFile.id == file_id,
                SampleFile.status == SampleFileStatus.IMPORTING,
                SampleFile.claim == claim,
            )
            .values(rows_read=rows, rows_total=total)
            .returning(SampleFile.cancel_requested)
        )
        await session.commit()
    return asked


def _writes_progress_to_database() -> bool:
    """SQLite has one writer, the running import until it commits: progress stays in the process."""
    return database.engine.dialect.name == "postgresql"


# ---------------------------------------------------------------------------------------------
# Starting a job


async def start_import(session: AsyncSession, record: SampleFile, *, storage: Storage) -> None:
    """Runs the queued record's import here (IMPORT_RUNNER=process) or queues its job (`queue`)."""
    if upload_settings.IMPORT_RUNNER is ImportRunner.QUEUE:
        try:
            await _queue_job(session, record)
        except BaseException:  # no job will ever import it (the database away, say): it says so
            with anyio.CancelScope(shield=True):
                await _end_unfinished(SampleFile.id == record.id)
            raise
        return
    live = _LIVE[record.id] = LiveImport()
    # A context of its own: the request's (its deadline, its idempotency key) is not the job's.
    task = asyncio.create_task(
        _run_here(record.id, storage, live), name=f"import-{record.id}", context=contextvars.Context()
    )
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _run_here(file_id: uuid.UUID, storage: Storage, live: LiveImport) -> None:
    try:
        progress = JobProgress(file_id, live=live, to_database=_writes_progress_to_database())
        await import_runs.import_queued_file(file_id, storage=storage, progress=progress, take_user_slot=True)
    except Exception as error:  # its record could not be ended (the database away): the sweep ends it
        logger.error("import_not_ended", extra={"sample_file_id": str(file_id), "error": repr(error)[:300]})
    finally:
        live.done.set()
        _LIVE.pop(file_id, None)


async def _queue_job(session: AsyncSession, record: SampleFile) -> None:
    """One import per study at a time (the job's lock); a user's uploads already waiting put this
    one further back (lower priority), so a burst of one user's files queues behind everyone's."""
    waiting = await session.scalar(
        select(func.count())
        .select_from(SampleFile)
        .where(
            SampleFile.uploaded_by == record.uploaded_by,
            SampleFile.status.in_(UNFINISHED_STATUSES),
            SampleFile.id != record.id,
        )
    )
    await session.commit()
    priority = max(IMPORT_PRIORITY_FIRST - (waiting or 0), IMPORT_PRIORITY_FLOOR)
    _queue_app()  # binds this module's tasks to the queue's app
    await import_file.configure(lock=f"study:{record.study_id}", priority=priority).defer_async(
        file_id=str(record.id)
    )


import_jobs = procrastinate.Blueprint()


@import_jobs.task(name="import_file", queue=IMPORTS_QUEUE, pass_context=True)
async def import_file(context: procrastinate.JobContext, file_id: str) -> None:
    """A queued upload's import; run again from nothing when its worker died (stalled-job recovery)."""
    record_id = uuid.UUID(file_id)
    attempts = context.job.attempts if context.job is not None else 0
    if attempts >= upload_settings.IMPORT_MAX_ATTEMPTS:
        logger.error("import_given_up", extra={"sample_file_id": file_id, "attempts": attempts})
        await _end_unfinished(SampleFile.id == record_id)
        return
    progress = JobProgress(record_id, live=None, to_database=True)
    await import_runs.import_queued_file(
        record_id, storage=get_storage(), progress=progress, take_user_slot=False
    )


async def _end_unfinished(condition: object) -> int:
    """Ends the unfinished records `condition` picks `failed` (their import is gone); how many."""
    async with SessionFactory() as session:
        ended = await session.execute(
            update(SampleFile)
            .where(condition, SampleFile.status.in_(UNFINISHED_STATUSES))
            .values(status=SampleFileStatus.FAILED, failure=ImportFailed.problem(), finished_at=utcnow())
        )
        await session.commit()
    return ended.rowcount or 0


def abandoned_after() -> timedelta:
    """The longest a record of an import run by an API process can stay unfinished: its wait for a
    slot, then its deadline, and a margin."""
    return timedelta(
        seconds=upload_settings.IMPORT_SLOT_WAIT_SECONDS + upload_settings.IMPORT_MAX_SECONDS + 60
    )


async def fail_abandoned_imports() -> int:
    """With IMPORT_RUNNER=process, records left unfinished by an API process that was killed are
    ended `failed` once older than any import of an API process can last (at each start of one, and
    by prune). The queue's jobs are the workers' (stalled-job recovery): left alone here."""
    if upload_settings.IMPORT_RUNNER is not ImportRunner.PROCESS:
        return 0
    ended = await _end_unfinished(SampleFile.created_at < utcnow() - abandoned_after())
    if ended:
        logger.warning("abandoned_imports_failed", extra={"count": ended})
    return ended


def _queue_app() -> procrastinate.App:
    from src.job_queue import JobQueueUnavailable, job_app  # the queue's app adds this module's jobs

    try:
        return job_app()
    except JobQueueUnavailable:
        raise RuntimeError(
            "IMPORT_RUNNER=queue needs the job queue, which needs PostgreSQL (DATABASE_URL); "
            "on SQLite use IMPORT_RUNNER=process"
        ) from None


@contextlib.asynccontextmanager
async def imports_running() -> AsyncIterator[None]:
    """The app's lifespan. IMPORT_RUNNER=queue: the queue's connections, open to queue jobs.
    `process`: abandoned imports ended at start; at shutdown this process's running imports are
    stopped (rolled back, their records `failed`) before the engine goes."""
    if upload_settings.IMPORT_RUNNER is ImportRunner.QUEUE:
        async with _queue_app().open_async():
            yield
        return
    with contextlib.suppress(Exception):  # the database away at start: prune ends them later
        await fail_abandoned_imports()
    try:
        yield
    finally:
        for task in list(_TASKS):
            task.cancel()
        if _TASKS:
            await asyncio.gather(*_TASKS, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Waiting, progress and cancel, for the routes


async def wait_for_import(file_id: uuid.UUID, seconds: float) -> SampleFile | None:
    """The record once its import finished, waited for at most `seconds`; None if still running."""
    live = _LIVE.get(file_id)
    deadline = time.monotonic() + seconds
    if live is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.done.wait(), seconds)
    while True:
        record = await load_record(file_id)
        if record is None or record.status not in UNFINISHED_STATUSES:
            return record
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


async def load_record(file_id: uuid.UUID) -> SampleFile | None:
    async with SessionFactory() as session:
        return await session.get(SampleFile, file_id)


def progress_of(record: SampleFile) -> tuple[int, int | None]:
    """The record's rows read and total, or this process's newer ones for an import it runs (on
    SQLite the only one: progress there is not written until the import ends)."""
    live = _LIVE.get(record.id)
    if live is None or record.status not in UNFINISHED_STATUSES:
        return record.rows_read, record.rows_total
    total = record.rows_total if record.rows_total is not None else live.rows_total
    return max(record.rows_read, live.rows_read), total


async def cancel_import(session: AsyncSession, record: SampleFile) -> SampleFile:
    """A queued import is cancelled at once; a running one is told to stop (it rolls back at its next
    progress point) and waited for a little. ImportFinished when it had finished already."""
    if record.status not in UNFINISHED_STATUSES:
        raise ImportFinished
    live = _LIVE.get(record.id)
    if live is not None:
        live.cancel.set()
    # On SQLite a running import is this process's, and holds the one write lock: told in memory only.
    if live is None or record.status == SampleFileStatus.QUEUED or _writes_progress_to_database():
        await import_runs.ask_cancel(session, file_id=record.id)
    now = await wait_for_import(record.id, _cancel_wait_seconds())
    if now is None:
        refreshed = await load_record(record.id)
        return refreshed if refreshed is not None else record
    if now.status != SampleFileStatus.CANCELLED:  # it finished before it saw the cancel
        raise ImportFinished
    return now


def _cancel_wait_seconds() -> float:
    """Until the import's next progress point and a margin, within the request's deadline."""
    wait = upload_settings.IMPORT_PROGRESS_SECONDS + CANCEL_WAIT_MARGIN_SECONDS
    deadline = current_deadline()
    if deadline is not None:
        left = deadline.at - asyncio.get_running_loop().time() - CANCEL_ANSWER_SECONDS
        wait = min(wait, left)
    return max(wait, 0.0)
