"""Sheets and files out of a study: its template and its samples, as CSV or XLSX, streamed as they are
written; and a sample file as uploaded, and its rejected rows (errors.csv).

Stored values are JSON (dates and date-times as ISO text); the export gives them back typed by their
field, so that a CSV shows them in its dialect and an XLSX workbook holds real dates. The template
describes each column with the spellings an upload accepts.

An export reads the study's samples a page of EXPORT_PAGE_ROWS at a time, each page in a short
session of its own, while the sheet is being sent: the first bytes leave before the first page is
read, memory holds two pages (the one being written, the next one being read meanwhile) and one
chunk however large the study, and no connection is held between pages. The chunks are pulled by
the response (Starlette runs a sync iterator in a worker thread, chunk by chunk): a client that goes
away is asked for nothing more, so no page is read after the one already being read.
"""

import asyncio
import codecs
import dataclasses
import datetime as dt
import json
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import anyio
from sqlalchemy import Select, String, Text, cast, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from src.database import SessionFactory
from src.sampleFileUpload import readers, writers
from src.sampleFileUpload.constants import (
    DEFAULT_NA_VALUES,
    ERRORS_ROW_COLUMN,
    ERRORS_TEXT_COLUMN,
    EXPORT_PAGE_ROWS,
    SAMPLE_ID_COLUMN,
    SAMPLES_SHEET,
    STATUS_COLUMN,
    TEMPLATE_DESCRIPTION_MARKER,
    TEMPLATE_FIELDS_SHEET,
    CsvDialect,
    DecimalMark,
    SheetFormat,
)
from src.sampleFileUpload.exceptions import ExportTooLarge
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.storage import Storage
from src.study.constants import FieldType, SampleStatus
from src.study.models import Sample, Study
from src.study.sample_schema import SampleField
from src.study.sample_validation import SampleValidator

# ---------------------------------------------------------------------------------------------
# The template


def header_of(definition: SampleField) -> str:
    return f"{definition.name} [{definition.unit}]" if definition.unit else definition.name


def headers_of(validator: SampleValidator) -> list[str]:
    return [SAMPLE_ID_COLUMN, STATUS_COLUMN, *(header_of(definition) for definition in validator.fields)]


# What an upload reads in each type of column, besides the ISO form the JSON API takes: as a
# researcher reads it in the template (the reading rules are in sheet_import.py).
_ACCEPTED_SPELLINGS = {
    FieldType.INTEGER: "1234, or grouped by thousands with the mark that is not the decimal mark "
    "(1,234 or 1.234)",
    FieldType.NUMBER: "1234.5, or 1234,5 with decimal mark , (a file saved with ; as delimiter has it); "
    "thousands may be grouped (1,234.5 or 1.234,5)",
    FieldType.BOOLEAN: "yes/no, true/false, y/n, 1/0 (also wahr/falsch, ja/nein, vrai/faux, oui/non, "
    "sí/si/no), any case",
    FieldType.DATE: "2025-03-14, 14.03.2025, or 14/03/2025 with date order (day first, or month first "
    "as in 03/14/2025); four-digit years",
    FieldType.DATETIME: "a date as above and a time, 2025-03-14 09:30, 14.03.2025 09:30:15 or "
    "03/14/2025 9:30 AM, in UTC unless an offset is given (2025-03-14T09:30+01:00)",
}
_MISSING_VALUES = "empty when unknown (so are " + ", ".join(DEFAULT_NA_VALUES) + ")"


def describe_field(definition: SampleField) -> str:
    """One line a researcher reads in the template: type, whether required, constraints, how values
    may be written, description."""
    parts = [str(definition.type), "required" if definition.required else _MISSING_VALUES]
    if definition.type in _ACCEPTED_SPELLINGS:
        parts.append(_ACCEPTED_SPELLINGS[definition.type])
    if definition.min is not None:
        parts.append(f"min {definition.min}")
    if definition.max is not None:
        parts.append(f"max {definition.max}")
    if definition.max_length is not None:
        parts.append(f"at most {definition.max_length} characters")
    if definition.pattern is not None:
        parts.append(f"pattern {definition.pattern}")
    if definition.choices is not None:
        parts.append("one of: " + ", ".join(definition.choices) + " (any case)")
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


def field_rows(validator: SampleValidator) -> list[list[object]]:
    """The XLSX template's second sheet: one row per column."""
    return [
        ["column", "description"],
        [SAMPLE_ID_COLUMN, _SAMPLE_ID_DESCRIPTION],
        [STATUS_COLUMN, _STATUS_DESCRIPTION],
        *([header_of(definition), describe_field(definition)] for definition in validator.fields),
    ]


