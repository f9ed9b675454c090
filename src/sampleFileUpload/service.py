"""Business rules of sample files: receive an upload, check it, import it all or nothing, serve it.

How an import keeps memory flat: the upload streams to a temporary file (hashed and counted as
it arrives); the sheet is read row by row in a worker thread, a batch of IMPORT_BATCH_ROWS rows at
a time, the next batch read while this one is written; each batch is checked (one compiled schema
per file), looked up in the study (one `IN (...)` query, or a small study's ids held in memory)
and written with COPY on PostgreSQL (one multi-row INSERT elsewhere), all in one transaction.

One pass, not two: rows are written while no error has been seen; after the first error the pass
goes on checking (so the report is complete) but writes nothing more, and the transaction is
rolled back at the end. A clean file, the common case, is read once. What grows with the file is
the table of sample_ids seen (for `duplicate_in_file`), which is on disk (sheet_import.SeenIds), and
the error file on disk; the report keeps the first MAX_REPORT_ERRORS.
"""

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from pydantic import TypeAdapter, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src.auth.models import User
from src.database import SessionFactory, count_up_to, utcnow
from src.exceptions import PreconditionFailed, ValidationFailed
from src.sampleFileUpload import readers, sheet_import, writers
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    ERRORS_ROW_COLUMN,
    ERRORS_TEXT_COLUMN,
    EXPORT_PAGE_ROWS,
    IMPORT_BATCH_ROWS,
    MAX_FORM_FIELD_BYTES,
    MAX_REPORT_ERRORS,
    MULTIPART_OVERHEAD_BYTES,
    ORPHAN_FILE_GRACE_HOURS,
    SAMPLE_ID_COLUMN,
    STATUS_COLUMN,
    TEMPLATE_DESCRIPTION_MARKER,
    UPLOAD_FIELD_DRY_RUN,
    UPLOAD_FIELD_FILE,
    UPLOAD_FIELD_MODE,
    ImportMode,
    ReportCode,
    SampleFileStatus,
)
from src.sampleFileUpload.exceptions import (
    MalformedUpload,
    SampleFileNotDeletable,
    SampleFileRejected,
    UnreadableFile,
    UnsupportedFileType,
    UploadTooLarge,
)
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.sheet_import import CellError, CheckedRow, ColumnPlan
from src.sampleFileUpload.storage import Storage
from src.sampleFileUpload.utils import clean_filename
from src.schemas import PageParams
from src.study import service as study_service
from src.study.constants import ROLE_RANK, ActivityAction, SampleStatus, StudyRole
from src.study.exceptions import StudyNotFound, StudyRoleRequired
from src.study.models import Sample, Study, StudyMember
from src.study.sample_validation import SampleField, SampleValidator
from src.study.service import StudyAccess

_SAMPLES = Sample.__table__
_BOOLEAN = TypeAdapter(bool)


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    filename: str
    size_bytes: int
    sha256: str
    mode: ImportMode
    dry_run: bool


@dataclass(slots=True)
class ImportOutcome:
    """What an upload came to: a stored record (new, or the earlier one for a duplicate) or a dry run."""

    report: dict[str, Any]
    upload: ReceivedUpload
    format: str
    encoding: str | None
    record: SampleFile | None = None
    duplicate_of: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class FileAccess:
    """A sample file with the caller's access to its study, loaded together."""

    file: SampleFile
    access: StudyAccess


# ---------------------------------------------------------------------------------------------
# Receiving: multipart streamed to a file, hashed and counted, refused past the limit as it comes


