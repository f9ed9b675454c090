"""Sheets out, streamed: CSV and XLSX as chunks of bytes, written row by row as the rows come.

Values are written the way readers.py and the sample validator read them back, so that an export
re-uploaded reads the same values: None is an empty cell, booleans are true/false, floats in plain
decimals (1e-05 is written 0.00001, 34.0 is written 34: the validator reads both back as the same
number). A CSV file is written in one of two dialects (CsvStyle): `excel` (comma, `.` decimals, ISO
dates) and `excel-eu` (semicolon, `,` decimals, DD.MM.YYYY dates, UTC date-times as DD.MM.YYYY
HH:MM:SS), each UTF-8 with a BOM, which is what Excel in English and in most of Europe opens as
columns; errors.csv may also be written as Windows-1252 (exports.py). In XLSX dates and date-times
are real Excel dates with a date number format, numbers numbers and booleans booleans.

Where a dialect cannot hold a value exactly, it is written in the ISO form every dialect reads back:
a date-time with a fraction of a second (Excel keeps milliseconds at best, and DD.MM.YYYY HH:MM:SS
none), and in XLSX a date before 1900, which Excel has no serial for.

Formula injection (a cell such as `=HYPERLINK(...)` that a spreadsheet would run): in CSV a text
value that starts with = + - @ tab or CR, or with the guard itself, is written with an apostrophe in
front, as OWASP recommends; readers.py takes exactly one apostrophe off such a cell again, so text
round-trips unchanged. Numbers are not text and are never prefixed: an int -5 is written -5, and so
is the text "-5", "-1,5" or "-1.234,5" (a plain number, decimal comma and thousands marks included,
cannot be a formula), so a negative number survives both ways in either dialect.
In XLSX every string is written as a string cell, which Excel never evaluates: no prefix needed.
"""

import codecs
import csv
import datetime as dt
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import quoteattr

from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel

from src.sampleFileUpload.constants import FORMULA_TRIGGERS, GUARD, CsvDialect, DecimalMark

# Bytes gathered before a chunk is handed out: large enough to amortise the write calls of a
# streamed response, small enough to keep memory flat.
CSV_CHUNK_CHARS = 64 * 1024
XLSX_CHUNK_BYTES = 64 * 1024
# Excel's limit: a worksheet has at most this many rows (the header included).
MAX_XLSX_ROWS = 1_048_576
# A number as a spreadsheet in any locale writes it: a decimal point or comma, thousands grouped by
# the other mark or a no-break space (not a plain space: Excel reads `+1 234` as a formula).
_PLAIN_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+|[0-9]{1,3}(?:[.,\u00a0\u202f][0-9]{3})+)(?:[.,][0-9]+)?(?:[eE][+-]?[0-9]+)?"
)
# Excel's first date (serial 1); before it a date cell cannot be shown, so it is written as text.
_FIRST_EXCEL_DATE = dt.date(1900, 1, 1)

