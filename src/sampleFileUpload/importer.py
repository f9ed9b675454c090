"""An import, step by step: the sheet read in a worker thread a batch at a time, each batch checked,
looked up in the study and written, the errors logged, the report made.

How an import keeps memory flat: the upload is on disk (receiving.py); the sheet is read row by
row in a worker thread, a batch of IMPORT_BATCH_ROWS rows at a time, the next batch read while this
one is written; each batch is checked (one compiled schema per file), looked up in the study (one
`IN (...)` query, or a small study's ids held in memory) and written with COPY on PostgreSQL (one
multi-row INSERT elsewhere), all in one transaction. The study's counters move once, at the commit
(study_counters.CountChanges), so the import holds no row that sample edits need while it writes.

One pass, not two: rows are written while no error has been seen; after the first error the pass
goes on checking (so the report is complete) but writes nothing more, and the transaction is
rolled back at the end. A clean file, the common case, is read once; a file whose slash dates
(03/04/2025) come before the value that says their column's order is read again, once, from its
start to the row that settles its date columns (cell_dialect.DateOrders), against the same deadline
and keeping no rows. What grows with the file is the table of sample_ids seen (for
`duplicate_in_file`), which is on disk (sheet_import.SeenIds), and the error file on disk (bounded:
ErrorLog); the report keeps the first MAX_REPORT_ERRORS.
"""

import asyncio
import contextlib
import datetime as dt
import json
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from pydantic_core import to_json
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from src.database import utcnow
from src.exceptions import shortened
from src.sampleFileUpload import readers, sheet_import, writers
from src.sampleFileUpload.cell_dialect import FileCells, ReadingOptions
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    IMPORT_BATCH_ROWS,
    MAX_REPORT_ERRORS,
    MAX_REPORT_TEXT,
    ImportMode,
    ReportCode,
)
from src.sampleFileUpload.exceptions import ImportTimedOut, UnreadableFile, UnsupportedFileType
from src.sampleFileUpload.reading_errors import TimeLimitReached, check_deadline
from src.sampleFileUpload.sheet_import import CellError, CheckedRow, ColumnPlan
from src.study.constants import SampleStatus
from src.study.counters import CountChanges
from src.study.models import Sample
from src.study.sample_validation import SampleValidator
from src.study.service import StudyAccess

_SAMPLES = Sample.__table__


class SheetBatches:
    """The sheet opened and checked in worker threads; every method here blocks (call it off the loop)."""

    def __init__(
        self,
        path: Path,
        *,
        filename: str,
        validator: SampleValidator,
        mode: ImportMode,
        deadline: float,
        options: ReadingOptions | None = None,
    ) -> None:
        self._path = path
        self.deadline = deadline  # time.monotonic() past which reading stops (IMPORT_MAX_SECONDS)
        self._filename = filename
        self._validator = validator
        self._mode = mode
        self._options = options if options is not None else ReadingOptions()
        self._stack = contextlib.ExitStack()
        self._batches: Iterator[list[CheckedRow]] = iter(())
        self.format = ""
        self.encoding: str | None = None
        self.plan = ColumnPlan(columns=[], errors=[])
        self.cells: FileCells | None = None  # once open
        self.data_rows_claimed: Callable[[], int | None] = lambda: None  # once open (readers.Sheet)

    def open(self) -> None:
        sheet = self._stack.enter_context(self._open_sheet())
        self.format, self.encoding = sheet.format, sheet.encoding
        self.data_rows_claimed = sheet.data_rows_claimed
        self.plan = sheet_import.plan_columns(sheet.headers, self._validator, header_row=sheet.header_row)
        self.cells = FileCells(self._options, delimiter=sheet.delimiter, rows_again=self._rows_again)
        checker = sheet_import.RowChecker(
            self.plan,
            self._validator,
            mode=self._mode,
            max_rows=upload_settings.MAX_UPLOAD_ROWS,
            cells=self.cells,
        )
        self._stack.callback(checker.seen_ids.close)
        self._batches = sheet_import.batches(sheet.rows, checker, size=IMPORT_BATCH_ROWS)

    def _open_sheet(self) -> contextlib.AbstractContextManager[readers.Sheet]:
        return readers.open_sheet(
            self._path,
            filename=self._filename,
            max_rows=upload_settings.MAX_UPLOAD_ROWS,
            max_columns=upload_settings.MAX_UPLOAD_COLUMNS,
            deadline=self.deadline,
        )

    @contextlib.contextmanager
    def _rows_again(self) -> Iterator[Iterator[tuple[int, list[object]]]]:
        """The file's rows read again from the start, for the date columns' look-ahead (cell_dialect.
        DateOrders): bounded as the first reading is, by the same deadline."""
        with self._open_sheet() as sheet:
            yield sheet.rows

    def next_batch(self) -> list[CheckedRow] | None:
        return next(self._batches, None)

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def reading_refusals_as_problems() -> Iterator[None]:
    """A sheet that cannot be read is 415 or 422, whose `errors` carry the reader's stable code
    (too_many_columns, invalid_encoding, zip_bomb...); a deadline met is 422 IMPORT_TIMED_OUT."""
    try:
        yield
    except readers.SheetError as error:
        problem = UnsupportedFileType if error.unsupported else UnreadableFile
        errors = [{"loc": ["body", "file"], "msg": error.message, "code": error.code}]
        raise problem(error.message, errors=errors) from None
    except TimeLimitReached:
        raise ImportTimedOut from None


