"""The import run: a queued record's stored file imported by its job, all or nothing.

An upload is stored and recorded `queued` (service.import_sample_file); its job (jobs.py) calls
import_queued_file, which claims the record (`importing`, under a new claim), waits for a worker's
import slot, checks that the uploader may still import, imports the file under the study's import
lock against its deadline, and writes the outcome only while the record is still the run's
(ClaimLost otherwise): imported, a duplicate, rejected with its errors file, cancelled or failed.
ask_cancel cancels a queued import, or flags a running one to stop.
"""

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import psycopg
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth.models import User
from src.database import SessionFactory, utcnow
from src.deadlines import CommitRefused
from src.exceptions import AppError, PreconditionFailed, is_lock_wait_failure, problem_for_failure
from src.sampleFileUpload.cell_dialect import ReadingOptions
from src.sampleFileUpload.constants import (
    ERRORS_FILE_MIN_BYTES,
    ERRORS_FILE_UPLOAD_MULTIPLE,
    UNFINISHED_STATUSES,
    ImportMode,
    SampleFileStatus,
)
from src.sampleFileUpload.exceptions import ImportCancelled, ImportFailed, ImportTimedOut, SampleFileRejected
from src.sampleFileUpload.importer import (
    ErrorLog,
    ImportPass,
    SheetBatches,
    read_in_thread,
    report_of,
    run_pass,
)
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.service import (
    changes_nothing,
    confirm_still_editor,
    earlier_import,
    sheet_of,
    user_import_slot,
    worker_import_slot,
)
from src.sampleFileUpload.storage import Storage
from src.study import activity as study_activity
from src.study import counters as study_counters
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import WRITABLE_STATUSES, ActivityAction, StudyRole
from src.study.exceptions import StudyBusy, StudyNotFound, StudyReadOnly
from src.study.models import SAMPLE_ID_CONSTRAINT, Study
from src.study.sample_validation import SampleValidator
from src.study.service import StudyAccess

logger = logging.getLogger("studybase.imports")


class ImportProgress(Protocol):
    """Told the run's claim, the file's rows as far as they are known before it is read, then the
    rows read after each batch (jobs.py writes them while the claim is the record's, and raises
    ImportCancelled once the import's cancel was asked, ClaimLost once the record is not the run's);
    asked at the final write whether a cancel was told only to this process. Known to the import
    only through this."""

    def claimed(self, claim: int) -> None: ...

    def rows_total(self, rows: int | None) -> None: ...

    async def rows_read(self, rows: int) -> None: ...

    def cancel_asked(self) -> bool: ...


async def import_queued_file(
    file_id: uuid.UUID, *, storage: Storage, progress: ImportProgress, take_user_slot: bool
) -> SampleFileStatus | None:
    """The job: imports the file a `queued` (or, run again after its worker died, `importing`)
    record names, in a session of its own, and leaves the record finished whatever happens:
    imported, rejected, cancelled (rolled back), or failed with the problem the upload would have
    answered. None when there was nothing to do (cancelled before it started, or finished)."""
    async with SessionFactory() as session:
        record = await _claim(session, file_id)
        if record is None:
            return None
        claim = record.claim  # this run's: the record's may change under it (claimed again)
        progress.claimed(claim)
        try:
            return await _import_claimed(session, record, claim, storage, progress, take_user_slot)
        except SampleFileRejected:
            return SampleFileStatus.REJECTED
        except ClaimLost:
            # Claimed again or ended meanwhile (theirs now, left alone), or its cancel was asked.
            asked = await _finish_unimported(
                session, file_id, SampleFileStatus.CANCELLED, claim=claim, only_if_asked=True
            )
            return SampleFileStatus.CANCELLED if asked else None
        except ImportCancelled:
            await _finish_unimported(session, file_id, SampleFileStatus.CANCELLED, claim=claim)
            return SampleFileStatus.CANCELLED
        except AppError as refused:
            await _finish_unimported(
                session, file_id, SampleFileStatus.FAILED, ImportFailed.problem(refused), claim=claim
            )
            return SampleFileStatus.FAILED
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):  # the process stopping: the record says so
                await _finish_unimported(
                    session, file_id, SampleFileStatus.FAILED, ImportFailed.problem(), claim=claim
                )
            raise
        except Exception as error:
            known = problem_for_failure(error)
            if known is None:
                logger.exception("import_failed", extra={"sample_file_id": str(file_id)})
            else:
                logger.warning("import_failed", extra={"sample_file_id": str(file_id), "code": known.code})
            await _finish_unimported(
                session, file_id, SampleFileStatus.FAILED, ImportFailed.problem(known), claim=claim
            )
            return SampleFileStatus.FAILED


