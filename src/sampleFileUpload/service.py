"""Business rules of sample files: receive an upload, check it, import it all or nothing, serve it.

The import's steps have rooms of their own: receiving.py (the body to a file), readers.py (bytes
to rows), sheet_import.py (rows to checked samples), importer.py (batches written, counted, logged);
this module keeps the records and the orchestration: slots, locks, deadline, all or nothing.
"""

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import psycopg
from sqlalchemy import delete, exists, select, true, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from src import idempotency
from src.auth.models import User
from src.constants import LockNamespace
from src.database import LockBusy, NamedLock, SessionFactory, count_up_to, named_lock, utcnow
from src.deadlines import CommitRefused, lift_request_deadline
from src.exceptions import (
    AppError,
    PreconditionFailed,
    StorageUnavailable,
    is_lock_wait_failure,
    problem_for_failure,
)
from src.sampleFileUpload.cell_dialect import ReadingOptions
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    ERRORS_FILE_MIN_BYTES,
    ERRORS_FILE_UPLOAD_MULTIPLE,
    ORPHAN_FILE_GRACE_HOURS,
    UNFINISHED_STATUSES,
    ImportMode,
    ReportCode,
    SampleFileStatus,
)
from src.sampleFileUpload.exceptions import (
    ImportCancelled,
    ImportFailed,
    ImportsBusy,
    ImportTimedOut,
    SampleFileNotDeletable,
    SampleFileRejected,
    TooManyImports,
)
from src.sampleFileUpload.importer import (
    ErrorLog,
    ImportPass,
    SheetBatches,
    read_in_thread,
    report_of,
    run_pass,
)
from src.sampleFileUpload.models import REPORT_COUNTS, SampleFile, report_count_columns
from src.sampleFileUpload.receiving import ReceivedUpload, receive_upload
from src.sampleFileUpload.storage import Storage
from src.schemas import PageParams
from src.study import activity as study_activity
from src.study import counters as study_counters
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import ROLE_RANK, WRITABLE_STATUSES, ActivityAction, StudyRole
from src.study.exceptions import StudyBusy, StudyNotFound, StudyReadOnly, StudyRoleRequired
from src.study.models import SAMPLE_ID_CONSTRAINT, Sample, Study, StudyMember
from src.study.sample_validation import SampleValidator
from src.study.service import StudyAccess

logger = logging.getLogger("studybase.imports")


@dataclass(slots=True)
class ImportOutcome:
    """What an upload came to: a stored record (new, or the earlier one for a duplicate) or a dry run."""

    report: dict[str, Any]
    upload: ReceivedUpload
    format: str
    encoding: str | None
    record: SampleFile | None = None
    duplicate_of: uuid.UUID | None = None
    # A dry run of content imported before, that would import something again: that import.
    same_content_as: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class FileAccess:
    """A sample file with the caller's access to its study, loaded together."""

    file: SampleFile
    access: StudyAccess


# ---------------------------------------------------------------------------------------------
# Importing: one upload at a time per study, a few per user and per worker, each against a deadline


