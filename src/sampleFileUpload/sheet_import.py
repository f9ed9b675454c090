"""From a sheet's headers and rows to checked samples: CPU work, no database.

The service runs this in a worker thread, one batch of rows at a time, with one validator
compiled per file (the study module's `SampleValidator`); the cells are first read in the file's
dialect (cell_dialect.py: dates, numbers, booleans, choices and missing values as spreadsheets write
them). The one file touched is the anonymous temporary files in which `SeenIds` keeps the file's
sample_ids out of memory (and a date column's look-ahead reads the upload again, cell_dialect.py).
"""

import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from src.sampleFileUpload import readers
from src.sampleFileUpload.cell_dialect import (
    REFUSED,
    CellRefused,
    ColumnProblem,
    ColumnReader,
    FileCells,
)
from src.sampleFileUpload.constants import (
    ERRORS_ROW_COLUMN,
    ERRORS_TEXT_COLUMN,
    SAMPLE_ID_COLUMN,
    STATUS_COLUMN,
    TEMPLATE_DESCRIPTION_MARKER,
    ImportMode,
    ReportCode,
)
from src.sampleFileUpload.exports import header_of
from src.schemas import has_control_characters
from src.study.constants import SAMPLE_ID_MAX_LENGTH, SampleStatus
from src.study.sample_validation import SampleValidator, normalize_sample_id

_STATUSES = frozenset(SampleStatus)
_BUILT_IN = {SAMPLE_ID_COLUMN: SAMPLE_ID_COLUMN, STATUS_COLUMN: STATUS_COLUMN}
_ERRORS_CSV_COLUMNS = frozenset({ERRORS_ROW_COLUMN, ERRORS_TEXT_COLUMN})
# Rows whose cells are read column by column at once: few enough that their cells stay in the CPU's
# cache between reading a column and checking the rows (measured: 2,000 at once checked 20% slower).
CHECK_SLICE_ROWS = 256