async def _claim(session: AsyncSession, file_id: uuid.UUID) -> SampleFile | None:
    """Marks the record `importing` in a short transaction of its own; None when it is not waiting
    (finished, or cancelled meanwhile). A record already `importing` is a job run again after its
    worker died (or was taken for dead): what that worker wrote died with its transaction, so it
    starts from nothing; its new `claim` makes that worker's final write lose, should it live on."""
    claimed = await session.scalars(
        update(SampleFile)
        .where(
            SampleFile.id == file_id,
            SampleFile.status.in_(UNFINISHED_STATUSES),
            SampleFile.cancel_requested.is_(False),
        )
        .values(
            status=SampleFileStatus.IMPORTING,
            started_at=utcnow(),
            rows_read=0,
            rows_total=None,
            claim=SampleFile.claim + 1,
        )
        .returning(SampleFile)
    )
    record = claimed.one_or_none()
    await session.commit()  # no connection held while the job waits for a slot
    if record is None:
        # Its cancel was asked before it started: cancelled, if nobody said so yet.
        await _finish_unimported(session, file_id, SampleFileStatus.CANCELLED, only_if_asked=True)
    return record


async def _finish_unimported(
    session: AsyncSession,
    file_id: uuid.UUID,
    status: SampleFileStatus,
    failure: dict[str, Any] | None = None,
    *,
    claim: int | None = None,
    only_if_asked: bool = False,
) -> bool:
    """Rolls back what the import wrote, then ends its record `failed` (with why) or `cancelled`;
    whether it did. A record finished already, or claimed again since `claim`, stays as it is."""
    await session.rollback()
    condition = SampleFile.status.in_(UNFINISHED_STATUSES)
    if claim is not None:
        condition &= SampleFile.claim == claim
    if only_if_asked:
        condition &= SampleFile.cancel_requested.is_(True)
    cancelled = status is SampleFileStatus.CANCELLED
    ended = await session.execute(
        update(SampleFile)
        .where(SampleFile.id == file_id, condition)
        .values(status=status, failure=failure, finished_at=utcnow(), cancel_requested=cancelled)
    )
    await session.commit()
    return bool(ended.rowcount)


class ClaimLost(Exception):
    """The run's record is no longer its to finish: claimed again (its job re-queued while it still
    ran), ended by the sweep for abandoned imports, or its cancel asked. Its writes are rolled back."""