def template_csv(validator: SampleValidator, style: writers.CsvStyle) -> Iterator[bytes]:
    return writers.csv_chunks(template_rows(validator, with_description_row=True), style=style)


def template_xlsx(validator: SampleValidator) -> Iterator[bytes]:
    return writers.xlsx_chunks(
        [
            _samples_sheet(validator, template_rows(validator, with_description_row=False)),
            writers.Worksheet(TEMPLATE_FIELDS_SHEET, field_rows(validator)),
        ]
    )


def _samples_sheet(validator: SampleValidator, rows: Iterable[Sequence[object]]) -> writers.Worksheet:
    """The samples sheet, its date and date-time columns formatted as such: a date typed into the
    template, or into a row added to an export, is an Excel date, whatever the locale shows."""
    return writers.Worksheet(
        SAMPLES_SHEET,
        rows,
        date_columns=_columns_of_type(validator, FieldType.DATE),
        datetime_columns=_columns_of_type(validator, FieldType.DATETIME),
    )


def _columns_of_type(validator: SampleValidator, field_type: FieldType) -> list[int]:
    """The sheet's column numbers (from 1) of the fields of this type: they follow sample_id and status."""
    return [number for number, field in enumerate(validator.fields, 3) if field.type is field_type]


# ---------------------------------------------------------------------------------------------
# The export


async def _export_page(study_id: uuid.UUID, after: str | None) -> list[tuple[str, str, str, str]]:
    """One page of a study's samples in sample_id order, read in a short session of its own; the
    values as their JSON text, decoded by the exporting thread (json.loads on the text is a third
    of the cost of the driver's JSONB loading, and is not done on the event loop); the status as
    its text, which is what the sheet shows (not made a SampleStatus, row by row, on the loop)."""
    query = select(
        Sample.sample_id_normalized,
        Sample.sample_id,
        type_coerce(Sample.status, String),
        cast(Sample.values, Text),
    ).where(Sample.study_id == study_id)
    if after is not None:
        query = query.where(Sample.sample_id_normalized > after)
    query = query.order_by(Sample.sample_id_normalized).limit(EXPORT_PAGE_ROWS)
    async with SessionFactory() as session:
        connection = await session.connection()
        if connection.dialect.name == "postgresql":
            return await _driver_rows(connection, query)
        rows = await session.execute(query)
        return rows.all()  # type: ignore[return-value]


async def _driver_rows(connection: AsyncConnection, query: Select[Any]) -> list[Any]:
    """The query's rows as psycopg fetches them: its columns need no conversion, and SQLAlchemy's
    result rows cost the event loop twice the driver's own fetch (measured: 1.5 s of CPU against
    0.6 s for a 200,000-sample export), time the exporting thread waits for."""
    compiled = query.compile(dialect=connection.dialect)
    driver = (await connection.get_raw_connection()).driver_connection
    async with driver.cursor() as cursor:  # type: ignore[union-attr]
        await cursor.execute(str(compiled), compiled.params)
        return await cursor.fetchall()


def _stored_date(text: object) -> object:
    try:
        return dt.date.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # not what the validator stores: written as it is
        return text


def _stored_datetime(text: object) -> object:
    try:
        return dt.datetime.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


# How a stored value of a type becomes the value written; the others (JSON numbers, booleans and
# text) are written as they are.
_TYPED = {FieldType.DATE: _stored_date, FieldType.DATETIME: _stored_datetime}


def _day_first_date(stored: object) -> object:
    text = writers.day_first_of_stored_date(stored)
    return _stored_date(stored) if text is None else text


def _day_first_datetime(stored: object) -> object:
    text = writers.day_first_of_stored_utc(stored)
    return _stored_datetime(stored) if text is None else text


# The same for a day-first CSV: a stored value of the validator's own shape becomes the cell's text
# at once (digits first, so the CSV writer takes it as it is), any other the typed value as above.
_DAY_FIRST_TEXTS = {FieldType.DATE: _day_first_date, FieldType.DATETIME: _day_first_datetime}
# An ISO CSV writes the stored ISO text itself: not parsed to be written back the same, which would
# cost a third of the rows per second of an export.
_AS_STORED: dict[FieldType, Callable[[object], object]] = {}

_ValueReaders = Mapping[FieldType, Callable[[object], object]]


def _typed_columns(
    validator: SampleValidator, read_as: _ValueReaders
) -> list[tuple[int, Callable[[object], object]]]:
    """The row positions of the fields (after sample_id and status) whose type `read_as` has a reader
    for, each with that reader."""
    fields = enumerate(validator.fields, 2)
    return [(position, read_as[field.type]) for position, field in fields if field.type in read_as]