class _MultipartReceiver:
    """python-multipart callbacks: the `file` part's bytes collected per chunk, small fields kept."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.file_parts = 0
        self.file_bytes = 0
        self.pending: list[bytes] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._current: str | None = None  # "file", a field name, or None until a part's headers are read

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def take_pending(self) -> list[bytes]:
        pending, self.pending = self.pending, []
        return pending

    def _part_begin(self) -> None:
        self._disposition = b""
        self._current = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 4096:
            raise MalformedUpload

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == UPLOAD_FIELD_FILE:
            self.file_parts += 1
            if self.file_parts > 1:
                raise MalformedUpload("Send exactly one `file` part.")
            filename = options.get(b"filename", b"")
            if b"\x00" in filename:  # no file system has such a name: refused, not cleaned
                raise MalformedUpload("The file name must not contain a NUL character.")
            self.filename = filename.decode("utf-8", "replace")
            self._current = UPLOAD_FIELD_FILE
        elif name in (UPLOAD_FIELD_MODE, UPLOAD_FIELD_DRY_RUN):
            if name in self.fields:  # `dry_run` true then false: which one the client meant is unknown
                raise MalformedUpload(f"Send `{name}` at most once.")
            self._current = name
            self.fields[name] = bytearray()
        else:
            # A misspelt `dry_run` must not import the file for real.
            raise MalformedUpload(f"Unknown part `{name[:40]}`: send only `file`, `mode` and `dry_run`.")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == UPLOAD_FIELD_FILE:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise UploadTooLarge
            self.pending.append(data[start:end])
        elif self._current is not None:
            value = self.fields[self._current]
            value += data[start:end]
            if len(value) > MAX_FORM_FIELD_BYTES:
                raise MalformedUpload(f"`{self._current}` is too long.")


def _boundary_of(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise MalformedUpload
    return boundary


def _append(sink: BinaryIO, hasher: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)
        sink.write(piece)


async def receive_upload(
    stream: AsyncIterator[bytes], *, content_type: str | None, into: Path, max_bytes: int
) -> ReceivedUpload:
    """The multipart body streamed into `into`; UploadTooLarge as soon as the file passes max_bytes."""
    receiver = _MultipartReceiver(max_bytes)
    parser = MultipartParser(_boundary_of(content_type), receiver.callbacks())
    hasher = hashlib.sha256()
    body_bytes = 0
    with into.open("wb") as sink:
        try:
            async for chunk in stream:
                body_bytes += len(chunk)
                if body_bytes > max_bytes + MULTIPART_OVERHEAD_BYTES:
                    raise UploadTooLarge
                parser.write(chunk)
                pending = receiver.take_pending()
                if pending:
                    await anyio.to_thread.run_sync(_append, sink, hasher, pending)
            parser.finalize()
        except FormParserError:
            raise MalformedUpload from None
    if receiver.file_parts != 1:
        raise ValidationFailed(errors=[{"loc": ["body", "file"], "msg": "Field required", "code": "missing"}])
    return ReceivedUpload(
        filename=clean_filename(receiver.filename),
        size_bytes=receiver.file_bytes,
        sha256=hasher.hexdigest(),
        mode=_mode_of(receiver.fields.get(UPLOAD_FIELD_MODE)),
        dry_run=_dry_run_of(receiver.fields.get(UPLOAD_FIELD_DRY_RUN)),
    )


def _mode_of(raw: bytearray | None) -> ImportMode:
    text = raw.decode("utf-8", "replace").strip() if raw is not None else ImportMode.INSERT
    try:
        return ImportMode(text)
    except ValueError:
        raise ValidationFailed(
            errors=[{"loc": ["body", "mode"], "msg": "must be insert or upsert", "code": "enum"}]
        ) from None


def _dry_run_of(raw: bytearray | None) -> bool:
    if raw is None:
        return False
    try:
        return _BOOLEAN.validate_python(raw.decode("utf-8", "replace").strip())
    except ValidationError:
        raise ValidationFailed(
            errors=[{"loc": ["body", "dry_run"], "msg": "must be true or false", "code": "bool_parsing"}]
        ) from None


# ---------------------------------------------------------------------------------------------
# Reading: the sheet in a worker thread, a batch at a time


class _SheetBatches:
    """The sheet opened and checked in worker threads; every method here blocks (call it off the loop)."""

    def __init__(self, path: Path, *, filename: str, validator: SampleValidator, mode: ImportMode) -> None:
        self._path = path
        self._filename = filename
        self._validator = validator
        self._mode = mode
        self._stack = contextlib.ExitStack()
        self._batches: Iterator[list[CheckedRow]] = iter(())
        self.format = ""
        self.encoding: str | None = None
        self.plan = ColumnPlan(columns=[], errors=[])

    def open(self) -> None:
        sheet = self._stack.enter_context(
            readers.open_sheet(
                self._path,
                filename=self._filename,
                max_rows=upload_settings.MAX_UPLOAD_ROWS,
                max_columns=upload_settings.MAX_UPLOAD_COLUMNS,
            )
        )
        self.format, self.encoding = sheet.format, sheet.encoding
        self.plan = sheet_import.plan_columns(sheet.headers, self._validator, header_row=sheet.header_row)
        checker = sheet_import.RowChecker(
            self.plan, self._validator, mode=self._mode, max_rows=upload_settings.MAX_UPLOAD_ROWS
        )
        self._stack.callback(checker.seen_ids.close)
        self._batches = sheet_import.batches(sheet.rows, checker, size=IMPORT_BATCH_ROWS)

    def next_batch(self) -> list[CheckedRow] | None:
        return next(self._batches, None)

    def close(self) -> None:
        self._stack.close()


async def _in_thread(function: Any, *args: Any) -> Any:
    """Runs a blocking sheet step off the event loop; a sheet that cannot be read is 415 or 422,
    whose `errors` carry the reader's stable code (too_many_columns, invalid_encoding, zip_bomb...)."""
    try:
        return await anyio.to_thread.run_sync(function, *args)
    except readers.SheetError as error:
        problem = UnsupportedFileType if error.unsupported else UnreadableFile
        errors = [{"loc": ["body", "file"], "msg": error.message, "code": error.code}]
        raise problem(error.message, errors=errors) from None