async def read_in_thread(function: Any, *args: Any) -> Any:
    """Runs a blocking sheet step off the event loop (see reading_refusals_as_problems)."""
    with reading_refusals_as_problems():
        return await anyio.to_thread.run_sync(function, *args)


class ErrorLog:
    """Every error of an import: the first MAX_REPORT_ERRORS kept for the report, each text in them
    cut to MAX_REPORT_TEXT; and in a JSON-lines file, one line per rejected row with its cells as
    read (and one for the header row's column errors), from which errors.csv gives the rejected rows
    back. That file stops at `max_bytes` (a small multiple of the upload): a file whose every cell is
    wrong would otherwise store some fifty times its size; `file_truncated` then says so."""

    def __init__(self, sink: BinaryIO | None, *, max_bytes: int = 0) -> None:
        self.sink = sink
        self.max_bytes = max_bytes
        self.written = 0
        self.file_truncated = False
        self.first: list[dict[str, Any]] = []
        self.total = 0
        # Of the total, the errors of whole columns (on the header row), counted apart from the rows'.
        self.column_errors = 0
        self.codes: Counter[str] = Counter()

    def add_column_errors(self, errors: list[CellError], *, header_row: int) -> None:
        """Errors of columns: those of the header, and those found later (an ambiguous date column,
        values with no header), each on a line of its own with no cells."""
        if errors:
            self.column_errors += len(errors)
            self._add(header_row, None, errors)

    def add_row(self, row: CheckedRow) -> None:
        self._add(row.row, row.cells, row.errors)

    def _add(self, row: int, cells: list[object] | None, errors: list[CellError]) -> None:
        self.total += len(errors)
        self.codes.update(error.code for error in errors)
        room = MAX_REPORT_ERRORS - len(self.first)
        if room > 0:
            self.first += [_reported(error.as_dict()) for error in errors[:room]]
        if self.sink is None or self.file_truncated:
            return
        entry = {"row": row, "cells": cells, "errors": [error.as_dict() for error in errors]}
        line = _JSON_LINE(entry).encode() + b"\n"
        if self.written + len(line) > self.max_bytes:
            self.file_truncated = True
            return
        self.sink.write(line)
        self.written += len(line)


def _reported(error: dict[str, Any]) -> dict[str, Any]:
    """An error as the report stores it: the cell's value and the column's header cut short."""
    column, value = error["column"], error["value"]
    return {
        **error,
        "column": shortened(column, MAX_REPORT_TEXT) if column is not None else None,
        "value": shortened(value, MAX_REPORT_TEXT) if isinstance(value, str) else value,
    }


def _stored_cell(value: object) -> str:
    """A cell JSON cannot hold (an XLSX date, a time) as the text a CSV export writes for it."""
    return writers.csv_cell(value) if isinstance(value, dt.date) else str(value)


_JSON_LINE = json.JSONEncoder(ensure_ascii=False, default=_stored_cell).encode


