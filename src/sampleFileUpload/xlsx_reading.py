"""From an XLSX workbook to its rows, with work bounded by the limits and decided before it is done.

A workbook is a ZIP of XML parts, opened once xlsx_archive.py has checked it (not a bomb, an Excel
workbook, no macros). Then the parts a sheet's values depend on are read with expat, streaming, each
fed to it within the bounds of xlsx_xml.py: the content types, the workbook, its relationships, the
styles and the shared strings (xlsx_parts.py), and here the chosen worksheet, up to the end of its rows.

openpyxl's own reader is not used for that: its read-only worksheet fills a gap in the row numbers
with empty rows (a `<row r="1000000000000000">` after row 1 never ends). Here a row or cell beyond the
limits is refused at its start tag, and no tag, text, nesting or row may grow past a bound. openpyxl's
conversions of a cell's value (numbers, dates in the workbook's epoch, formats that are dates) are used
as they are.
"""

import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO
from xml.parsers import expat

from openpyxl.utils.cell import column_index_from_string, get_column_letter
from openpyxl.utils.datetime import from_excel, from_ISO8601

from src.sampleFileUpload.constants import MAX_ROW_CHARS
from src.sampleFileUpload.reading_errors import SheetError
from src.sampleFileUpload.xlsx_archive import opened_workbook
from src.sampleFileUpload.xlsx_parts import (
    DateStyles,
    SharedStrings,
    date_styles,
    shared_strings,
    workbook_of,
)
from src.sampleFileUpload.xlsx_xml import (
    CELL,
    DIMENSION,
    INLINE_STRING,
    MAX_ELEMENTS_PER_RECORD,
    MAX_XML_DEPTH,
    ROW,
    RUN,
    SHEET_DATA,
    TEXT,
    VALUE,
    XML_CHUNK_BYTES,
    Done,
    Handler,
    damaged,
    fed,
    too_deep,
)

# A cell reference, as openpyxl reads one: column letters and row digits, each optionally absolute.
_CELL_REFERENCE = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d+)$")


@dataclass(slots=True)
class WorkbookRows:
    """The samples sheet's rows, and the last row its `<dimension>` claims (None without one, or
    until the rows are read into: it comes before them). A claim of the file: for display only."""

    rows: Iterator[tuple[int, list[object]]]
    reader: "_SheetReader"

    def claimed_last_row(self) -> int | None:
        return self.reader.claimed_last_row


@contextmanager
def workbook_records(
    file: BinaryIO, *, max_rows: int, max_columns: int, deadline: float | None
) -> Iterator[WorkbookRows]:
    """The rows of the workbook's samples sheet (the one named "samples", else the first) as
    (row number, values); SheetError when the file is not a workbook we read or goes past a limit.

    Rows are numbered as in Excel; a gap in the numbers is not filled. A row numbered past
    max_rows + 1 (the header and max_rows more) or a cell past column max_columns is refused when
    its tag is read; so are more cells in a row than max_columns.
    """
    with opened_workbook(file, deadline=deadline) as archive:
        book = workbook_of(archive, deadline)
        styles = date_styles(archive, deadline)
        strings = shared_strings(archive, book.strings_part, deadline)
        reader = _SheetReader(
            strings=strings,
            styles=styles,
            epoch=book.epoch,
            max_rows=max_rows,
            max_columns=max_columns,
        )
        yield WorkbookRows(_sheet_rows(archive, book.sheet_part, reader, deadline), reader)


# ---------------------------------------------------------------------------------------------
# The worksheet
#
# Expat calls Python three times a cell (start, end, text), which caps a worksheet near 35,000 rows
# a second even with handlers that do nothing. So rows written the plain way spreadsheet programs
# write them are read a run at a time by regular expressions over their bytes (the fast path),
# while the same bytes still go through expat, without handlers, first: the XML is checked exactly
# as before, and a row the expressions do not take whole (a formula, a rich text, an entity other
# than the five named ones, attributes in another order, another namespace prefix...) is read by
# the handlers, as every row was. The fast path starts only where expat has read exactly up to a
# row's `</row>` (see _SheetReader.feed), and a row longer than FAST_ROW_BYTES takes the handlers:
# in a shorter one no more than FAST_ROW_BYTES / 4 elements or characters fit, far below the limits
# the handlers count to (MAX_ELEMENTS_PER_RECORD, MAX_ROW_CHARS).