class _ErrorLog:
    """Every error of an import: the first MAX_REPORT_ERRORS kept for the report; all of them in a
    JSON-lines file, one line per rejected row with its cells as read (and one for the header row's
    column errors), from which errors.csv gives the rejected rows back."""

    def __init__(self, sink: BinaryIO | None) -> None:
        self.sink = sink
        self.first: list[dict[str, Any]] = []
        self.total = 0

    def add_column_errors(self, plan: ColumnPlan) -> None:
        if plan.errors:
            self._add(plan.header_row, None, plan.errors)

    def add_row(self, row: CheckedRow) -> None:
        self._add(row.row, row.cells, row.errors)

    def _add(self, row: int, cells: list[object] | None, errors: list[CellError]) -> None:
        self.total += len(errors)
        room = MAX_REPORT_ERRORS - len(self.first)
        if room > 0:
            self.first += [error.as_dict() for error in errors[:room]]
        if self.sink is not None:
            entry = {"row": row, "cells": cells, "errors": [error.as_dict() for error in errors]}
            self.sink.write(_JSON_LINE(entry).encode() + b"\n")


def _stored_cell(value: object) -> str:
    """A cell JSON cannot hold (an XLSX date, a time) as the text a CSV export writes for it."""
    return writers.csv_cell(value) if isinstance(value, dt.date) else str(value)


_JSON_LINE = json.JSONEncoder(ensure_ascii=False, default=_stored_cell).encode