@dataclass(frozen=True, slots=True)
class CellError:
    row: int
    column: str | None
    value: Any
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        if value is not None and not isinstance(value, str | int | float | bool):
            value = str(value)
        return {
            "row": self.row,
            "column": self.column,
            "value": value,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Column:
    index: int
    header: str
    # A field name of the study, "sample_id", "status", or None for a column that maps to nothing.
    field: str | None


@dataclass(slots=True)
class ColumnPlan:
    columns: list[Column]
    errors: list[CellError]
    # True when a required column is missing: rows are then checked only for the columns given.
    incomplete: bool = False
    # Where the header is in the file: its errors are reported on that row.
    header_row: int = 1

    def mapped(self) -> list[Column]:
        return [column for column in self.columns if column.field is not None]


@dataclass(slots=True)
class CheckedRow:
    row: int
    sample_id: str | None
    normalized: str | None
    status: str | None
    values: dict[str, Any]
    errors: list[CellError] = field(default_factory=list)
    # The header of each field, so a later error (already_exists) can name its column.
    sample_id_header: str = SAMPLE_ID_COLUMN
    # The row's cells as read: a rejected row is stored with them, to be given back in errors.csv.
    cells: list[object] = field(default_factory=list)
    # Each field's header as in the file (one dict for the whole file), for errors found later.
    headers: dict[str, str] = field(default_factory=dict)
    # Errors of whole columns that reading this row found (on the header row): not the row's own.
    column_errors: list[CellError] | tuple[()] = ()


def plan_columns(headers: list[str], validator: SampleValidator, *, header_row: int = 1) -> ColumnPlan:
    """Each header matched to a field (trimmed, case-folded, `name [unit]` with the field's unit).

    Unknown, duplicated and missing columns are reported once each, on the header row (row 1
    unless blank lines come before it).
    """
    units = {definition.name: definition.unit for definition in validator.fields}
    columns: list[Column] = []
    errors: list[CellError] = []
    seen: dict[str, str] = {}
    for index, header in enumerate(headers):
        if header.casefold() in _ERRORS_CSV_COLUMNS:
            columns.append(Column(index=index, header=header, field=None))
            continue
        name, unit = readers.parse_header(header)
        target = _BUILT_IN.get(normalize_sample_id(name)) or validator.field_named(name)
        problem = _header_problem(header_row, header, target, unit, units, seen)
        if problem is not None:
            errors.append(problem)
            target = None
        elif target is not None:
            seen[target] = header
        columns.append(Column(index=index, header=header, field=target))
    # Named as the template writes the header (`age [years]`), which is what the user can add.
    required = {SAMPLE_ID_COLUMN: SAMPLE_ID_COLUMN}
    required |= {field.name: header_of(field) for field in validator.fields if field.required}
    missing = [name for name in required if name not in seen]
    errors += [
        CellError(
            header_row,
            required[name],
            None,
            ReportCode.MISSING_COLUMN,
            "is a required column but the file has no such header",
        )
        for name in missing
    ]
    return ColumnPlan(columns=columns, errors=errors, incomplete=bool(missing), header_row=header_row)


def _header_problem(
    row: int,
    header: str,
    target: str | None,
    unit: str | None,
    units: dict[str, str | None],
    seen: dict[str, str],
) -> CellError | None:
    if not header:
        return CellError(row, header, header, ReportCode.UNKNOWN_COLUMN, "a column has values but no header")
    if target is None:
        return CellError(row, header, header, ReportCode.UNKNOWN_COLUMN, "is not a field of this study")
    if target in seen:
        return CellError(
            row,
            header,
            header,
            ReportCode.DUPLICATE_COLUMN,
            f"is the same field as the column {seen[target]}",
        )
    expected = units.get(target)
    if unit is not None and unit != expected:
        wanted = f"[{expected}]" if expected else "no unit"
        return CellError(row, header, header, ReportCode.UNIT_MISMATCH, f"the field {target} takes {wanted}")
    return None


def is_template_description(cells: list[object], plan: ColumnPlan) -> bool:
    """The CSV template's row under the header describes the columns: not a sample, skipped."""
    first = next((column for column in plan.columns if column.field == SAMPLE_ID_COLUMN), None)
    return first is not None and cells[first.index] == TEMPLATE_DESCRIPTION_MARKER


class SeenIds:
    """The normalised sample_ids of a file so far, each with the row it came first on (for
    `duplicate_in_file`), kept on disk, not in memory.

    A set of str costs ~90 bytes an id (+90 MB at a million rows). Here the ids are a hash table in
    an anonymous temporary file, sized once for `capacity` ids (at most half full, so probe chains
    stay short): a slot is 16 bytes, the id's 64-bit hash and where the id itself sits in a second
    temporary file, after its row number. The table file is sparse (only the slots written take
    disk); which slots are taken is a bitmap in memory (1 bit a slot: 512 KB at the 2,000,000-row
    limit), so a new id whose slot is free costs one small write and no read; the ids are appended
    in blocks. When the hashes match, the stored id is read back and compared: a hash collision can
    never make a false duplicate. Python's str hash is keyed per process, so a file cannot be crafted
    to collide.
    """

    _SLOT = struct.Struct("<QQ")  # the id's hash, and its offset in the ids file
    # In the ids file, each id as: its length, its row, its UTF-8 bytes.
    _ENTRY = struct.Struct("<HI")  # an id is at most SAMPLE_ID_MAX_LENGTH characters: < 65,536 bytes

    def __init__(self, *, capacity: int, hash_of: Callable[[str], int] = hash) -> None:
        self._hash_of = hash_of
        self._capacity = capacity
        slots = 1 << max(2 * capacity - 1, 1).bit_length()
        self._mask = slots - 1
        self._taken = bytearray(slots // 8 + 1)
        self._count = 0
        # Both files are open until close(); the OS removes them then (or when the process ends).
        self._table = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - unbuffered: slot-sized I/O
        self._table.truncate(slots * self._SLOT.size)
        self._ids = tempfile.TemporaryFile()  # noqa: SIM115
        self._pending = bytearray()
        self._written = 0

    def earlier_row(self, key: str, row: int) -> int | None:
        """The row the id came on before; None when it is new, and then it is remembered with `row`."""
        digest = self._hash_of(key) & 0xFFFF_FFFF_FFFF_FFFF
        size, mask, taken = self._SLOT.size, self._mask, self._taken
        at = digest & mask
        while taken[at >> 3] >> (at & 7) & 1:
            stored, offset = self._SLOT.unpack(self._read_slot(at * size))
            if stored == digest:
                stored_key, stored_row = self._stored(offset)
                if stored_key == key:
                    return stored_row
            at = (at + 1) & mask
        if self._count >= self._capacity:
            raise OverflowError(f"more than {self._capacity:,} sample_ids")
        self._write_slot(at * size, self._SLOT.pack(digest, self._append(key, row)))
        taken[at >> 3] |= 1 << (at & 7)
        self._count += 1
        return None

    # One system call a slot where the OS has positional I/O (pread/pwrite), not a seek and then a
    # read or write: the slot writes were a fifth of an import's CPU. Windows has neither.
    if hasattr(os, "pwrite"):

        def _read_slot(self, position: int) -> bytes:
            return os.pread(self._table.fileno(), self._SLOT.size, position)

        def _write_slot(self, position: int, slot: bytes) -> None:
            os.pwrite(self._table.fileno(), slot, position)

    else:  # pragma: no cover - Windows

        def _read_slot(self, position: int) -> bytes:
            self._table.seek(position)
            return self._table.read(self._SLOT.size)

        def _write_slot(self, position: int, slot: bytes) -> None:
            self._table.seek(position)
            self._table.write(slot)

    def close(self) -> None:
        self._table.close()
        self._ids.close()

    def _append(self, key: str, row: int) -> int:
        """Queues the id and its row for the ids file; returns its offset there."""
        data = key.encode()
        place = self._written + len(self._pending)
        self._pending += self._ENTRY.pack(len(data), row) + data
        if len(self._pending) >= 1 << 16:
            self._flush()
        return place

    def _flush(self) -> None:
        self._ids.seek(self._written)
        self._ids.write(self._pending)
        self._ids.flush()
        self._written += len(self._pending)
        self._pending.clear()

    def _stored(self, offset: int) -> tuple[str, int]:
        if offset >= self._written:
            self._flush()
        self._ids.seek(offset)
        length, row = self._ENTRY.unpack(self._ids.read(self._ENTRY.size))
        return self._ids.read(length).decode(), row


class RowChecker:
    """Checks rows against the plan and the compiled schema, a batch at a time; remembers sample_ids seen.

    A batch's value cells are read first in the file's dialect, column by column (cell_dialect.
    ColumnReader): missing-value markers are empty; numbers, booleans, dates and choices become the
    values the validator takes. Then each row goes through the study's validator, as a sample sent
    as JSON does.
    """

    def __init__(
        self,
        plan: ColumnPlan,
        validator: SampleValidator,
        *,
        mode: ImportMode,
        max_rows: int,
        cells: FileCells,
    ) -> None:
        self.plan = plan
        self.validator = validator
        self.upsert = mode is ImportMode.UPSERT
        self.partial = self.upsert or plan.incomplete
        self.width = len(plan.columns)
        self.cells = cells
        self.na_values = self.cells.na_values
        definitions = {definition.name: definition for definition in validator.fields}
        self.readers = [
            self.cells.column_reader(definitions[c.field], index=c.index, header=c.header)
            for c in plan.mapped()
            if c.field not in _BUILT_IN
        ]
        self.names = [reader.name for reader in self.readers]
        self.index_of = {c.field: c.index for c in plan.mapped()}
        self.position = {c.header: c.index for c in plan.mapped()}
        self.id_column = next((c for c in plan.columns if c.field == SAMPLE_ID_COLUMN), None)
        self.status_column = next((c for c in plan.columns if c.field == STATUS_COLUMN), None)
        self.headers = {c.field: c.header for c in plan.mapped()}
        # The one thing that grows with the file (the rest is per batch), kept small: see SeenIds.
        self.seen_ids = SeenIds(capacity=max_rows)
        # Columns right of the header already reported (the reader bounds a row's width).
        self.unheaded_columns: set[int] = set()

    def check_batch(self, numbers: list[int], rows: list[list[object]]) -> list[CheckedRow]:
        """The rows of a batch (their numbers, and their cells) checked in order, a slice of
        CHECK_SLICE_ROWS at a time."""
        checked: list[CheckedRow] = []
        for start in range(0, len(rows), CHECK_SLICE_ROWS):
            end = start + CHECK_SLICE_ROWS
            checked += self._check_slice(numbers[start:end], rows[start:end])
        return checked

    def _check_slice(self, numbers: list[int], rows: list[list[object]]) -> list[CheckedRow]:
        columns = [reader.read(list(map(itemgetter(reader.index), rows)), numbers) for reader in self.readers]
        refused: dict[int, list[tuple[ColumnReader, CellRefused]]] = {}
        problems: dict[int, list[CellError]] = {}
        for reader, column in zip(self.readers, columns, strict=True):
            for position, refusal in column.refusals:
                refused.setdefault(position, []).append((reader, refusal))
            for position, problem in column.problems:
                problems.setdefault(position, []).append(self._column_error(problem))
        value_rows = zip(*(column.values for column in columns), strict=True) if columns else [()] * len(rows)
        checked = []
        for position, (number, cells, values) in enumerate(zip(numbers, rows, value_rows, strict=True)):
            row = self._check(number, cells, values, refused.get(position) if refused else None)
            if problems and position in problems:
                row.column_errors = [*problems[position], *row.column_errors]
            checked.append(row)
        return checked

    def _check(
        self,
        row: int,
        cells: list[object],
        values: tuple[object, ...],
        refusals: list[tuple[ColumnReader, CellRefused]] | None,
    ) -> CheckedRow:
        errors: list[CellError] = []
        sample_id, normalized = self._sample_id(row, cells, errors)
        status = self._status(row, cells, errors)
        if self.upsert or refusals:
            # An empty cell leaves the stored value as it is (upsert): it is left out, as a refused one.
            raw = {
                name: value
                for name, value in zip(self.names, values, strict=True)
                if value is not REFUSED and not (self.upsert and (value is None or value == ""))
            }
        else:
            raw = dict(zip(self.names, values, strict=True))
        for reader, refusal in refusals or ():
            if refusal.code is not None:
                errors.append(
                    CellError(row, reader.header, cells[reader.index], refusal.code, refusal.message)
                )
        checked, issues = self.validator.validate(raw, partial=self.partial)
        refused_names = {reader.name for reader, _ in refusals} if refusals else ()
        for issue in issues:
            if issue.field in refused_names:
                continue  # `required` for a cell refused above: its error is said already
            header = self.headers.get(issue.field, issue.field)
            index = self.index_of.get(issue.field)
            value = cells[index] if index is not None else raw.get(issue.field)
            errors.append(CellError(row, header, value, issue.code, issue.message))
        if refusals and len(errors) > 1:
            # Refused cells were reported before the validator's issues: the row's errors in column order.
            errors.sort(key=lambda error: self.position.get(error.column, -1))
        column_errors: list[CellError] | tuple[()] = ()
        if len(cells) > self.width:
            column_errors = self._values_without_header(row, cells)
            cells = cells[: self.width]  # what errors.csv gives back: the columns of the header
        return CheckedRow(
            row,
            sample_id,
            normalized,
            status,
            checked,
            errors,
            self._id_header(),
            cells,
            self.headers,
            column_errors,
        )

    def _column_error(self, problem: ColumnProblem) -> CellError:
        return CellError(self.plan.header_row, problem.header, problem.value, problem.code, problem.message)

    def _values_without_header(self, row: int, cells: list[object]) -> list[CellError]:
        """One error, on the header row, for the columns right of the header whose first value is on
        this row: a column is reported once however many rows fill it (not once per row and value,
        which made a 2.5 MB file store 160 MB of errors)."""
        new = [
            index
            for index in range(self.width, len(cells))
            if index not in self.unheaded_columns and _cell_text(cells[index])
        ]
        if not new:
            return []
        self.unheaded_columns.update(new)
        columns = _column_ranges([index + 1 for index in new])
        verb = "has" if len(new) == 1 else "have"
        return [
            CellError(
                self.plan.header_row,
                None,
                cells[new[0]],
                ReportCode.UNKNOWN_COLUMN,
                f"{columns} {verb} values but no header (first on row {row})",
            )
        ]

    def _id_header(self) -> str:
        return self.id_column.header if self.id_column is not None else SAMPLE_ID_COLUMN

    def _sample_id(
        self, row: int, cells: list[object], errors: list[CellError]
    ) -> tuple[str | None, str | None]:
        if self.id_column is None:
            return None, None
        header = self.id_column.header
        cell = cells[self.id_column.index]
        text = _cell_text(cell)
        if not text or text in self.na_values:
            errors.append(CellError(row, header, cell, ReportCode.REQUIRED, "is required"))
            return None, None
        if len(text) > SAMPLE_ID_MAX_LENGTH:
            errors.append(
                CellError(
                    row,
                    header,
                    text,
                    ReportCode.TOO_LONG,
                    f"must be at most {SAMPLE_ID_MAX_LENGTH} characters",
                )
            )
            return None, None
        # The rule of SingleLineText, called directly: its TypeAdapter cost 0.5 us a row.
        if has_control_characters(text):
            errors.append(
                CellError(
                    row, header, text, ReportCode.INVALID_TEXT, "must be one line without control characters"
                )
            )
            return None, None
        normalized = normalize_sample_id(text)
        first = self.seen_ids.earlier_row(normalized, row)
        if first is not None:
            errors.append(
                CellError(
                    row, header, text, ReportCode.DUPLICATE_IN_FILE, f"is on row {first} of this file already"
                )
            )
            return text, None
        return text, normalized

    def _status(self, row: int, cells: list[object], errors: list[CellError]) -> str | None:
        if self.status_column is None:
            return None
        text = _cell_text(cells[self.status_column.index])
        if not text or text in self.na_values:
            return None
        text = text.lower()
        if text not in _STATUSES:
            errors.append(
                CellError(
                    row,
                    self.status_column.header,
                    text,
                    ReportCode.NOT_A_CHOICE,
                    f"not one of: {', '.join(SampleStatus)}",
                )
            )
            return None
        return text


def _cell_text(cell: object) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _column_ranges(numbers: list[int]) -> str:
    """ "column 4", "columns 3-402", "columns 3, 5, 7-9": ascending column numbers, runs joined."""
    if len(numbers) == 1:
        return f"column {numbers[0]}"
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return "columns " + ", ".join(f"{first}-{last}" if last > first else f"{first}" for first, last in runs)


def batches(
    rows: Iterable[tuple[int, list[object]]], checker: RowChecker, *, size: int
) -> Iterator[list[CheckedRow]]:
    """Checked rows in lists of `size`, the template's description row left out."""
    numbers: list[int] = []
    cells_of: list[list[object]] = []  # not (number, cells) pairs: a tuple a row is more for the GC to walk
    for number, cells in rows:
        if number == checker.plan.header_row + 1 and is_template_description(cells, checker.plan):
            continue
        numbers.append(number)
        cells_of.append(cells)
        if len(numbers) >= size:
            yield checker.check_batch(numbers, cells_of)
            numbers, cells_of = [], []
    if numbers:
        yield checker.check_batch(numbers, cells_of)