_SPACE = rb"[ \t\r\n]"


# Another attribute (of a row: spans, ht, x14ac:dyDescent...; of a cell: cm, vm, ph): never one the
# reader reads, nor a namespace declaration.
def _other_attribute(read: bytes) -> bytes:
    return (
        rb"(?:"
        + _SPACE
        + rb"+(?!(?:"
        + read
        + rb"|xmlns)[ \t\r\n=:])[A-Za-z_][\w.:-]*"
        + _SPACE
        + rb"*="
        + _SPACE
        + rb'*"[^"<&]*")'
    )


# A cell as spreadsheet programs write one: r, s and t in this order, each after one space, then its
# value (<v>) or inline string (<is><t>), or nothing. Its texts are checked by expat (entities,
# characters) before they are taken, and read by _plain_text.
_FAST_CELLS = re.compile(
    rb'(<c(?: r="([A-Z]{1,3})([0-9]{1,10})")?(?: s="([0-9]{1,9})")?(?: t="([A-Za-z]{1,9})")?'
    rb'(?:/>|>(?:<v>([^<]*)</v>|(<is>)<t(?: xml:space="preserve")?>([^<]*)</t></is>)?</c>))'
)
_FAST_ROW_START = re.compile(
    _SPACE
    + rb"*<row(?:"
    + _SPACE
    + rb'+r="([0-9]{1,15})")?'
    + _other_attribute(rb"r")
    + rb"*"
    + _SPACE
    + rb"*>"
)
_ROW_END = b"</row>"
# A row of more bytes than this is read by the handlers. Every element of a plain row takes 4 bytes
# or more (<c/>), every character of its texts 1 or more.
FAST_ROW_BYTES = min(4 * MAX_ELEMENTS_PER_RECORD, MAX_ROW_CHARS)
# The references a text may hold once expat has read it (no DOCTYPE, so no entity of its own).
_REFERENCE = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_UTF8 = frozenset({"utf-8", "utf8"})
_COLUMNS = {get_column_letter(number).encode(): number for number in range(1, 18_279)}  # A to ZZZ
_SECONDS_PER_DAY = 86_400
# The date cells' texts remembered with what they read as, by the fast path (then forgotten at once).
DATES_REMEMBERED = 4_096