# What XML 1.0 cannot hold (tab, line feed and carriage return aside); openpyxl drops the same
# control characters, and a lone surrogate could not even be encoded as UTF-8.
_XML_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_XML_SPACE = " \t\n\r"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELATIONSHIP = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CONTENT_TYPES = (
    _XML_DECLARATION + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{worksheets}</Types>"
)
_ROOT_RELATIONSHIPS = (
    _XML_DECLARATION + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELATIONSHIP}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    _XML_DECLARATION
    + f'<workbook xmlns="{_MAIN}" xmlns:r="{_RELATIONSHIP}"><sheets>{{sheets}}</sheets></workbook>'
)
_RELATIONSHIPS = (
    _XML_DECLARATION
    + '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{links}</Relationships>'
)
# Cell style 1 shows a date, 2 a date and time (openpyxl's formats for date and datetime values).
_DATE_STYLE = 1
_DATETIME_STYLE = 2
_STYLES = (
    _XML_DECLARATION + f'<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd h:mm:ss"/></numFmts>'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_WORKSHEET_START = _XML_DECLARATION + f'<worksheet xmlns="{_MAIN}">'
_SHEET_DATA_START = "<sheetData>"
_WORKSHEET_END = b"</sheetData></worksheet>"
# Widths (in characters) of pre-formatted columns, wide enough for what their format shows: Excel
# shows ##### for a date wider than its column.
_DATE_COLUMN_WIDTH = 12
_DATETIME_COLUMN_WIDTH = 20


@dataclass(frozen=True, slots=True)
class CsvStyle:
    """How a CSV file is written: its delimiter, decimal mark, date style and text encoding."""

    delimiter: str = ","
    decimal_mark: DecimalMark = DecimalMark.POINT
    # DD.MM.YYYY (and DD.MM.YYYY HH:MM:SS) instead of ISO 8601.
    day_first_dates: bool = False
    # "utf-8-sig" writes UTF-8 behind a BOM, which tells Excel the file is UTF-8.
    encoding: str = "utf-8-sig"


EXCEL = CsvStyle()
EXCEL_EU = CsvStyle(delimiter=";", decimal_mark=DecimalMark.COMMA, day_first_dates=True)
CSV_STYLES = {CsvDialect.EXCEL: EXCEL, CsvDialect.EXCEL_EU: EXCEL_EU}
_DECIMAL_COMMA = DecimalMark.COMMA  # looked up once: an enum's class attribute is slow to read


def csv_chunks(rows: Iterable[Sequence[object]], *, style: CsvStyle = EXCEL) -> Iterator[bytes]:
    """The rows as CSV in `style` (UTF-8 with a BOM unless it says otherwise), `\\r\\n` line ends, in
    chunks. The style's encoding must hold every character: exports.py checks a legacy one first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=style.delimiter, lineterminator="\r\n")
    encode = codecs.getincrementalencoder(style.encoding)().encode
    yield encode("")  # the BOM, if the encoding has one, even for no rows
    cell, unsafe, as_is = csv_cell, _UNSAFE_STARTS, _WRITTEN_AS_IS
    for row in rows:
        # A text that starts as no formula does is its own cell (most are), and so are None and an
        # int, which the csv module writes as csv_cell does ("" and str()): csv_cell for the rest.
        writer.writerow(
            [
                value
                if (value.__class__ is str and value[:1] not in unsafe) or value.__class__ in as_is
                else cell(value, style)
                for value in row
            ]
        )
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield encode(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield encode(buffer.getvalue())


# The first characters of a text that csv_cell may change (an empty text is in every string).
_UNSAFE_STARTS = FORMULA_TRIGGERS + GUARD
# The classes the csv module writes exactly as csv_cell would (not bool: csv writes True).
_WRITTEN_AS_IS = frozenset({type(None), int})


def csv_cell(value: object, style: CsvStyle = EXCEL) -> str:
    """One value as the text of a CSV cell that reads back as the same value."""
    # Exact classes first, in the order csv_chunks hands them here most (it writes None, ints and
    # most texts itself); subclasses after them.
    kind = value.__class__
    if kind is float:
        return _float_text(value, style)  # type: ignore[arg-type]
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return ""
    if kind is str:
        return guard_formula(value)  # type: ignore[arg-type]
    if kind is int:
        return str(value)
    if kind is dt.datetime:
        return _datetime_text(value, day_first=style.day_first_dates)  # type: ignore[arg-type]
    if kind is dt.date:
        return _date_text(value, day_first=style.day_first_dates)  # type: ignore[arg-type]
    if isinstance(value, float):
        return _float_text(value, style)
    if isinstance(value, int):  # a subclass of int
        return str(value)
    if isinstance(value, dt.datetime):
        return _datetime_text(value, day_first=style.day_first_dates)
    if isinstance(value, dt.date):
        return _date_text(value, day_first=style.day_first_dates)
    return guard_formula(str(value))


def _float_text(value: float, style: CsvStyle) -> str:
    text = plain_float(value)
    return text.replace(".", ",") if style.decimal_mark is _DECIMAL_COMMA else text


def _date_text(value: dt.date, *, day_first: bool) -> str:
    iso = value.isoformat()
    return _day_first(iso) if day_first else iso


def _datetime_text(moment: dt.datetime, *, day_first: bool) -> str:
    """In UTC, as stored: ISO 8601 (with Z when the moment has a time zone), or DD.MM.YYYY HH:MM:SS.
    A fraction of a second is kept in ISO form, which every dialect reads: DD.MM.YYYY HH:MM:SS has none."""
    if moment.tzinfo is None:
        iso, zone = moment.isoformat(), ""
    else:
        utc = moment if moment.tzinfo is dt.UTC else moment.astimezone(dt.UTC)
        iso, zone = utc.isoformat()[:-6], "Z"  # without its "+00:00"
    if day_first and len(iso) == 19:  # no fraction of a second
        return f"{_day_first(iso)} {iso[11:]}"
    return iso + zone


def _day_first(iso: str) -> str:
    """DD.MM.YYYY of an ISO date or date-time (its first ten characters: isoformat() pads the year)."""
    return f"{iso[8:10]}.{iso[5:7]}.{iso[:4]}"


def day_first_of_stored_date(stored: object) -> str | None:
    """What csv_cell writes day first for the date a stored YYYY-MM-DD text reads as, taken straight
    from its characters (the export's shortcut: parsing it into a date to print that back cost an
    excel-eu export ~2 us a cell); None for any other value, which takes the long way."""
    if type(stored) is not str or len(stored) != 10 or stored[4] != "-" or stored[7] != "-":
        return None
    try:
        dt.date.fromisoformat(stored)  # a real calendar day, as the long way checks
    except ValueError:
        return None
    return f"{stored[8:10]}.{stored[5:7]}.{stored[:4]}"


def day_first_of_stored_utc(stored: object) -> str | None:
    """The same for a stored YYYY-MM-DDTHH:MM:SSZ date-time (UTC, whole seconds: what the validator
    stores), which csv_cell writes as DD.MM.YYYY HH:MM:SS; None for any other value."""
    # Every character that places the slices below is checked, whatever else fromisoformat accepts.
    if (
        type(stored) is not str
        or len(stored) != 20
        or stored[19] != "Z"
        or stored[4] != "-"
        or stored[7] != "-"
        or stored[13] != ":"
        or stored[16] != ":"
    ):
        return None
    try:
        dt.datetime.fromisoformat(stored)  # a real day and time, as the long way checks
    except ValueError:
        return None
    return f"{stored[8:10]}.{stored[5:7]}.{stored[:4]} {stored[11:19]}"


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


# ---------------------------------------------------------------------------------------------
# XLSX, streamed: the package's small parts first, then each worksheet's XML row by row through
# a ZIP written to a buffer that is emptied at every chunk handed out.


class Worksheet(NamedTuple):
    """A sheet to write: its name, its rows, and the columns (numbered from 1) whose every cell is
    formatted as a date or a date and time, so that what a user types into an empty one is a date."""

    name: str
    rows: Iterable[Sequence[object]]
    date_columns: Sequence[int] = ()
    datetime_columns: Sequence[int] = ()


def xlsx_chunks(sheets: Sequence[Worksheet | tuple[str, Iterable[Sequence[object]]]]) -> Iterator[bytes]:
    """A workbook of these sheets (a Worksheet, or a (name, rows) pair), as the bytes of its .xlsx in chunks.

    The first chunk (the workbook's structure) comes before any row is asked for; after that a
    chunk comes every XLSX_CHUNK_BYTES of compressed output, so what is held is one chunk, the
    compressor's window and one batch of rows, however many rows there are. A consumer that stops
    asking stops the rows being read. The ZIP is written for a sink that cannot seek: each member's
    sizes follow its data in a data descriptor, as Excel's own streaming writers do. Never ZIP64:
    Excel reads only a strict subset of it, and a worksheet holds at most MAX_XLSX_ROWS rows.
    """
    worksheets = [Worksheet(*sheet) for sheet in sheets]
    sink = _ChunkSink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=False) as package:
        for name, xml in _package_parts([sheet.name for sheet in worksheets]):
            package.writestr(name, xml)
        yield sink.take()
        for number, sheet in enumerate(worksheets, 1):
            with package.open(f"xl/worksheets/sheet{number}.xml", mode="w") as worksheet:
                for piece in _worksheet_xml(sheet):
                    worksheet.write(piece)
                    if sink.size >= XLSX_CHUNK_BYTES:
                        yield sink.take()
    yield sink.take()


def xlsx_file(
    rows: Iterable[Sequence[object]],
    *,
    sheet_name: str,
    extra_sheets: Mapping[str, Iterable[Sequence[object]]] | None = None,
    directory: Path | None = None,
) -> Path:
    """The workbook written to a new temporary .xlsx file, whose path is returned; the caller deletes
    it. A failure leaves no file."""
    sheets = [(sheet_name, rows), *(extra_sheets or {}).items()]
    descriptor, name = tempfile.mkstemp(suffix=".xlsx", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            for chunk in xlsx_chunks(sheets):
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


class _ChunkSink:
    """Where zipfile writes: a buffer taken out chunk by chunk. It has no seek or tell, so zipfile
    writes data descriptors instead of going back to fill in sizes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def size(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        taken = bytes(self._buffer)
        self._buffer.clear()
        return taken


def _worksheet_xml(sheet: Worksheet) -> Iterator[bytes]:
    """The worksheet's XML in pieces of about XLSX_CHUNK_BYTES characters, a batch of rows each."""
    yield (_WORKSHEET_START + _columns_xml(sheet) + _SHEET_DATA_START).encode()
    batch: list[str] = []
    size = 0
    for number, row in enumerate(sheet.rows, 1):
        if number > MAX_XLSX_ROWS:  # exports check their count before they start: this is the backstop
            raise ValueError(f"A worksheet holds at most {MAX_XLSX_ROWS:,} rows.")
        text = _row_xml(number, row)
        batch.append(text)
        size += len(text)
        if size >= XLSX_CHUNK_BYTES:
            yield "".join(batch).encode("utf-8")
            batch.clear()
            size = 0
    yield "".join(batch).encode("utf-8") + _WORKSHEET_END


def _columns_xml(sheet: Worksheet) -> str:
    """The <cols> element giving the date and date-time columns their format (a cell's own style,
    such as a header's, still wins) and a width that shows it; none when there are none."""
    styled = sorted(
        [(column, _DATE_STYLE, _DATE_COLUMN_WIDTH) for column in sheet.date_columns]
        + [(column, _DATETIME_STYLE, _DATETIME_COLUMN_WIDTH) for column in sheet.datetime_columns]
    )
    if not styled:
        return ""
    columns = "".join(
        f'<col min="{column}" max="{column}" width="{width}" style="{style}" customWidth="1"/>'
        for column, style, width in styled
    )
    return f"<cols>{columns}</cols>"


def _row_xml(number: int, row: Sequence[object]) -> str:
    cells = "".join(
        _cell_xml(f"{get_column_letter(column)}{number}", value)
        for column, value in enumerate(row, 1)
        if value is not None and value != ""
    )
    return f'<row r="{number}">{cells}</row>'


def _cell_xml(reference: str, value: object) -> str:
    """One cell as openpyxl's write-only mode wrote it: what readers.py and Excel read back."""
    if isinstance(value, str):
        return _text_cell_xml(reference, value)
    if value is True or value is False:
        return f'<c r="{reference}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{reference}" t="n"><v>{value!r}</v></c>'
    if isinstance(value, dt.datetime):
        # Excel has no time zones: stored date-times are UTC
        moment = _utc_naive(value)
        if moment.microsecond or moment.date() < _FIRST_EXCEL_DATE:
            return _text_cell_xml(reference, csv_cell(value))  # an Excel serial would not hold it
        return f'<c r="{reference}" s="{_DATETIME_STYLE}" t="n"><v>{to_excel(moment)!r}</v></c>'
    if isinstance(value, dt.date):
        if value < _FIRST_EXCEL_DATE:
            return _text_cell_xml(reference, value.isoformat())
        return f'<c r="{reference}" s="{_DATE_STYLE}" t="n"><v>{to_excel(value)!r}</v></c>'
    return _text_cell_xml(reference, str(value))


def _text_cell_xml(reference: str, value: str) -> str:
    """A string cell, which Excel never evaluates, so `=1+1` stays text. XML cannot hold control
    characters, lone surrogates or U+FFFE/U+FFFF: they are dropped. A carriage return is written as
    a character reference, since an XML parser reads a raw one as a line feed."""
    text = _XML_UNWRITABLE.sub("", value)
    if not text:
        return ""
    space = ' xml:space="preserve"' if text[0] in _XML_SPACE or text[-1] in _XML_SPACE else ""
    return f'<c r="{reference}" t="inlineStr"><is><t{space}>{text.translate(_XML_TEXT_ESCAPES)}</t></is></c>'


def _package_parts(sheet_names: Sequence[str]) -> Iterator[tuple[str, str]]:
    """The parts of the package other than the worksheets: what they are and how they link up."""
    numbers = range(1, len(sheet_names) + 1)
    worksheet_types = "".join(
        f'<Override PartName="/xl/worksheets/sheet{number}.xml" ContentType="{_WORKSHEET_TYPE}"/>'
        for number in numbers
    )
    yield "[Content_Types].xml", _CONTENT_TYPES.format(worksheets=worksheet_types)
    yield "_rels/.rels", _ROOT_RELATIONSHIPS
    sheets = "".join(
        f'<sheet name={quoteattr(name)} sheetId="{number}" r:id="rId{number}"/>'
        for number, name in zip(numbers, sheet_names, strict=True)
    )
    yield "xl/workbook.xml", _WORKBOOK.format(sheets=sheets)
    worksheet_links = "".join(
        f'<Relationship Id="rId{number}" Type="{_RELATIONSHIP}/worksheet" '
        f'Target="worksheets/sheet{number}.xml"/>'
        for number in numbers
    )
    styles_link = (
        f'<Relationship Id="rId{len(sheet_names) + 1}" Type="{_RELATIONSHIP}/styles" Target="styles.xml"/>'
    )
    yield "xl/_rels/workbook.xml.rels", _RELATIONSHIPS.format(links=worksheet_links + styles_link)
    yield "xl/styles.xml", _STYLES