@dataclass(slots=True)
class _Counts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass(slots=True)
class _Pass:
    """One import pass over a sheet: what it writes (if anything), what it counts and logs."""

    session: AsyncSession
    access: StudyAccess
    validator: SampleValidator
    mode: ImportMode
    log: _ErrorLog
    file_id: uuid.UUID | None  # None: check only (a dry run)
    counts: _Counts = field(default_factory=_Counts)

    async def take(self, batch: list[CheckedRow]) -> None:
        self.counts.rows += len(batch)
        existing = await self._existing([row.normalized for row in batch if not row.errors])
        creates: list[CheckedRow] = []
        updates: list[dict[str, Any]] = []
        for row in batch:
            if not row.errors:
                self._sort(row, existing.get(row.normalized), creates, updates)
            if row.errors:
                self.counts.rejected += 1
                self.log.add_row(row)
        self.counts.created += len(creates)
        self.counts.updated += len(updates)
        if self.file_id is not None and not self.log.total:
            await self._write(creates, updates)

    def _sort(
        self, row: CheckedRow, stored: Any, creates: list[CheckedRow], updates: list[dict[str, Any]]
    ) -> None:
        if stored is None:
            if self.mode is ImportMode.UPSERT:
                self._check_complete(row)
            if not row.errors:
                creates.append(row)
            return
        if self.mode is ImportMode.INSERT:
            row.errors.append(
                CellError(
                    row.row,
                    row.sample_id_header,
                    row.sample_id,
                    ReportCode.ALREADY_EXISTS,
                    "the study already has a sample with this sample_id",
                )
            )
            return
        merged = {**stored.values, **row.values}
        status = row.status or stored.status
        if merged == stored.values and status == stored.status:
            self.counts.unchanged += 1
        else:
            updates.append(
                {
                    "pk": stored.id,
                    "new_values": merged,
                    "new_status": status,
                    "old_status": stored.status,
                    "old_values": stored.values,
                }
            )

    def _check_complete(self, row: CheckedRow) -> None:
        """A new sample in upsert mode was checked field by field: it must also have every required one."""
        _, issues = self.validator.validate(row.values, partial=False)
        row.errors += [
            CellError(row.row, row.headers.get(issue.field, issue.field), None, issue.code, issue.message)
            for issue in issues
        ]

    # A study's sample_ids held in memory when it has at most this many samples (~100 bytes each).
    # Why: while an import writes, the planner's statistics still describe the study as it was; into
    # a study that was (nearly) empty, it would look each batch up by scanning every sample the import
    # has written so far (measured: 5 s a batch after 80,000 rows). With the ids in memory, only the
    # rows found there are looked up; a larger study has statistics that lead to its unique index.
    ids_in_memory_up_to = 200_000
    known_ids: set[str] | None = None

    async def load_known_ids(self) -> None:
        if self.access.study.sample_count > self.ids_in_memory_up_to:
            return
        rows = await self.session.stream_scalars(
            select(_SAMPLES.c.sample_id_normalized).where(_SAMPLES.c.study_id == self.access.study.id)
        )
        self.known_ids = {key async for key in rows}

    async def _existing(self, normalized: list[str | None]) -> dict[str, Any]:
        keys = [key for key in normalized if key is not None]
        if self.known_ids is not None:
            keys = [key for key in keys if key in self.known_ids]
        if not keys:
            return {}
        columns = [_SAMPLES.c.sample_id_normalized, _SAMPLES.c.id]
        if self.mode is ImportMode.UPSERT:
            columns += [_SAMPLES.c.status, _SAMPLES.c["values"]]
        rows = await self.session.execute(
            select(*columns).where(
                _SAMPLES.c.study_id == self.access.study.id, _SAMPLES.c.sample_id_normalized.in_(keys)
            )
        )
        return {row.sample_id_normalized: row for row in rows}

    async def _write(self, creates: list[CheckedRow], updates: list[dict[str, Any]]) -> None:
        now = utcnow()
        await study_service.add_to_status_counts(
            self.session, study_id=self.access.study.id, deltas=_status_deltas(creates, updates)
        )
        await study_service.add_to_created_counts(
            self.session, study_id=self.access.study.id, deltas={now.date(): len(creates)}
        )
        await study_service.add_to_field_value_counts(
            self.session,
            study=self.access.study,
            changes=[(None, row.values) for row in creates]
            + [(change["old_values"], change["new_values"]) for change in updates],
        )
        if creates:
            study_id, user_id = self.access.study.id, self.access.user.id
            rows = [
                (
                    sample_pk,
                    study_id,
                    row.sample_id,
                    row.normalized,
                    row.status or SampleStatus.REGISTERED.value,
                    {name: value for name, value in row.values.items() if value is not None},
                    self.file_id,
                    user_id,
                    now,
                    now,
                    1,
                )
                for sample_pk, row in zip(_new_ids(len(creates)), creates, strict=True)
            ]
            await _insert_samples(self.session, rows)
        if updates:
            await self.session.execute(
                update(_SAMPLES)
                .where(_SAMPLES.c.id == bindparam("pk"))
                .values(
                    values=bindparam("new_values"),
                    status=bindparam("new_status"),
                    version=_SAMPLES.c.version + 1,
                    updated_at=now,
                ),
                updates,
            )


def _new_ids(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs from one read of the OS's random source: uuid.uuid4() makes
    one system call each, 13% of an import's CPU when called per row."""
    raw = os.urandom(16 * count)
    return [uuid.UUID(bytes=raw[start : start + 16], version=4) for start in range(0, 16 * count, 16)]


def _status_deltas(creates: list[CheckedRow], updates: list[dict[str, Any]]) -> Counter[str]:
    """How one batch moves the study's per-status sample counts."""
    deltas: Counter[str] = Counter(row.status or SampleStatus.REGISTERED.value for row in creates)
    for change in updates:
        deltas[change["old_status"]] -= 1
        deltas[change["new_status"]] += 1
    return deltas


# The columns of a new sample, in the order of the rows _Pass._write builds.
_INSERT_COLUMNS = (
    "id",
    "study_id",
    "sample_id",
    "sample_id_normalized",
    "status",
    "values",
    "source_file_id",
    "created_by",
    "created_at",
    "updated_at",
    "version",
)
_COPY_SAMPLES = f"COPY samples ({', '.join(_INSERT_COLUMNS)}) FROM STDIN"
_VALUES_AT = _INSERT_COLUMNS.index("values")


# COPY's text format: a backslash and the characters that end a field or a row are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# One encoder for the whole import: json.dumps with options builds a new encoder for every call.
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False).encode