@dataclass(slots=True)
class ImportCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass(slots=True)
class ImportPass:
    """One import pass over a sheet: what it writes (if anything), what it counts and logs."""

    session: AsyncSession
    access: StudyAccess
    validator: SampleValidator
    mode: ImportMode
    log: ErrorLog
    file_id: uuid.UUID | None  # None: check only (a dry run)
    counts: ImportCounts = field(default_factory=ImportCounts)
    # The study's counts as the writes so far move them: applied once, at the commit.
    count_changes: CountChanges = field(default_factory=CountChanges)

    async def take(self, batch: list[CheckedRow]) -> None:
        self.counts.rows += len(batch)
        existing = await self._existing([row.normalized for row in batch if not row.errors])
        creates: list[CheckedRow] = []
        updates: list[dict[str, Any]] = []
        for row in batch:
            if row.column_errors:
                self.log.add_column_errors(row.column_errors, header_row=row.column_errors[0].row)
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
        query = select(*columns).where(
            _SAMPLES.c.study_id == self.access.study.id, _SAMPLES.c.sample_id_normalized.in_(keys)
        )
        if self.mode is ImportMode.UPSERT:
            query = query.add_columns(_SAMPLES.c.status, _SAMPLES.c["values"])
            if self.file_id is not None:
                # Edits of the study's samples run beside an import: the rows it will update are
                # locked as read, so an edit committed in between is neither lost nor miscounted.
                query = query.with_for_update()
        rows = await self.session.execute(query)
        return {row.sample_id_normalized: row for row in rows}

    async def _write(self, creates: list[CheckedRow], updates: list[dict[str, Any]]) -> None:
        now = utcnow()
        totals = self.count_changes
        totals.samples += len(creates)
        totals.statuses.update(_status_deltas(creates, updates))
        totals.created[now.date()] += len(creates)
        totals.add_values_changes(
            self.access.study,
            [(None, row.values) for row in creates]
            + [(change["old_values"], change["new_values"]) for change in updates],
        )
        if creates:
            shared = _Shared(self.access.study.id, self.file_id, self.access.user.id, now)
            await _insert_samples(self.session, creates, shared)
        if updates:
            await self.session.execute(
                update(_SAMPLES)
                .where(_SAMPLES.c.id == bindparam("pk"))
                .values(
                    values=bindparam("new_values"),
                    status=bindparam("new_status"),
                    version=_SAMPLES.c.version + 1,
                    updated_at=now,
                    updated_by_file_id=self.file_id,  # the sample's log shows this file's import
                ),
                updates,
            )