async def import_sample_file(
    session: AsyncSession,
    *,
    access: StudyAccess,
    stream: AsyncIterator[bytes],
    content_type: str | None,
    storage: Storage,
    idempotency_key: str | None = None,
) -> ImportOutcome:
    """Receive and check an upload. A dry run is answered here (it writes nothing). An import is
    stored and recorded `queued` (the outcome's record) for its job to import (jobs.start_import):
    a file no reader takes (415, 422 UNREADABLE_FILE at its start) is refused before that.

    Every wait of a dry run is bounded: for a worker's import slot (IMPORT_SLOT_WAIT_SECONDS, then
    503), for one of the user's (none: 429); and its work stops at IMPORT_MAX_SECONDS (422).
    """
    lift_request_deadline()  # an upload's bounds are its own: nginx's for the body, then the import's
    await _release_connection(session)
    with storage.temp_file() as upload_path:
        upload = await receive_upload(
            stream, content_type=content_type, into=upload_path, max_bytes=upload_settings.max_upload_bytes
        )
        if idempotency_key is not None:
            await _take_idempotency_key(session, access, upload, idempotency_key)
        validator = study_samples.validator_of(access.study)
        sheet = _sheet_of(upload_path, upload.filename, validator, upload.mode, upload.options)
        try:
            if upload.dry_run:
                async with _worker_import_slot(), _user_import_slot(session, access.user):
                    await _confirm_still_editor(session, access)
                    await read_in_thread(sheet.open)
                    return await _dry_run(session, access, sheet, upload, validator)
            await read_in_thread(sheet.open)  # its format and encoding, for the record
            await _confirm_still_editor(session, access)
            record = await _queue_import(session, access, upload, sheet, storage, upload_path)
            return ImportOutcome(
                report={}, upload=upload, format=sheet.format, encoding=sheet.encoding, record=record
            )
        finally:
            # Shielded: a cancelled request still closes the sheet and its sample_id table's files.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sheet.close)


def _sheet_of(
    path: Path, filename: str, validator: SampleValidator, mode: ImportMode, options: ReadingOptions
) -> SheetBatches:
    """The sheet to read, against a deadline IMPORT_MAX_SECONDS from now."""
    return SheetBatches(
        path,
        filename=filename,
        validator=validator,
        mode=mode,
        deadline=time.monotonic() + upload_settings.IMPORT_MAX_SECONDS,
        options=options,
    )


async def _queue_import(
    session: AsyncSession,
    access: StudyAccess,
    upload: ReceivedUpload,
    sheet: SheetBatches,
    storage: Storage,
    upload_path: Path,
) -> SampleFile:
    """The file stored and its record `queued`, with what its job needs to read it as asked."""
    record = _new_record(access, upload, sheet, SampleFileStatus.QUEUED)
    record.import_options = upload.options.as_json()
    record.storage_key = await anyio.to_thread.run_sync(storage.save, upload_path)
    session.add(record)
    try:
        await session.commit()
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled request too must not leave the file
            await session.rollback()
            await anyio.to_thread.run_sync(storage.delete, record.storage_key)
        raise
    return record


async def _take_idempotency_key(
    session: AsyncSession, access: StudyAccess, upload: ReceivedUpload, key: str
) -> None:
    """An upload's Idempotency-Key is checked once its body is in: what a retry must repeat is the file
    (its hash, size, name) and its fields, not the multipart framing, whose boundary a client draws
    anew for every request."""
    request = repr(dataclasses.astuple(upload)).encode()
    fingerprint = idempotency.fingerprint_of(
        "POST", f"studies/{access.study.id}/sample-files", request, json_body=False
    )
    await idempotency.begin(
        user_id=access.user.id, key=key, fingerprint=fingerprint, session_info=session.info
    )


async def _release_connection(session: AsyncSession) -> None:
    """Ends the access checks' transaction, which hands its pooled connection back: the body may
    take minutes to arrive, and a worker's pool is small. What they loaded stays usable
    (expire_on_commit=False); the import checks the study and the caller's role again once it runs."""
    await session.commit()


_IMPORT_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


def import_slots() -> asyncio.Semaphore:
    """The worker's bound on imports and dry runs at once (IMPORTS_PER_WORKER): each holds a pooled
    connection throughout, and uploads beyond it wait here, holding none, so reads never starve.
    One per event loop, as an asyncio primitive belongs to the loop that first waits on it."""
    loop = asyncio.get_running_loop()
    slots = _IMPORT_SLOTS.get(loop)
    if slots is None:
        slots = _IMPORT_SLOTS[loop] = asyncio.Semaphore(upload_settings.imports_per_worker)
    return slots