def _copy_text(value: Any) -> str:
    """One field of a COPY text row; None is NULL (`\\N`)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escaped(value)
    return str(value)


def _escaped(text: str) -> str:
    # translate() is slow on str: most texts have nothing to escape, and the `in` tests are C loops.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_batch(rows: list[tuple[Any, ...]]) -> bytes:
    """A whole batch as COPY text in one string, one write: psycopg's write_row per row dispatches
    a dumper per value and was the import's largest cost in Python. Only the texts (sample_ids,
    the JSON values) can hold characters to escape; uuids, timestamps and numbers print plainly.
    A value every row shares (the study, the file, the user, the time) is formatted once."""
    first = rows[0]
    shared = {
        at: _copy_text(value)
        for at, value in enumerate(first)
        if at != _VALUES_AT and all(row[at] is value for row in rows)
    }
    lines = []
    for row in rows:
        fields = [
            shared.get(at) or _copy_text(value) if at != _VALUES_AT else _escaped(_JSON_TEXT(value))
            for at, value in enumerate(row)
        ]
        lines.append("\t".join(fields))
    lines.append("")
    return "\n".join(lines).encode()


async def _insert_samples(session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
    """COPY on PostgreSQL (measured 3x a multi-row INSERT), on the session's own connection and
    transaction, the batch sent as one block of text; a multi-row INSERT elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        named = [dict(zip(_INSERT_COLUMNS, row, strict=True)) for row in rows]
        await session.execute(insert(_SAMPLES), named)
        return
    connection = await session.connection()
    driver_connection = (await connection.get_raw_connection()).driver_connection
    async with driver_connection.cursor() as cursor, cursor.copy(_COPY_SAMPLES) as copy:
        await copy.write(_copy_batch(rows))


async def _run_pass(sheet: _SheetBatches, step: _Pass) -> None:
    """Reads the next batch in a worker thread while this one is looked up and written."""
    step.log.add_column_errors(sheet.plan)
    await step.load_known_ids()
    reading = asyncio.ensure_future(_in_thread(sheet.next_batch))
    try:
        while (batch := await reading) is not None:
            reading = asyncio.ensure_future(_in_thread(sheet.next_batch))
            await step.take(batch)
    finally:
        if not reading.done():
            # The thread cannot be interrupted: let it finish before the sheet is closed, also when
            # the request is being cancelled (shielded: a cancelled scope would interrupt the wait).
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await reading


def _report(sheet: _SheetBatches, counts: _Counts, log: _ErrorLog) -> dict[str, Any]:
    rejected = bool(log.total)
    return {
        "rows": counts.rows,
        "created": 0 if rejected else counts.created,
        "updated": 0 if rejected else counts.updated,
        "unchanged": 0 if rejected else counts.unchanged,
        "rejected": counts.rejected,
        "columns": [{"header": column.header, "field": column.field} for column in sheet.plan.columns],
        "errors": log.first,
        "errors_total": log.total,
        "errors_truncated": log.total > len(log.first),
    }


# ---------------------------------------------------------------------------------------------
# Importing


async def import_sample_file(
    session: AsyncSession,
    *,
    access: StudyAccess,
    stream: AsyncIterator[bytes],
    content_type: str | None,
    storage: Storage,
) -> ImportOutcome:
    """Receive, check and (unless a dry run) import a file; SampleFileRejected when any cell is wrong."""
    await _release_connection(session)
    with storage.temp_file() as upload_path, storage.temp_file() as errors_path:
        upload = await receive_upload(
            stream, content_type=content_type, into=upload_path, max_bytes=upload_settings.max_upload_bytes
        )
        validator = study_service.validator_of(access.study)
        sheet = _SheetBatches(upload_path, filename=upload.filename, validator=validator, mode=upload.mode)
        try:
            await _in_thread(sheet.open)
            async with import_slots():
                if upload.dry_run:
                    return await _dry_run(session, access, sheet, upload, validator)
                return await _import(
                    session, access, sheet, upload, validator, storage, upload_path, errors_path
                )
        finally:
            # Shielded: a cancelled request still closes the sheet and its sample_id table's files.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sheet.close)