def _page_values(page: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """The samples' values of a page, decoded in one call: the JSON texts of its rows as one array
    (json.loads row by row spent more in its Python wrapper than in decoding)."""
    return json.loads("[" + ",".join([values_json for *_columns, values_json in page]) + "]")


def export_rows(
    study_id: uuid.UUID, validator: SampleValidator, *, read_as: _ValueReaders = _TYPED
) -> Iterator[list[object]]:
    """Header then every sample, a page at a time, each stored value of a type in `read_as` read by
    its reader (by default dates and date-times as such). Runs in a worker thread: each page is read
    on the event loop (anyio.from_thread), the next one while this one's rows are taken, so that the
    database works while the sheet is written; none after the last one a client took rows of."""
    names = validator.field_names
    typed = _typed_columns(validator, read_as)
    yield headers_of(validator)
    page = anyio.from_thread.run(_export_page, study_id, None)
    while True:
        full = len(page) == EXPORT_PAGE_ROWS
        next_page = anyio.from_thread.run_sync(_start_reading, study_id, page[-1][0]) if full else None
        for (_normalized, sample_id, status, _json), values in zip(page, _page_values(page), strict=True):
            row = [sample_id, status, *map(values.get, names)]
            for position, read in typed:
                if row[position] is not None:
                    row[position] = read(row[position])
            yield row
        if next_page is None:
            return
        page = anyio.from_thread.run(_read, next_page)


def _start_reading(study_id: uuid.UUID, after: str) -> "asyncio.Task[list[tuple[str, str, str, str]]]":
    """The page after `after` read on the event loop from now on (called there). A page whose rows
    are never asked for (the client went away) is read all the same and let go: its failure, if
    any, is taken here, not left for asyncio to log as never retrieved."""
    task = asyncio.get_running_loop().create_task(_export_page(study_id, after))
    task.add_done_callback(_retrieve_outcome)
    return task


def _retrieve_outcome(task: "asyncio.Task[object]") -> None:
    if not task.cancelled():
        task.exception()


async def _read(task: "asyncio.Task[list[tuple[str, str, str, str]]]") -> list[tuple[str, str, str, str]]:
    return await task


def export_csv(study_id: uuid.UUID, validator: SampleValidator, style: writers.CsvStyle) -> Iterator[bytes]:
    rows = export_rows(study_id, validator, read_as=_DAY_FIRST_TEXTS if style.day_first_dates else _AS_STORED)
    return writers.csv_chunks(rows, style=style)


def check_fits_a_worksheet(study: Study) -> None:
    """An XLSX export of more samples than a worksheet has rows is refused before it starts, not cut
    short halfway through (the count is the study's maintained counter)."""
    if study.sample_count + 1 > writers.MAX_XLSX_ROWS:  # the header is a row too
        raise ExportTooLarge(
            f"An XLSX worksheet holds at most {writers.MAX_XLSX_ROWS - 1:,} samples and this study has "
            f"{study.sample_count:,}: export it as CSV."
        )


def export_xlsx(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[bytes]:
    return writers.xlsx_chunks([_samples_sheet(validator, export_rows(study_id, validator))])


# ---------------------------------------------------------------------------------------------
# errors.csv's dialect


async def errors_csv_style(
    storage: Storage, record: SampleFile, *, dialect: CsvDialect | None
) -> writers.CsvStyle:
    """The dialect asked for; without one, the dialect the upload was read in, so that the rows go back
    to the user's spreadsheet as they came: its delimiter, its decimal mark, and Windows-1252 when
    the upload was in it and every character of errors.csv fits (else UTF-8 with a BOM). Its cells
    are the upload's own text, so their dates and numbers are as the user wrote them."""
    if dialect is not None:
        return writers.CSV_STYLES[dialect]
    return await anyio.to_thread.run_sync(_upload_style, storage, record)


# Where the import notes how it read a file: {"delimiter": ";", "decimal_mark": ",", "date_order": ...}.
REPORT_DIALECT_KEY = "dialect"
_WINDOWS_1252 = codecs.lookup("cp1252").name
_SCAN_CHUNK_BYTES = 256 * 1024


def _upload_style(storage: Storage, record: SampleFile) -> writers.CsvStyle:
    read_as = record.report.get(REPORT_DIALECT_KEY)
    read_as = read_as if isinstance(read_as, dict) else {}
    delimiter = read_as.get("delimiter")
    if not (isinstance(delimiter, str) and len(delimiter) == 1 and delimiter in readers.DELIMITERS):
        delimiter = _delimiter_of_upload(storage, record)
    decimal_mark = _decimal_mark(read_as.get("decimal_mark"), delimiter)
    style = writers.CsvStyle(
        delimiter=delimiter, decimal_mark=decimal_mark, day_first_dates=decimal_mark is DecimalMark.COMMA
    )
    if _is_windows_1252(record.encoding) and _errors_fit(storage, record, _WINDOWS_1252):
        return dataclasses.replace(style, encoding=_WINDOWS_1252)
    return style


def _decimal_mark(noted: object, delimiter: str) -> DecimalMark:
    """The mark the import noted; else the one it takes for the file: `,` in a `;`-delimited CSV."""
    if noted in tuple(DecimalMark):
        return DecimalMark(noted)
    return DecimalMark.COMMA if delimiter == ";" else DecimalMark.POINT


def _delimiter_of_upload(storage: Storage, record: SampleFile) -> str:
    """The delimiter the reader found in the stored upload, found again the same way (for a record
    whose report does not note it): tab for TSV, `,` for XLSX."""
    if record.format == SheetFormat.TSV:
        return "\t"
    if record.format != SheetFormat.CSV or not record.encoding or not record.storage_key:
        return ","
    try:
        with storage.open(record.storage_key) as stored:
            start = stored.read(readers.TEXT_SAMPLE_BYTES)
        decoder = codecs.getincrementaldecoder(record.encoding)(errors="replace")
    except (OSError, LookupError):
        return ","
    return readers.detect_delimiter(decoder.decode(start)[: readers.DELIMITER_SAMPLE_CHARS])


def _is_windows_1252(encoding: str | None) -> bool:
    try:
        return encoding is not None and codecs.lookup(encoding).name == _WINDOWS_1252
    except LookupError:
        return False


def _errors_fit(storage: Storage, record: SampleFile, encoding: str) -> bool:
    """Whether every character errors.csv will hold can be written in `encoding`: its headers, and
    the stored errors file, whose every text (cells, columns, messages) errors.csv writes."""
    headers = "".join(str(column.get("header", "")) for column in record.report.get("columns", []))
    try:
        headers.encode(encoding)
        if record.errors_key is None:
            return True
        decoder = codecs.getincrementaldecoder("utf-8")()
        with storage.open(record.errors_key) as stored:
            while chunk := stored.read(_SCAN_CHUNK_BYTES):
                decoder.decode(chunk).encode(encoding)
    except (UnicodeError, OSError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Files out: the original as uploaded, and its errors


def stored_chunks(storage: Storage, key: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """A stored file in chunks (a sync iterator: Starlette runs it in a worker thread). The file is
    opened at once (call this in a worker thread too), so that a store that is away or a missing
    file fails the request before its answer has begun, not in the middle of it."""
    stored = storage.open(key)
    return _closing(_chunks_of(stored, chunk_size), stored)


def _closing(chunks: Iterator[bytes], stored: BinaryIO) -> Iterator[bytes]:
    """`chunks`, which read `stored`: the file is closed when they are, even if never started (a
    client gone before its first byte)."""
    weakref.finalize(chunks, stored.close)
    return chunks


def _chunks_of(stored: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with stored:
        while chunk := stored.read(chunk_size):
            yield chunk


def _error_rows(record: SampleFile, stored: BinaryIO | None) -> Iterator[list[object]]:
    """The rejected rows as they were in the file, behind their row number and errors; read from
    the stored error lines one at a time. Column errors are on the header row."""
    headers = [column["header"] for column in record.report.get("columns", [])]
    yield [ERRORS_ROW_COLUMN, ERRORS_TEXT_COLUMN, *headers]
    if stored is None:
        return
    with stored:
        for line in stored:
            entry = json.loads(line)
            # A line stored before rejected rows kept their cells is one error without them.
            errors = entry.get("errors", [entry])
            yield [entry["row"], "; ".join(map(_error_text, errors)), *(entry.get("cells") or ())]


def _error_text(error: dict[str, Any]) -> str:
    """`volume [mL]: must be at least 0 (below_min)`: the column, what is wrong, the stable code."""
    where = f"{error['column']}: " if error["column"] else ""
    return f"{where}{error['message']} ({error['code']})"


def errors_csv(
    storage: Storage, record: SampleFile, *, style: writers.CsvStyle = writers.EXCEL
) -> Iterator[bytes]:
    """The rejected rows in `style` (exports.errors_csv_style: the dialect asked for, or the upload's).
    The stored errors are opened at once, as by stored_chunks."""
    stored = storage.open(record.errors_key) if record.errors_key is not None else None
    chunks = writers.csv_chunks(_error_rows(record, stored), style=style)
    return _closing(chunks, stored) if stored is not None else chunks