@contextlib.asynccontextmanager
async def _worker_import_slot() -> AsyncIterator[None]:
    """One of the worker's import slots, waited for at most IMPORT_SLOT_WAIT_SECONDS (then 503)."""
    slots = import_slots()
    try:
        await asyncio.wait_for(slots.acquire(), upload_settings.IMPORT_SLOT_WAIT_SECONDS)
    except TimeoutError:
        raise ImportsBusy from None
    try:
        yield
    finally:
        slots.release()


@contextlib.asynccontextmanager
async def _user_import_slot(session: AsyncSession, user: User) -> AsyncIterator[None]:
    """One of the user's IMPORTS_PER_USER slots, shared by every worker and host (a named lock each,
    tried without waiting): a user who has them all gets 429 at once, so one user's burst of uploads
    never fills the slots everyone shares. Held for the import's transaction."""
    async with contextlib.AsyncExitStack() as held:
        for slot in range(upload_settings.IMPORTS_PER_USER):
            lock = NamedLock.of(LockNamespace.USER_IMPORTS, user.id.bytes + slot.to_bytes(2, "big"))
            try:
                await held.enter_async_context(named_lock(session, lock, wait=False))
                break
            except LockBusy:
                continue
        else:
            raise TooManyImports
        yield


async def _dry_run(
    session: AsyncSession,
    access: StudyAccess,
    sheet: SheetBatches,
    upload: ReceivedUpload,
    validator: SampleValidator,
) -> ImportOutcome:
    earlier = await _earlier_import(session, access.study.id, upload.sha256)
    log = ErrorLog(None)
    step = ImportPass(session, access, validator, upload.mode, log, file_id=None)
    await run_pass(sheet, step)
    if earlier is not None and _changes_nothing(step, log):
        # What the upload itself would answer: nothing to import, the earlier record's report.
        return ImportOutcome(
            report=earlier.report,
            upload=upload,
            format=earlier.format,
            encoding=earlier.encoding,
            duplicate_of=earlier.id,
        )
    report = report_of(sheet, step.counts, log)
    return ImportOutcome(
        report=report,
        upload=upload,
        format=sheet.format,
        encoding=sheet.encoding,
        same_content_as=earlier.id if earlier is not None else None,
    )


def _changes_nothing(step: ImportPass, log: ErrorLog) -> bool:
    """Whether a pass over content imported before found nothing to do: no sample to create or update,
    and no error but `already_exists` (an insert of samples the study has, as the earlier import made
    them). Then the upload is a duplicate of that import, answered with it; otherwise the study's
    samples changed since (an edit, a deletion, a later file) and the upload imports like any other.

    Known by the pass itself rather than by bookkeeping (a counter of sample writes per study, or the
    activity log's newest entry), so that nothing outside this module has to keep it true: a duplicate
    costs the reading and look-ups of an import, and no writes."""
    return (
        step.counts.created == 0
        and step.counts.updated == 0
        and set(log.codes) <= {ReportCode.ALREADY_EXISTS}
    )


async def _confirm_still_editor(session: AsyncSession, access: StudyAccess) -> None:
    """The access checks ran before the body, which may have taken minutes to arrive: an editor
    removed or made a viewer meanwhile gets 404/403, for a dry run too (its report would reveal
    which sample_ids the study has)."""
    member = await study_service.get_member(session, study=access.study, user_id=access.user.id)
    now = study_service.study_access_as(
        study=access.study, user=access.user, role=member.role if member is not None else None
    )
    if now is None or ROLE_RANK[now.role] < ROLE_RANK[StudyRole.EDITOR]:
        await session.rollback()
        raise StudyNotFound if now is None else StudyRoleRequired


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