async def _release_connection(session: AsyncSession) -> None:
    """Ends the access checks' transaction, which hands its pooled connection back: the body may
    take minutes to arrive, and a worker's pool is small. What they loaded stays usable
    (expire_on_commit=False); the import checks the study and the caller's role again under its lock."""
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


async def _dry_run(
    session: AsyncSession,
    access: StudyAccess,
    sheet: _SheetBatches,
    upload: ReceivedUpload,
    validator: SampleValidator,
) -> ImportOutcome:
    earlier = await _earlier_import(session, access.study.id, upload.sha256)
    if earlier is not None:
        # What the upload itself would answer: nothing to import, the earlier record's report.
        return ImportOutcome(
            report=earlier.report,
            upload=upload,
            format=earlier.format,
            encoding=earlier.encoding,
            duplicate_of=earlier.id,
        )
    log = _ErrorLog(None)
    step = _Pass(session, access, validator, upload.mode, log, file_id=None)
    await _run_pass(sheet, step)
    report = _report(sheet, step.counts, log)
    return ImportOutcome(report=report, upload=upload, format=sheet.format, encoding=sheet.encoding)


async def _lock_study(session: AsyncSession, access: StudyAccess) -> None:
    """Imports into one study run one at a time: the study's row stays locked until the commit
    (a row lock on PostgreSQL; SQLite lets one writer at a time anyway). The fields read under
    the lock must be the ones the file is checked against, and the caller must still be an editor:
    the access checks ran before the body, which may have taken minutes to arrive."""
    fields = await study_service.add_to_sample_count(session, study_id=access.study.id, delta=0)
    if fields != access.study.sample_fields:
        await session.rollback()
        raise PreconditionFailed(
            "The study's sample fields changed while the file was uploading; send it again."
        )
    await _confirm_still_editor(session, access)


async def _confirm_still_editor(session: AsyncSession, access: StudyAccess) -> None:
    member = await study_service.get_member(session, study=access.study, user_id=access.user.id)
    now = study_service.study_access_as(
        study=access.study, user=access.user, role=member.role if member is not None else None
    )
    if now is None or ROLE_RANK[now.role] < ROLE_RANK[StudyRole.EDITOR]:
        await session.rollback()
        raise StudyNotFound if now is None else StudyRoleRequired


async def _roll_back(session: AsyncSession, access: StudyAccess) -> None:
    """Undoes the import's writes and reloads the study and the caller, which a rollback expires."""
    await session.rollback()
    await session.refresh(access.study)
    await session.refresh(access.user)


async def _earlier_import(session: AsyncSession, study_id: uuid.UUID, sha256: str) -> SampleFile | None:
    return await session.scalar(
        select(SampleFile).where(
            SampleFile.study_id == study_id,
            SampleFile.sha256 == sha256,
            SampleFile.status == SampleFileStatus.IMPORTED,
        )
    )


