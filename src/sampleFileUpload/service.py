"""Business rules of sample files: receive an upload, check it, queue its import, serve it.

The import's steps have rooms of their own: receiving.py (the body to a file), readers.py (bytes
to rows), sheet_import.py (rows to checked samples), importer.py (batches written, counted, logged),
import_runs.py (a queued record's import run: claimed, imported all or nothing, finished);
this module keeps the records and the orchestration: an upload dry run or queued, the import
slots, the deadline, and the checks a dry run and an import run share.
"""

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import delete, exists, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from src import idempotency
from src.auth.models import User
from src.constants import LockNamespace
from src.database import LockBusy, NamedLock, count_up_to, named_lock, utcnow
from src.deadlines import lift_request_deadline
from src.exceptions import StorageUnavailable
from src.sampleFileUpload.cell_dialect import ReadingOptions
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    ORPHAN_FILE_GRACE_HOURS,
    UNFINISHED_STATUSES,
    ImportMode,
    ReportCode,
    SampleFileStatus,
)
from src.sampleFileUpload.exceptions import ImportsBusy, SampleFileNotDeletable, TooManyImports
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
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import ROLE_RANK, ActivityAction, StudyRole
from src.study.exceptions import StudyNotFound, StudyRoleRequired
from src.study.models import Sample, Study, StudyMember
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
        sheet = sheet_of(upload_path, upload.filename, validator, upload.mode, upload.options)
        try:
            if upload.dry_run:
                async with worker_import_slot(), user_import_slot(session, access.user):
                    await confirm_still_editor(session, access)
                    await read_in_thread(sheet.open)
                    return await _dry_run(session, access, sheet, upload, validator)
            await read_in_thread(sheet.open)  # its format and encoding, for the record
            await confirm_still_editor(session, access)
            record = await _queue_import(session, access, upload, sheet, storage, upload_path)
            return ImportOutcome(
                report={}, upload=upload, format=sheet.format, encoding=sheet.encoding, record=record
            )
        finally:
            # Shielded: a cancelled request still closes the sheet and its sample_id table's files.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sheet.close)


def sheet_of(
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
async def worker_import_slot() -> AsyncIterator[None]:
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
async def user_import_slot(session: AsyncSession, user: User) -> AsyncIterator[None]:
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
    earlier = await earlier_import(session, access.study.id, upload.sha256)
    log = ErrorLog(None)
    step = ImportPass(session, access, validator, upload.mode, log, file_id=None)
    await run_pass(sheet, step)
    if earlier is not None and changes_nothing(step, log):
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


def changes_nothing(step: ImportPass, log: ErrorLog) -> bool:
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


async def confirm_still_editor(session: AsyncSession, access: StudyAccess) -> None:
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


async def earlier_import(
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
    )


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