async def _earlier_import(
    session: AsyncSession, study_id: uuid.UUID, sha256: str, *, not_id: uuid.UUID | None = None
) -> SampleFile | None:
    """The latest import of this content into the study, if any, other than the record `not_id`
    (the one importing: never its own earlier import)."""
    return await session.scalar(
        select(SampleFile)
        .where(
            SampleFile.study_id == study_id,
            SampleFile.id != not_id if not_id is not None else true(),
            SampleFile.sha256 == sha256,
            SampleFile.status == SampleFileStatus.IMPORTED,
            SampleFile.duplicate_of.is_(None),  # a repeat imported nothing: the import it repeats
        )
        .order_by(SampleFile.created_at.desc(), SampleFile.id.desc())
        .limit(1)
    )


def _new_record(
    access: StudyAccess,
    upload: ReceivedUpload,
    sheet: SheetBatches,
    status: SampleFileStatus,
    *,
    same_content_as: uuid.UUID | None = None,
) -> SampleFile:
    return SampleFile(
        id=uuid.uuid4(),
        study_id=access.study.id,
        filename=upload.filename,
        size_bytes=upload.size_bytes,
        sha256=upload.sha256,
        format=sheet.format,
        encoding=sheet.encoding,
        status=status,
        mode=upload.mode,
        uploaded_by=access.user.id,
        created_at=utcnow(),
        report={},
        storage_key="",
        same_content_as=same_content_as,
    )


# ---------------------------------------------------------------------------------------------
# The import job: a queued record's file read from storage and imported, all or nothing


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
    await _confirm_still_editor(session, access)
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
    async with _worker_import_slot():
        with storage.temp_file() as upload_path, storage.temp_file() as errors_path:
            await anyio.to_thread.run_sync(_fetch_stored, storage, record.storage_key, upload_path)
            access = await _uploader_access(session, record)
            validator = study_samples.validator_of(access.study)
            options = ReadingOptions.from_json(record.import_options)
            sheet = _sheet_of(upload_path, record.filename, validator, ImportMode(record.mode), options)
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
    async with _user_import_slot(session, user):
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
        earlier = await _earlier_import(session, access.study.id, record.sha256, not_id=record.id)
        await _confirm_study_unchanged(session, access)
        with errors_path.open("wb") as errors_sink:
            log = ErrorLog(
                errors_sink, max_bytes=ERRORS_FILE_UPLOAD_MULTIPLE * record.size_bytes + ERRORS_FILE_MIN_BYTES
            )
            step = ImportPass(session, access, validator, ImportMode(record.mode), log, file_id=record.id)
            async with _logged_if_cut(record, step), _busy_when_samples_collide(session):
                await run_pass(sheet, step, progress=progress.rows_read)
        if earlier is not None and _changes_nothing(step, log):
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


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class ListedFile:
    """A sample file in a listing: its record without the report, and the report's counts."""

    file: SampleFile
    report_counts: dict[str, int]


async def list_sample_files(
    session: AsyncSession, *, study: Study, page: PageParams
) -> tuple[list[ListedFile], int, bool]:
    total, total_is_exact = await count_up_to(
        session, select(SampleFile.id).where(SampleFile.study_id == study.id)
    )
    rows = await session.execute(
        select(SampleFile, *report_count_columns())
        .options(defer(SampleFile.report))
        .where(SampleFile.study_id == study.id)
        .order_by(SampleFile.created_at.desc(), SampleFile.id.desc())
        .offset(page.offset)
        .limit(page.page_size)
    )
    listed = [
        ListedFile(record, {key: count or 0 for key, count in zip(REPORT_COUNTS, counts, strict=True)})
        for record, *counts in rows
    ]
    return listed, total, total_is_exact


async def get_sample_file(session: AsyncSession, *, file_id: uuid.UUID) -> SampleFile | None:
    return await session.get(SampleFile, file_id)


async def get_file_access(session: AsyncSession, *, file_id: uuid.UUID, user: User) -> FileAccess | None:
    """The file, its study and the caller's role in it, in one query; None when they may not see it."""
    membership = (StudyMember.study_id == Study.id) & (StudyMember.user_id == user.id)
    row = (
        await session.execute(
            select(SampleFile, Study, StudyMember.role)
            .join(Study, Study.id == SampleFile.study_id)
            .outerjoin(StudyMember, membership)
            .where(SampleFile.id == file_id)
        )
    ).first()
    if row is None:
        return None
    sample_file, study, role = row
    access = study_service.study_access_as(study=study, user=user, role=role)
    return FileAccess(file=sample_file, access=access) if access is not None else None


