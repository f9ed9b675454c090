"""Sheets out, streamed: CSV as chunks of bytes, XLSX as a temporary file written row by row.

Values are written the way readers.py and the sample validator read them back, so that an export
re-uploaded reads the same values: None is an empty cell, booleans are true/false, dates and
date-times ISO 8601 in CSV (real Excel dates in XLSX), floats in plain decimals (1e-05 is written
0.00001, 34.0 is written 34: the validator reads both back as the same number).

Formula injection (a cell such as `=HYPERLINK(...)` that a spreadsheet would run): in CSV a text
value that starts with = + - @ tab or CR, or with the guard itself, is written with an apostrophe in
front, as OWASP recommends; readers.py takes exactly one apostrophe off such a cell again, so text
round-trips unchanged. Numbers are not text and are never prefixed: an int -5 is written -5, and so
is the text "-5" (a plain number cannot be a formula), so a negative number survives both ways.
In XLSX every string is written as a string cell, which Excel never evaluates: no prefix needed.
"""

import codecs
import contextlib
import csv
import datetime as dt
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from src.sampleFileUpload.constants import FORMULA_TRIGGERS, GUARD

# Bytes gathered before a CSV chunk is handed out: large enough to amortise the write calls of a
# streamed response, small enough to keep memory flat.
CSV_CHUNK_CHARS = 64 * 1024
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?(?:[eE][+-]?[0-9]+)?")


def csv_chunks(rows: Iterable[Sequence[object]]) -> Iterator[bytes]:
    """The rows as UTF-8 CSV with a BOM (so Excel reads it as UTF-8), `\\r\\n` line ends, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield codecs.BOM_UTF8
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def csv_cell(value: object) -> str:
    """One value as the text of a CSV cell that reads back as the same value."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return guard_formula(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return plain_float(value)
    if isinstance(value, dt.datetime):
        return _utc_naive(value).isoformat() + ("Z" if value.tzinfo is not None else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    return guard_formula(str(value))


def guard_formula(text: str) -> str:
    """Text a spreadsheet would take for a formula, with the apostrophe that makes it text."""
    if text[:1] == GUARD or (text[:1] in FORMULA_TRIGGERS and text and not _PLAIN_NUMBER.fullmatch(text)):
        return GUARD + text
    return text


def plain_float(value: float) -> str:
    """The shortest decimal that reads back as the same float, without exponent or trailing .0."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text


def _utc_naive(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def xlsx_file(
    rows: Iterable[Sequence[object]],
    *,
    sheet_name: str,
    extra_sheets: Mapping[str, Iterable[Sequence[object]]] | None = None,
    directory: Path | None = None,
) -> Path:
    """The rows written to a new temporary .xlsx file, whose path is returned; the caller deletes it.

    openpyxl's write-only mode streams each row to disk and writes strings inline (no shared
    strings table), so memory stays flat however many rows there are. A failure leaves no file.
    """
    descriptor, name = tempfile.mkstemp(suffix=".xlsx", dir=directory)
    os.close(descriptor)
    path = Path(name)
    workbook = Workbook(write_only=True)
    try:
        _write_sheet(workbook, sheet_name, rows)
        for extra_name, extra_rows in (extra_sheets or {}).items():
            _write_sheet(workbook, extra_name, extra_rows)
        workbook.save(path)
    except BaseException:
        # Each write-only sheet streams into a temporary file of openpyxl's own, removed only by
        # save() (or at interpreter exit): finish the workbook, then throw it away.
        with contextlib.suppress(Exception):
            workbook.save(path)
        path.unlink(missing_ok=True)
        raise
    return path


def _write_sheet(workbook: Workbook, title: str, rows: Iterable[Sequence[object]]) -> None:
    worksheet = workbook.create_sheet(title)
    for row in rows:
        worksheet.append([_xlsx_cell(worksheet, value) for value in row])


def _xlsx_cell(worksheet, value: object) -> object:
    if isinstance(value, str):
        # A WriteOnlyCell typed "s" is a string even when it starts with "=", where a plain str
        # would be written as a formula. XML cannot hold control characters: they are dropped.
        cell = WriteOnlyCell(worksheet, ILLEGAL_CHARACTERS_RE.sub("", value))
        cell.data_type = "s"
        return cell
    if isinstance(value, dt.datetime):
        return _utc_naive(value)  # Excel has no time zones: stored date-times are UTC
    return value