def _plain_text(raw: bytes) -> str:
    """A text's bytes as expat reports them: its line ends as \\n, its references replaced."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = raw.decode()
    return _REFERENCE.sub(_referenced, text) if "&" in text else text


def _referenced(match: re.Match[str]) -> str:
    name = match.group(1)
    if name[0] != "#":
        return _NAMED[name]
    return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))


def _number(text: bytes) -> float:
    return float(text) if b"." in text or b"E" in text or b"e" in text else int(text)


def _date_of(number: float, epoch: Any, *, duration: bool) -> object:
    """A date serial as openpyxl's from_excel reads it; "#VALUE!" out of range, as Excel shows it.
    A date past the first days of 1900 (the common case) is computed here in one step, as
    from_excel computes it, at a third of its cost."""
    try:
        if duration or number < 61:
            return from_excel(number, epoch, timedelta=duration)
        day, fraction = divmod(number, 1)
        return epoch + timedelta(days=day, milliseconds=round(fraction * _SECONDS_PER_DAY * 1000))
    except (OverflowError, ValueError):
        return "#VALUE!"


def _sheet_rows(
    archive: zipfile.ZipFile, part: str, reader: "_SheetReader", deadline: float | None
) -> Iterator[tuple[int, list[object]]]:
    for _ in fed(archive, part, reader, deadline):
        if reader.rows:
            rows, reader.rows = reader.rows, []
            yield from rows


class _SheetReader(Handler):
    """A worksheet's rows as expat reports its elements; `rows` collects them until they are taken.

    A cell's value is converted as openpyxl's reader does with data_only (a formula's cached value):
    numbers (dates where the cell's format is one), shared and inline strings, booleans, ISO dates,
    error values and formula strings as their text.
    """

    def __init__(
        self, *, strings: SharedStrings, styles: DateStyles, epoch: Any, max_rows: int, max_columns: int
    ) -> None:
        super().__init__()
        self.strings = strings
        self.dates, self.durations = styles.dates, styles.durations
        self.epoch = epoch
        self.last_row = max_rows + 1
        self.max_columns = max_columns
        self.rows: list[tuple[int, list[object]]] = []
        self.in_data = False
        self.number = 0  # of the row being read, or the last one
        self.completed = 0  # the last row read to its end
        self.values: list[object] | None = None  # the row being read
        self.elements = self.chars = self.cells = self.column = 0  # in the row so far
        self.in_cell = False
        self.kind = "n"
        self.style = 0
        self.value: str | None = None  # the cell's <v> text
        self.inline: list[str] | None = None  # the texts of the cell's <is>
        self.text_parts: list[str] | None = None  # where character data goes now
        self.text_depth = 0
        self.run = False  # in an <is>'s <r> (its <t> is text), not its <rPh> (a phonetic guide)
        self.claimed_last_row: int | None = None  # the sheet's <dimension ref="A1:K1001">, if any
        # The fast path (see above): whether the part may take it (UTF-8, no namespace declared
        # inside sheetData), the bytes given to expat so far, where the last row read by the
        # handlers ended, and the bytes held back until their row is complete.
        self.fast = True
        self.parser: Any = None
        self.fed = 0
        self.aligned_at = -1
        self.held = b""
        self.dates_read: dict[tuple[bytes, bytes], object] = {}

    def prepare(self, parser: Any) -> None:
        self.parser = parser
        parser.XmlDeclHandler = self._declaration
        parser.StartNamespaceDeclHandler = self._namespace

    def _declaration(self, _version: str, encoding: str | None, _standalone: int) -> None:
        if encoding is not None and encoding.lower() not in _UTF8:
            self.fast = False

    def _namespace(self, _prefix: str | None, _uri: str) -> None:
        if self.in_data:
            self.fast = False

    def feed(self, parser: Any, chunk: bytes, final: bool) -> None:
        """Rows at the start of the data that the fast path takes (when expat stands right after a
        row's end), then the rest to the handlers, except a last incomplete row of at most
        XML_CHUNK_BYTES, held back until the next chunk completes it."""
        data = self.held + chunk if self.held else chunk
        self.held = b""
        if self.fast and self.aligned_at == self.fed and self.values is None and data:
            data = self._fast_rows(parser, data)
        if not final and self.fast:
            cut = data.rfind(_ROW_END)
            cut = cut + len(_ROW_END) if cut >= 0 else 0
            if len(data) - cut <= XML_CHUNK_BYTES:
                data, self.held = data[:cut], data[cut:]
        if data or final:
            if not self.fed and data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16
                self.fast = False
            self.fed += len(data)
            parser.Parse(data, final)

    def _fast_rows(self, parser: Any, data: bytes) -> bytes:
        """Reads the rows at the start of `data` that the fast path takes; returns the rest."""
        rows: list[tuple[bytes | None, list[tuple[bytes, ...]], int]] = []
        position = 0
        while (start := _FAST_ROW_START.match(data, position)) is not None:
            end = data.find(_ROW_END, start.end())
            if end < 0 or end - start.end() > FAST_ROW_BYTES:
                break
            content = data[start.end() : end]
            cells = _FAST_CELLS.findall(content)
            if len(b"".join([cell[0] for cell in cells])) != len(content):
                break  # not taken whole: the cells found are not all there is
            position = end + len(_ROW_END)
            rows.append((start.group(1), cells, position))
        if not rows:
            return data
        start_at = self.fed
        handlers = parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler
        parser.StartElementHandler = parser.EndElementHandler = parser.CharacterDataHandler = None
        try:
            parser.Parse(data[:position], False)
        except expat.ExpatError:
            # The rows before the damage are read, as the handlers would have read them.
            damaged_at = parser.ErrorByteIndex - start_at
            self._read_fast_rows([row for row in rows if row[2] <= damaged_at])
            raise self.damaged() from None
        finally:
            parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = handlers
        self.fed = self.aligned_at = start_at + position
        self._read_fast_rows(rows)
        return data[position:]

    def _read_fast_rows(self, rows: list[tuple[bytes | None, list[tuple[bytes, ...]], int]]) -> None:
        """Rows as the handlers read them, with the same checks in the same order."""
        strings, dates, durations, epoch = self.strings, self.dates, self.durations, self.epoch
        max_columns, columns_of, last_row = self.max_columns, _COLUMNS, self.last_row
        dates_read = self.dates_read
        for reference, cells, _end in rows:
            number = self.number + 1 if reference is None else int(reference)
            if number < 1:
                raise self.damaged()
            self._enter_row(number)
            self.tags += 1
            values: list[object] = []
            column = 0
            for count, (_cell, letters, digits, style, kind, text, inline, inline_text) in enumerate(
                cells, 1
            ):
                if letters:
                    column = columns_of[letters]
                    if digits != reference and int(digits) > last_row:
                        self._check_row(int(digits))
                else:
                    column += 1
                if column > max_columns or count > max_columns:
                    raise self._beyond_columns(letters, digits, column)
                value: object
                if not text:
                    value = None
                    if inline and kind == b"inlineStr":
                        value = _plain_text(inline_text)
                elif not kind or kind == b"n":
                    if style and int(style) in dates:
                        # Dates repeat (a day's samples): each text is converted once per style.
                        value = dates_read.get((text, style), dates_read)
                        if value is dates_read:
                            value = _date_of(_number(text), epoch, duration=int(style) in durations)
                            if len(dates_read) >= DATES_REMEMBERED:
                                dates_read.clear()
                            dates_read[text, style] = value
                    else:
                        value = float(text) if b"." in text or b"E" in text or b"e" in text else int(text)
                elif kind == b"s":
                    value = strings[int(text)]
                elif kind == b"b":
                    value = bool(int(text))
                elif kind == b"inlineStr":
                    value = None
                elif kind == b"d":
                    value = from_ISO8601(_plain_text(text))
                else:
                    value = _plain_text(text)
                if column == len(values) + 1:
                    values.append(value)
                else:
                    if column > len(values):
                        values.extend([None] * (column - len(values)))
                    values[column - 1] = value
            self.rows.append((number, values))
            self.completed = number

    def _beyond_columns(self, letters: bytes, digits: bytes, column: int) -> SheetError:
        place = f"Cell {letters.decode()}{digits.decode()}" if letters and column > self.max_columns else None
        return SheetError(
            "too_many_columns",
            f"{place or f'Row {self.number:,}'} is beyond column {self.max_columns:,}: a file may have at "
            f"most {self.max_columns:,} columns (MAX_UPLOAD_COLUMNS).",
        )

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.tags += 1
        depth = self.depth = self.depth + 1
        if depth > MAX_XML_DEPTH:
            raise too_deep()
        if self.values is None:
            if depth == 3 and self.in_data and name == ROW:
                self._start_row(attributes)
            elif depth == 2 and name == SHEET_DATA:
                self.in_data = True
            elif depth == 2 and name == DIMENSION:
                self.claimed_last_row = _claimed_last_row(attributes.get("ref", ""))
            return
        self.elements += 1
        if self.elements > MAX_ELEMENTS_PER_RECORD:
            raise SheetError("row_too_large", f"Row {self.number:,} has more parts than Excel writes.")
        if depth == 4:
            if name == CELL:
                self._start_cell(attributes)
        elif not self.in_cell:
            return
        elif depth == 5:
            if name == VALUE:
                self.text_parts, self.text_depth = [], depth
            elif name == INLINE_STRING:
                self.inline = []
        elif self.inline is not None and name == TEXT and (depth == 6 or (depth == 7 and self.run)):
            self.text_parts, self.text_depth = self.inline, depth
        elif depth == 6:
            self.run = name == RUN

    def end(self, name: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if self.values is None:
            if depth == 2 and name == SHEET_DATA:
                raise Done()  # the rest of the part (merged cells, page setup, ...) holds no value
            return
        if depth == self.text_depth:
            if self.text_parts is not self.inline:
                self.value = "".join(self.text_parts or ())
            self.text_parts, self.text_depth = None, 0
        elif depth == 4:
            if self.in_cell:
                self._end_cell()
        elif depth == 3:
            self.rows.append((self.number, self.values))
            self.values = None
            self.completed = self.number
            # Where this end tag would end were it `</row>`: feed() sees whether expat stands there.
            self.aligned_at = self.parser.CurrentByteIndex + len(_ROW_END)
        elif depth == 6:
            self.run = False

    def text(self, data: str) -> None:
        if self.text_parts is not None:
            self.text_parts.append(data)
            self.chars += len(data)
            if self.chars > MAX_ROW_CHARS:
                raise SheetError(
                    "row_too_large", f"Row {self.number:,} holds more than {MAX_ROW_CHARS:,} characters."
                )

    def damaged(self) -> SheetError:
        return damaged(after_row=self.completed)

    def _start_row(self, attributes: dict[str, str]) -> None:
        reference = attributes.get("r")
        self._enter_row(self.number + 1 if reference is None else _row_number(reference))
        self.values = []
        self.elements = self.chars = self.cells = self.column = 0

    def _enter_row(self, number: int) -> None:
        if number <= self.number:
            raise SheetError(
                "unreadable",
                f"The Excel workbook is damaged: row {number:,} comes after row {self.number:,}.",
            )
        self._check_row(number)
        self.number = number

    def _check_row(self, number: int) -> None:
        if number > self.last_row:
            raise SheetError(
                "too_many_rows",
                f"The workbook has a row {number:,}: a file may have at most {self.last_row - 1:,} rows "
                "besides its header row (MAX_UPLOAD_ROWS).",
            )

    def _start_cell(self, attributes: dict[str, str]) -> None:
        self.cells += 1
        reference = attributes.get("r")
        column = self.column + 1 if reference is None else self._column_of(reference)
        if column > self.max_columns or self.cells > self.max_columns:
            place = f"Cell {reference}" if reference and column > self.max_columns else f"Row {self.number:,}"
            raise SheetError(
                "too_many_columns",
                f"{place} is beyond column {self.max_columns:,}: a file may have at most "
                f"{self.max_columns:,} columns (MAX_UPLOAD_COLUMNS).",
            )
        self.column = column
        self.in_cell = True
        self.kind = attributes.get("t", "n")
        style = attributes.get("s")
        self.style = int(style) if style else 0
        self.value = self.inline = None
        self.run = False

    def _column_of(self, reference: str) -> int:
        match = _CELL_REFERENCE.match(reference)
        if match is None:
            raise self.damaged()
        letters, digits = match.groups()
        self._check_row(int(digits))  # the row of a cell's own reference is not trusted either
        return column_index_from_string(letters.upper())

    def _end_cell(self) -> None:
        self.in_cell = False
        value = self._value()
        values, column = self.values, self.column
        if column == len(values) + 1:
            values.append(value)
            return
        if column > len(values):
            values.extend([None] * (column - len(values)))
        values[column - 1] = value

    def _value(self) -> object:
        kind = self.kind
        if kind == "inlineStr":
            return "".join(self.inline) if self.inline is not None else None
        text = self.value
        if not text:
            return None
        if kind == "n":
            number = float(text) if "." in text or "E" in text or "e" in text else int(text)
            if self.style not in self.dates:
                return number
            return _date_of(number, self.epoch, duration=self.style in self.durations)
        if kind == "s":
            return self.strings[int(text)]
        if kind == "b":
            return bool(int(text))
        if kind == "d":
            return from_ISO8601(text)
        return text  # "str" (a formula's text), "e" (an error value such as #N/A)


def _claimed_last_row(ref: str) -> int | None:
    """The last row of a dimension's range ("A1:K1001" → 1001, "A1" → 1); None if it is not one."""
    match = _CELL_REFERENCE.match(ref.rpartition(":")[2][:20])
    return int(match.group(2)) if match is not None else None


def _row_number(reference: str) -> int:
    """A row's r attribute, as openpyxl reads it ("7", or "7.0" from some writers)."""
    try:
        number = int(reference)
    except ValueError:
        value = float(reference)
        if not value.is_integer():
            raise
        number = int(value)
    if number < 1:
        raise ValueError(reference)
    return number