async def delete_sample_file(session: AsyncSession, *, file_access: FileAccess, storage: Storage) -> None:
    """Rejected, failed or cancelled files, or imported ones none of whose samples are left; the
    stored files go too. A file whose import is queued or running is cancelled first."""
    record = file_access.file
    if record.status in UNFINISHED_STATUSES:
        raise SampleFileNotDeletable
    if record.status == SampleFileStatus.IMPORTED:
        still_there = await session.scalar(select(exists().where(Sample.source_file_id == record.id)))
        if still_there:
            raise SampleFileNotDeletable
    await session.execute(delete(SampleFile).where(SampleFile.id == record.id))
    study_activity.record_activity(
        session,
        study_id=record.study_id,
        actor=file_access.access.user,
        action=ActivityAction.SAMPLE_FILE_DELETED,
        details={"sample_file_id": str(record.id), "filename": record.filename, "status": record.status},
    )
    await session.commit()
    await _delete_stored(storage, [key for key in (record.storage_key, record.errors_key) if key])


async def delete_study(
    session: AsyncSession, *, study: Study, expected_version: int | None, storage: Storage
) -> None:
    """A study (a draft without samples, study_service.delete_study) with its sample files: the
    records go with the study's row, their stored bytes right after the commit. A file stored in
    between, or bytes a crash left, are `prune`'s (they no longer have a record)."""
    keys = await _stored_keys(session, SampleFile.study_id == study.id)
    await study_service.delete_study(session, study=study, expected_version=expected_version)
    await _delete_stored(storage, keys)


async def _stored_keys(session: AsyncSession, condition: Any) -> list[str]:
    rows = await session.execute(select(SampleFile.storage_key, SampleFile.errors_key).where(condition))
    return [key for row in rows for key in row if key]


async def _delete_stored(storage: Storage, keys: list[str]) -> None:
    """After the commit that removed their records: a store that is away then leaves the files to
    `prune` (they have no record), and the deletion the user asked for has happened all the same."""
    for key in keys:
        try:
            await anyio.to_thread.run_sync(storage.delete, key)
        except StorageUnavailable:
            logger.warning("stored_file_left_for_prune", extra={"storage_key": key})


# ---------------------------------------------------------------------------------------------
# Pruning: files left behind by a worker that was killed


async def _keys_with_records(session: AsyncSession, keys: list[str]) -> set[str]:
    stored = select(SampleFile.storage_key).where(SampleFile.storage_key.in_(keys))
    errors = select(SampleFile.errors_key).where(SampleFile.errors_key.in_(keys))
    return set(await session.scalars(stored.union(errors)))


async def prune_orphan_files(
    session: AsyncSession, *, storage: Storage, max_files: int, now: datetime | None = None, batch: int = 1000
) -> int:
    """Removes up to `max_files` temporary files and stored files that no record names, once older
    than ORPHAN_FILE_GRACE_HOURS (a worker killed mid-upload, or between storing a file and
    committing its record, leaves them); a live upload's files are always younger."""
    cutoff = (now or utcnow()) - timedelta(hours=ORPHAN_FILE_GRACE_HOURS)
    removed = await anyio.to_thread.run_sync(
        lambda: storage.remove_temp_files_older_than(cutoff, limit=max_files)
    )
    keys = await anyio.to_thread.run_sync(lambda: list(storage.keys_older_than(cutoff)))
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        for key in sorted(set(chunk) - await _keys_with_records(session, chunk)):
            if removed >= max_files:
                return removed
            await anyio.to_thread.run_sync(storage.delete, key)
            removed += 1
    return removed