def _new_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, from one read of the OS's random source: uuid.uuid4()
    makes one system call each (13% of an import's CPU when called per row), and a uuid.UUID object
    a row cost ~2 us more to make and print than the text COPY takes."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(byte & 0x0F | 0x40 for byte in raw[6::16])  # the version, 4
    raw[8::16] = bytes(byte & 0x3F | 0x80 for byte in raw[8::16])  # the variant, RFC 4122
    hexed = raw.hex()
    return [
        f"{hexed[at : at + 8]}-{hexed[at + 8 : at + 12]}-{hexed[at + 12 : at + 16]}-"
        f"{hexed[at + 16 : at + 20]}-{hexed[at + 20 : at + 32]}"
        for at in range(0, 32 * count, 32)
    ]


def _status_deltas(creates: list[CheckedRow], updates: list[dict[str, Any]]) -> Counter[str]:
    """How one batch moves the study's per-status sample counts."""
    deltas: Counter[str] = Counter(row.status or SampleStatus.REGISTERED.value for row in creates)
    for change in updates:
        deltas[change["old_status"]] -= 1
        deltas[change["new_status"]] += 1
    return deltas


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every sample one batch creates shares: its study, the file, the importing user, the time."""

    study_id: uuid.UUID
    file_id: uuid.UUID
    user_id: uuid.UUID
    now: dt.datetime


def _stored_values(row: CheckedRow) -> dict[str, Any]:
    """A new sample's values as stored: the fields it has a value for."""
    return {name: value for name, value in row.values.items() if value is not None}


# The columns of a new sample, in the order of the lines _copy_batch writes.
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


# COPY's text format: a backslash and the characters that end a field or a row are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escaped(text: str) -> str:
    # translate() is slow on str: most texts have nothing to escape, and the `in` tests are C loops.
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_batch(creates: list[CheckedRow], shared: _Shared) -> bytes:
    """A whole batch as COPY text in one string, one write (psycopg's write_row per row dispatches a
    dumper per value, and was the import's largest cost in Python). One f-string a row: what every
    row shares (study, file, user, time, version 1) is printed once; only the sample_ids and the
    JSON values can hold characters to escape; the status is one of SampleStatus's plain words.
    The values' JSON is pydantic-core's (compact, ~4x json's encoder here; PostgreSQL stores the
    same jsonb from either)."""
    study = f"\t{shared.study_id}\t"
    tail = f"\t{shared.file_id}\t{shared.user_id}\t{shared.now}\t{shared.now}\t1\n"
    registered = SampleStatus.REGISTERED.value
    return "".join(
        [
            f"{sample_pk}{study}{_escaped(row.sample_id)}\t{_escaped(row.normalized)}\t"
            f"{row.status or registered}\t{_escaped(to_json(_stored_values(row)).decode())}{tail}"
            for sample_pk, row in zip(_new_ids(len(creates)), creates, strict=True)
        ]
    ).encode()


async def _insert_samples(session: AsyncSession, creates: list[CheckedRow], shared: _Shared) -> None:
    """COPY on PostgreSQL (measured 3x a multi-row INSERT), on the session's own connection and
    transaction, the batch sent as one block of text, made in a worker thread (~15 ms of CPU for
    2,000 rows, which the event loop's other requests need not wait for); a multi-row INSERT elsewhere."""
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(insert(_SAMPLES), _inserted_rows(creates, shared))
        return
    text = await anyio.to_thread.run_sync(_copy_batch, creates, shared)
    connection = await session.connection()
    driver_connection = (await connection.get_raw_connection()).driver_connection
    async with driver_connection.cursor() as cursor, cursor.copy(_COPY_SAMPLES) as copy:
        await copy.write(text)


def _inserted_rows(creates: list[CheckedRow], shared: _Shared) -> list[dict[str, Any]]:
    """The batch as the multi-row INSERT's parameters (the same columns and values as _copy_batch's)."""
    return [
        {
            "id": uuid.UUID(sample_pk),
            "study_id": shared.study_id,
            "sample_id": row.sample_id,
            "sample_id_normalized": row.normalized,
            "status": row.status or SampleStatus.REGISTERED.value,
            "values": _stored_values(row),
            "source_file_id": shared.file_id,
            "created_by": shared.user_id,
            "created_at": shared.now,
            "updated_at": shared.now,
            "version": 1,
        }
        for sample_pk, row in zip(_new_ids(len(creates)), creates, strict=True)
    ]


async def run_pass(
    sheet: SheetBatches, step: ImportPass, *, progress: Callable[[int], Awaitable[None]] | None = None
) -> None:
    """Reads the next batch in a worker thread while this one is looked up and written; stops with
    ImportTimedOut at the sheet's deadline (the reading thread checks it between rows too).
    `progress` is told the rows read after each batch (and may stop the pass by raising)."""
    step.log.add_column_errors(sheet.plan.errors, header_row=sheet.plan.header_row)
    await step.load_known_ids()
    reading = asyncio.ensure_future(read_in_thread(sheet.next_batch))
    try:
        while (batch := await reading) is not None:
            with reading_refusals_as_problems():
                check_deadline(sheet.deadline)
            reading = asyncio.ensure_future(read_in_thread(sheet.next_batch))
            await step.take(batch)
            if progress is not None:
                await progress(step.counts.rows)
    finally:
        if not reading.done():
            # The thread cannot be interrupted: let it finish before the sheet is closed, also when
            # the request is being cancelled (shielded: a cancelled scope would interrupt the wait).
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await reading


def report_of(sheet: SheetBatches, counts: ImportCounts, log: ErrorLog) -> dict[str, Any]:
    rejected = bool(log.total)
    return {
        "rows": counts.rows,
        "created": 0 if rejected else counts.created,
        "updated": 0 if rejected else counts.updated,
        "unchanged": 0 if rejected else counts.unchanged,
        "rejected": counts.rejected,
        "columns": [
            {"header": shortened(column.header, MAX_REPORT_TEXT), "field": column.field}
            for column in sheet.plan.columns
        ],
        "errors": log.first,
        "errors_total": log.total,
        "column_errors": log.column_errors,
        "errors_truncated": log.total > len(log.first),
        "errors_file_truncated": log.file_truncated,
        "dialect": sheet.cells.dialect() if sheet.cells is not None else None,
    }