def _new_record(
    access: StudyAccess, upload: ReceivedUpload, sheet: _SheetBatches, status: SampleFileStatus
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


async def _import(
    session: AsyncSession,
    access: StudyAccess,
    sheet: _SheetBatches,
    upload: ReceivedUpload,
    validator: SampleValidator,
    storage: Storage,
    upload_path: Path,
    errors_path: Path,
) -> ImportOutcome:
    await _lock_study(session, access)
    earlier = await _earlier_import(session, access.study.id, upload.sha256)
    if earlier is not None:
        await session.commit()  # only the lock was taken; a rollback would expire what the answer reads
        return ImportOutcome(
            report=earlier.report,
            upload=upload,
            format=earlier.format,
            encoding=earlier.encoding,
            record=earlier,
            duplicate_of=earlier.id,
        )
    record = _new_record(access, upload, sheet, SampleFileStatus.IMPORTED)
    session.add(record)
    await session.flush()  # the samples point at it
    with errors_path.open("wb") as errors_sink:
        log = _ErrorLog(errors_sink)
        step = _Pass(session, access, validator, upload.mode, log, file_id=record.id)
        await _run_pass(sheet, step)
    report = _report(sheet, step.counts, log)
    if log.total:
        await _roll_back(session, access)
        rejected = await _store_rejected(
            session, access, sheet, upload, report, storage, upload_path, errors_path
        )
        raise SampleFileRejected(sample_file_id=str(rejected.id), report=report)
    await _commit_imported(session, access, record, report, step.counts, storage, upload_path)
    return ImportOutcome(
        report=report, upload=upload, format=sheet.format, encoding=sheet.encoding, record=record
    )


async def _commit_imported(
    session: AsyncSession,
    access: StudyAccess,
    record: SampleFile,
    report: dict[str, Any],
    counts: _Counts,
    storage: Storage,
    upload_path: Path,
) -> None:
    await study_service.add_to_sample_count(session, study_id=access.study.id, delta=counts.created)
    record.report = report
    study_service.record_activity(
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
    record.storage_key = await anyio.to_thread.run_sync(storage.save, upload_path)
    try:
        await session.commit()
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled request too must not leave the file
            await session.rollback()
            await anyio.to_thread.run_sync(storage.delete, record.storage_key)
        raise


async def _store_rejected(
    session: AsyncSession,
    access: StudyAccess,
    sheet: _SheetBatches,
    upload: ReceivedUpload,
    report: dict[str, Any],
    storage: Storage,
    upload_path: Path,
    errors_path: Path,
) -> SampleFile:
    """Keeps the file, its report and every error, so the user can fetch them later."""
    record = _new_record(access, upload, sheet, SampleFileStatus.REJECTED)
    record.report = report
    session.add(record)
    study_service.record_activity(
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
    try:
        # Inside the try: when the second file cannot be stored (a full disk), the first goes too.
        record.storage_key = await anyio.to_thread.run_sync(storage.save, upload_path)
        record.errors_key = await anyio.to_thread.run_sync(storage.save, errors_path)
        await session.commit()
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled request too must not leave the files
            await session.rollback()
            for key in (record.storage_key, record.errors_key):
                if key:
                    await anyio.to_thread.run_sync(storage.delete, key)
        raise
    return record


# ---------------------------------------------------------------------------------------------
# Records


async def list_sample_files(
    session: AsyncSession, *, study: Study, page: PageParams
) -> tuple[list[SampleFile], int, bool]:
    query = select(SampleFile).where(SampleFile.study_id == study.id)
    total, total_is_exact = await count_up_to(session, query)
    rows = await session.scalars(
        query.order_by(SampleFile.created_at.desc(), SampleFile.id.desc())
        .offset(page.offset)
        .limit(page.page_size)
    )
    return list(rows), total, total_is_exact


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
    """Rejected files, or imported ones none of whose samples are left; the stored files go too."""
    record = file_access.file
    if record.status == SampleFileStatus.IMPORTED:
        still_there = await session.scalar(select(exists().where(Sample.source_file_id == record.id)))
        if still_there:
            raise SampleFileNotDeletable
    await session.execute(delete(SampleFile).where(SampleFile.id == record.id))
    study_service.record_activity(
        session,
        study_id=record.study_id,
        actor=file_access.access.user,
        action=ActivityAction.SAMPLE_FILE_DELETED,
        details={"sample_file_id": str(record.id), "filename": record.filename, "status": record.status},
    )
    await session.commit()
    for key in (record.storage_key, record.errors_key):
        if key:
            await anyio.to_thread.run_sync(storage.delete, key)


# ---------------------------------------------------------------------------------------------
# Files out: the original, the errors, the template, the export


def stored_chunks(storage: Storage, key: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """A stored file in chunks (a sync iterator: Starlette runs it in a worker thread)."""
    with storage.open(key) as stored:
        while chunk := stored.read(chunk_size):
            yield chunk


def _error_rows(storage: Storage, record: SampleFile) -> Iterator[list[object]]:
    """The rejected rows as they were in the file, behind their row number and errors; read from
    the stored error lines one at a time. Column errors are on the header row."""
    headers = [column["header"] for column in record.report.get("columns", [])]
    yield [ERRORS_ROW_COLUMN, ERRORS_TEXT_COLUMN, *headers]
    if record.errors_key is None:
        return
    with storage.open(record.errors_key) as stored:
        for line in stored:
            entry = json.loads(line)
            # A line stored before rejected rows kept their cells is one error without them.
            errors = entry.get("errors", [entry])
            yield [entry["row"], "; ".join(map(_error_text, errors)), *(entry.get("cells") or ())]


def _error_text(error: dict[str, Any]) -> str:
    """`volume [mL]: must be at least 0 (below_min)`: the column, what is wrong, the stable code."""
    where = f"{error['column']}: " if error["column"] else ""
    return f"{where}{error['message']} ({error['code']})"


def errors_csv(storage: Storage, record: SampleFile) -> Iterator[bytes]:
    return writers.csv_chunks(_error_rows(storage, record))


def header_of(definition: SampleField) -> str:
    return f"{definition.name} [{definition.unit}]" if definition.unit else definition.name


def headers_of(validator: SampleValidator) -> list[str]:
    return [SAMPLE_ID_COLUMN, STATUS_COLUMN, *(header_of(definition) for definition in validator.fields)]


def describe_field(definition: SampleField) -> str:
    """One line a researcher reads in the template: type, whether required, constraints, description."""
    parts = [str(definition.type), "required" if definition.required else "optional"]
    if definition.min is not None:
        parts.append(f"min {definition.min}")
    if definition.max is not None:
        parts.append(f"max {definition.max}")
    if definition.max_length is not None:
        parts.append(f"at most {definition.max_length} characters")
    if definition.pattern is not None:
        parts.append(f"pattern {definition.pattern}")
    if definition.choices is not None:
        parts.append("one of: " + ", ".join(definition.choices))
    if definition.unit:
        parts.append(f"in {definition.unit}")
    if definition.description:
        parts.append(definition.description)
    return "; ".join(parts)


_SAMPLE_ID_DESCRIPTION = "text, required; unique in the study (compared trimmed and case-insensitively)"
_STATUS_DESCRIPTION = "optional; one of: " + ", ".join(SampleStatus) + " (registered when left empty)"


def template_rows(validator: SampleValidator, *, with_description_row: bool) -> list[list[object]]:
    headers = headers_of(validator)
    if not with_description_row:
        return [headers]
    descriptions = [TEMPLATE_DESCRIPTION_MARKER, _STATUS_DESCRIPTION, *map(describe_field, validator.fields)]
    return [headers, descriptions]


def template_csv(validator: SampleValidator) -> Iterator[bytes]:
    return writers.csv_chunks(template_rows(validator, with_description_row=True))


def field_rows(validator: SampleValidator) -> list[list[object]]:
    """The template's second sheet: one row per column."""
    return [
        ["column", "description"],
        [SAMPLE_ID_COLUMN, _SAMPLE_ID_DESCRIPTION],
        [STATUS_COLUMN, _STATUS_DESCRIPTION],
        *([header_of(definition), describe_field(definition)] for definition in validator.fields),
    ]


async def _export_page(study_id: uuid.UUID, after: str | None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One page of a study's samples in sample_id order, read in a short session of its own."""
    query = select(Sample.sample_id_normalized, Sample.sample_id, Sample.status, Sample.values).where(
        Sample.study_id == study_id
    )
    if after is not None:
        query = query.where(Sample.sample_id_normalized > after)
    async with SessionFactory() as session:
        rows = await session.execute(query.order_by(Sample.sample_id_normalized).limit(EXPORT_PAGE_ROWS))
        return [tuple(row) for row in rows]


def export_rows(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[list[object]]:
    """Header then every sample, a page at a time. Runs in a worker thread: each page is read on the
    event loop (anyio.from_thread), so a million samples never sit in memory at once."""
    names = validator.field_names
    yield headers_of(validator)
    after: str | None = None
    while True:
        page = anyio.from_thread.run(_export_page, study_id, after)
        for _normalized, sample_id, status, values in page:
            yield [sample_id, status, *(values.get(name) for name in names)]
        if len(page) < EXPORT_PAGE_ROWS:
            return
        after = page[-1][0]


def export_csv(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[bytes]:
    return writers.csv_chunks(export_rows(study_id, validator))


def export_xlsx(study_id: uuid.UUID, validator: SampleValidator) -> Path:
    """Blocking: call it in a worker thread. The caller deletes the file."""
    return writers.xlsx_file(export_rows(study_id, validator), sheet_name="samples")


def template_xlsx(validator: SampleValidator) -> Path:
    return writers.xlsx_file(
        template_rows(validator, with_description_row=False),
        sheet_name="samples",
        extra_sheets={"fields": field_rows(validator)},
    )


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