async def _hold_claim(
    session: AsyncSession, record_id: uuid.UUID, claim: int, progress: ImportProgress
) -> None:
    """The outcome's write, first in the transaction that commits it: only while the record is still
    this run's (`importing` under its claim, no cancel asked). The row's lock (PostgreSQL) or the one
    writer (SQLite) keeps it so until the commit; else everything is rolled back (ClaimLost). A
    cancel told only to this process (SQLite's, in memory) is caught here too (ImportCancelled)."""
    held = await session.execute(
        update(SampleFile)
        .where(
            SampleFile.id == record_id,
            SampleFile.status == SampleFileStatus.IMPORTING,
            SampleFile.claim == claim,
            SampleFile.cancel_requested.is_(False),
        )
        # Takes the row, writing nothing of the outcome yet: that comes after (status `imported`
        # before same_content_as would clash with the unique index of first imports).
        .values(finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not held.rowcount:
        await session.rollback()
        raise ClaimLost
    if progress.cancel_asked():  # rolled back by import_queued_file, after the stop is logged
        raise ImportCancelled


async def ask_cancel(session: AsyncSession, *, file_id: uuid.UUID) -> None:
    """A queued import is cancelled at once; a running one's record is flagged: its job looks at
    the flag at its progress points, rolls back and ends it `cancelled`."""
    queued = await session.execute(
        update(SampleFile)
        .where(SampleFile.id == file_id, SampleFile.status == SampleFileStatus.QUEUED)
        .values(status=SampleFileStatus.CANCELLED, cancel_requested=True, finished_at=utcnow())
    )
    if not queued.rowcount:
        await session.execute(
            update(SampleFile)
            .where(SampleFile.id == file_id, SampleFile.status == SampleFileStatus.IMPORTING)
            .values(cancel_requested=True)
        )
    await session.commit()


async def _uploader_access(session: AsyncSession, record: SampleFile) -> StudyAccess:
    """The uploader's access to the study now: still an editor (or owner), else 404/403."""
    study = await session.get(Study, record.study_id)
    user = await session.get(User, record.uploaded_by) if record.uploaded_by is not None else None
    if study is None or user is None:
        raise StudyNotFound
    access = StudyAccess(study=study, user=user, role=StudyRole.EDITOR)
    await confirm_still_editor(session, access)
    return access


def _fetch_stored(storage: Storage, key: str, into: Path) -> None:
    with storage.open(key) as stored, into.open("wb") as copy:
        shutil.copyfileobj(stored, copy, 1024 * 1024)


async def _import_claimed(
    session: AsyncSession,
    record: SampleFile,
    claim: int,
    storage: Storage,
    progress: ImportProgress,
    take_user_slot: bool,
) -> SampleFileStatus:
    """The claimed record's import. It waits for a worker slot holding no connection (the claim
    committed) and no copy of the file (so uploads waiting for a slot fill no disk), then copies
    the stored file here and checks that the uploader may still import into the study."""
    async with worker_import_slot():
        with storage.temp_file() as upload_path, storage.temp_file() as errors_path:
            await anyio.to_thread.run_sync(_fetch_stored, storage, record.storage_key, upload_path)
            access = await _uploader_access(session, record)
            validator = study_samples.validator_of(access.study)
            options = ReadingOptions.from_json(record.import_options)
            sheet = sheet_of(upload_path, record.filename, validator, ImportMode(record.mode), options)
            try:
                async with _maybe_user_slot(session, access.user, take_user_slot):
                    await read_in_thread(sheet.open)
                    progress.rows_total(await read_in_thread(sheet.data_rows_claimed))
                    return await _import(
                        session, access, sheet, record, claim, validator, storage, errors_path, progress
                    )
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(sheet.close)


@contextlib.asynccontextmanager
async def _maybe_user_slot(session: AsyncSession, user: User, take: bool) -> AsyncIterator[None]:
    """In the API process, a user's imports take their slots (IMPORTS_PER_USER) as a dry run does;
    the job queue orders them instead (a user's later uploads wait behind everyone's first)."""
    if not take:
        yield
        return
    async with user_import_slot(session, user):
        yield


async def _import(
    session: AsyncSession,
    access: StudyAccess,
    sheet: SheetBatches,
    record: SampleFile,
    claim: int,
    validator: SampleValidator,
    storage: Storage,
    errors_path: Path,
    progress: ImportProgress,
) -> SampleFileStatus:
    """Imports into one study take turns (its import lock, held to the commit): which also makes two
    identical uploads at once import once (the second finds the first, and nothing to change). The
    study's row is not held meanwhile: edits of its samples go on beside the import; changes of its
    fields or status wait for it (STUDY_BUSY). The record's row is changed only at the end, so the
    progress written beside the import (in transactions of its own) never waits for it."""
    async with study_service.holding_study(session, access.study.id, for_import=True):
        earlier = await earlier_import(session, access.study.id, record.sha256, not_id=record.id)
        await _confirm_study_unchanged(session, access)
        with errors_path.open("wb") as errors_sink:
            log = ErrorLog(
                errors_sink, max_bytes=ERRORS_FILE_UPLOAD_MULTIPLE * record.size_bytes + ERRORS_FILE_MIN_BYTES
            )
            step = ImportPass(session, access, validator, ImportMode(record.mode), log, file_id=record.id)
            async with _logged_if_cut(record, step), _busy_when_samples_collide(session):
                await run_pass(sheet, step, progress=progress.rows_read)
        if earlier is not None and changes_nothing(step, log):
            await _duplicate(session, access, record, claim, earlier, step, progress)
            return SampleFileStatus.IMPORTED
        report = report_of(sheet, step.counts, log)
        same_content_as = earlier.id if earlier is not None else None
        if log.total:
            await _roll_back(session, access, record)
            await _store_rejected(
                session, access, record, claim, report, storage, errors_path, same_content_as, progress
            )
            raise SampleFileRejected(sample_file_id=str(record.id), report=report)
        async with _logged_if_cut(record, step), _busy_when_samples_collide(session):
            await _commit_imported(session, access, record, claim, report, step, same_content_as, progress)
    return SampleFileStatus.IMPORTED


async def _confirm_study_unchanged(session: AsyncSession, access: StudyAccess) -> None:
    """Under the study's import lock: still draft or active, with the fields the file is checked against."""
    current = (
        await session.execute(select(Study.status, Study.sample_fields).where(Study.id == access.study.id))
    ).first()
    if current is None:
        await session.rollback()
        raise StudyNotFound
    if current.status not in WRITABLE_STATUSES:
        await session.rollback()
        raise StudyReadOnly
    if current.sample_fields != access.study.sample_fields:
        await session.rollback()
        raise PreconditionFailed(_FIELDS_CHANGED)


_FIELDS_CHANGED = (
    "The study's sample fields changed while the file was on its way; nothing was imported. Send it again."
)


async def _roll_back(session: AsyncSession, access: StudyAccess, record: SampleFile) -> None:
    """Undoes the import's writes and reloads the study, the caller and the record, which a
    rollback expires."""
    await session.rollback()
    for loaded in (access.study, access.user, record):
        await session.refresh(loaded)


def _finished(record: SampleFile, status: SampleFileStatus, report: dict[str, Any], rows: int) -> None:
    record.status, record.report = status, report
    record.rows_read = record.rows_total = rows
    record.finished_at = utcnow()


async def _duplicate(
    session: AsyncSession,
    access: StudyAccess,
    record: SampleFile,
    claim: int,
    earlier: SampleFile,
    step: ImportPass,
    progress: ImportProgress,
) -> None:
    """Content imported before that changed nothing: nothing is written (what the pass flushed is
    rolled back); the record says which import it repeats, with that import's report."""
    await _roll_back(session, access, record)
    await session.refresh(earlier)
    await _hold_claim(session, record.id, claim, progress)
    _finished(record, SampleFileStatus.IMPORTED, earlier.report, step.counts.rows)
    record.duplicate_of = record.same_content_as = earlier.id
    await session.commit()


@contextlib.asynccontextmanager
async def _logged_if_cut(record: SampleFile, step: ImportPass) -> AsyncIterator[None]:
    """An import stopped by its deadline, a cancel or a shutdown is rolled back: one ERROR line says
    which file and what was undone, so an operator can tell the uploader."""
    try:
        yield
    except (ImportTimedOut, ImportCancelled, CommitRefused, asyncio.CancelledError) as stop:
        logger.error(
            "import_stopped",
            extra={
                "sample_file_id": str(record.id),
                "study_id": str(record.study_id),
                "sample_filename": record.filename,
                "why": {
                    ImportTimedOut: "deadline",
                    ImportCancelled: "cancel_asked",
                    CommitRefused: "client_gone_or_late",
                }.get(type(stop), "cancelled"),
                "rows_read": step.counts.rows,
                "rolled_back": {"created": step.counts.created, "updated": step.counts.updated},
            },
        )
        raise


@contextlib.asynccontextmanager
async def _busy_when_samples_collide(session: AsyncSession) -> AsyncIterator[None]:
    """Edits run beside an import: one that created a sample_id of the file while it was importing,
    or that holds a sample the import must update past the lock timeout, makes the import 409
    STUDY_BUSY with nothing imported (sending the file again then reports or updates that sample)."""
    try:
        yield
    except (IntegrityError, psycopg.IntegrityError, DBAPIError, psycopg.OperationalError) as error:
        if not (_is_sample_id_collision(error) or is_lock_wait_failure(error)):
            raise
        await session.rollback()
        raise StudyBusy(
            "Someone changed samples of this study that the file has while it was importing: nothing was "
            "imported. Send the file again."
        ) from None


def _is_sample_id_collision(error: BaseException) -> bool:
    """A unique violation of (study_id, sample_id_normalized): psycopg's own (from COPY) or wrapped."""
    cause = getattr(error, "orig", error)
    if isinstance(cause, psycopg.errors.UniqueViolation):
        return cause.diag.constraint_name == SAMPLE_ID_CONSTRAINT
    return isinstance(error, IntegrityError) and "samples.sample_id_normalized" in str(cause)


async def _commit_imported(
    session: AsyncSession,
    access: StudyAccess,
    record: SampleFile,
    claim: int,
    report: dict[str, Any],
    step: ImportPass,
    same_content_as: uuid.UUID | None,
    progress: ImportProgress,
) -> None:
    await _hold_claim(session, record.id, claim, progress)
    fields = await study_counters.apply_count_changes(
        session, study_id=access.study.id, changes=step.count_changes
    )
    if fields != access.study.sample_fields:  # only if changed by a path that skipped the import lock
        await session.rollback()
        raise PreconditionFailed(_FIELDS_CHANGED)
    _finished(record, SampleFileStatus.IMPORTED, report, step.counts.rows)
    record.same_content_as = same_content_as
    study_activity.record_activity(
        session,
        study_id=access.study.id,
        actor=access.user,
        action=ActivityAction.SAMPLE_FILE_IMPORTED,
        details={
            "sample_file_id": str(record.id),
            "filename": record.filename,
            **{key: report[key] for key in ("rows", "created", "updated", "unchanged")},
        },
    )
    await session.commit()


async def _store_rejected(
    session: AsyncSession,
    access: StudyAccess,
    record: SampleFile,
    claim: int,
    report: dict[str, Any],
    storage: Storage,
    errors_path: Path,
    same_content_as: uuid.UUID | None,
    progress: ImportProgress,
) -> None:
    """Keeps the report and every error, so the user can fetch them later (the file is stored already)."""
    await _hold_claim(session, record.id, claim, progress)
    _finished(record, SampleFileStatus.REJECTED, report, report["rows"])
    record.same_content_as = same_content_as
    study_activity.record_activity(
        session,
        study_id=access.study.id,
        actor=access.user,
        action=ActivityAction.SAMPLE_FILE_REJECTED,
        details={
            "sample_file_id": str(record.id),
            "filename": record.filename,
            **{key: report[key] for key in ("rows", "rejected", "errors_total")},
        },
    )
    errors_key = await anyio.to_thread.run_sync(storage.save, errors_path)
    record.errors_key = errors_key
    try:
        await session.commit()
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled job too must not leave the file
            await session.rollback()
            await anyio.to_thread.run_sync(storage.delete, errors_key)
        raise
