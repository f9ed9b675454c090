"""From an XLSX workbook to its rows, with work bounded by the limits and decided before it is done.

A workbook is a ZIP of XML parts, opened once xlsx_archive.py has checked it (not a bomb, an Excel
workbook, no macros). Then the parts a sheet's values depend on are read with expat, streaming: the
content types (which part is the workbook, which the shared strings), the workbook (its sheets, its
date system), the workbook's relationships (where each sheet is), the styles (which cell formats are
dates), the shared strings (the texts cells refer to by number) and the chosen worksheet, up to the
end of its rows.

openpyxl's own reader is not used for that: it builds the whole shared strings table as Python strings
(~60 bytes an entry, +700 MB and a minute of CPU for a 1 MB file holding 5,000,000 entries) and an
object per style before the first row, and its read-only worksheet fills a gap in the row numbers
with empty rows (a `<row r="1000000000000000">` after row 1 never ends). Here a row or cell beyond the
limits is refused at its start tag, the shared strings table is counted before it is parsed and kept
as UTF-8 in one buffer, and no tag, text, nesting or row may grow past a bound. openpyxl's conversions
of a cell's value (numbers, dates in the workbook's epoch, formats that are dates) are used as they are.
"""

import posixpath
import re
import zipfile
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate, chain, islice
from typing import Any, BinaryIO
from xml.parsers import expat

from openpyxl.packaging.relationship import get_rels_path
from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.cell import column_index_from_string, get_column_letter
from openpyxl.utils.datetime import CALENDAR_MAC_1904, WINDOWS_EPOCH, from_excel, from_ISO8601
from openpyxl.xml.constants import (
    ARC_CONTENT_TYPES,
    ARC_STYLE,
    CONTYPES_NS,
    PKG_REL_NS,
    REL_NS,
    SHARED_STRINGS,
    SHEET_MAIN_NS,
    XLSM,
    XLSX,
    XLTM,
    XLTX,
)

from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import MAX_ROW_CHARS
from src.sampleFileUpload.reading_errors import SheetError, check_deadline
from src.sampleFileUpload.xlsx_archive import DEFAULT_WORKBOOK_PART, macros_refused, opened_workbook

# The parts read whole besides the sheet and the shared strings (content types, workbook, its
# relationships, styles): a few KB in Excel's files, a few MB in the most bloated ones.
MAX_XLSX_PART_BYTES = 16 * 1024**2
MAX_SHEETS = 4_096
# Excel allows 64,000 cell formats in a workbook.
MAX_CELL_FORMATS = 65_536
# The XML is fed to expat in chunks. Between two tags there may be at most this much of it (a text,
# an attribute, a comment): expat keeps an unfinished one in memory whole.
XML_CHUNK_BYTES = 64 * 1024
MAX_XML_TOKEN_BYTES = 1024**2
# Spreadsheet XML nests 7 deep (worksheet, sheetData, row, c, is, r, t); expat keeps every open one.
MAX_XML_DEPTH = 64
# Elements within one row, or one shared string (a rich text has a dozen per run of formatting).
MAX_ELEMENTS_PER_RECORD = 20_000
# How much of the shared strings table the quick count reads at a time.
SCAN_CHUNK_BYTES = 1024**2

_SEPARATOR = "}"  # expat reports a namespaced name as "<namespace>}<name>"
_MAIN = SHEET_MAIN_NS + _SEPARATOR
SHEET_DATA, ROW, CELL, VALUE, INLINE_STRING = (_MAIN + name for name in ("sheetData", "row", "c", "v", "is"))
TEXT, RUN, STRING_ENTRY = _MAIN + "t", _MAIN + "r", _MAIN + "si"
DIMENSION = _MAIN + "dimension"
CELL_FORMATS, CELL_FORMAT, NUMBER_FORMATS, NUMBER_FORMAT = (
    _MAIN + name for name in ("cellXfs", "xf", "numFmts", "numFmt")
)
WORKBOOK_PROPERTIES, SHEET = _MAIN + "workbookPr", _MAIN + "sheet"
RELATIONSHIP_ID = REL_NS + _SEPARATOR + "id"
RELATIONSHIP = PKG_REL_NS + _SEPARATOR + "Relationship"
CONTENT_DEFAULT = CONTYPES_NS + _SEPARATOR + "Default"
CONTENT_OVERRIDE = CONTYPES_NS + _SEPARATOR + "Override"
# In openpyxl's order of preference (the macro-enabled ones are refused before this is used).
WORKBOOK_TYPES = (XLTM, XLTX, XLSM, XLSX)
WORKSHEET_RELATIONSHIP = REL_NS + "/worksheet"
SAMPLES_SHEET_NAME = "samples"
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
        book = _workbook_of(archive, deadline)
        styles = _date_styles(archive, deadline)
        strings = _shared_strings(archive, book.strings_part, deadline)
        reader = _SheetReader(
            strings=strings,
            styles=styles,
            epoch=book.epoch,
            max_rows=max_rows,
            max_columns=max_columns,
        )
        yield WorkbookRows(_sheet_rows(archive, book.sheet_part, reader, deadline), reader)


def _damaged(after_row: int = 0) -> SheetError:
    where = f" after row {after_row:,}" if after_row else ""
    return SheetError("unreadable", f"The Excel workbook is damaged{where} and cannot be read.")


# ---------------------------------------------------------------------------------------------
# Feeding a part's XML to expat


class _Done(Exception):
    """Raised by a handler that has read all it needs of its part."""


class _Handler:
    """Receives one part's elements from expat. The sheet and shared strings handlers, which see
    millions of elements, keep `tags` and `depth` in their own start and end; the small parts'
    handlers get that here and implement `element`."""

    def __init__(self) -> None:
        # Elements started so far: how _fed sees that the XML moves on (between two starts there are
        # at most MAX_XML_DEPTH ends, and the text and tags _fed bounds).
        self.tags = 0
        self.depth = 0

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.tags += 1
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise _too_deep()
        self.element(self.depth, name, attributes)

    def end(self, _name: str) -> None:
        self.depth -= 1

    def text(self, data: str) -> None:
        pass

    def prepare(self, parser: Any) -> None:
        """Sets any further handlers on the part's parser before it reads anything."""

    def feed(self, parser: Any, chunk: bytes, final: bool) -> None:
        parser.Parse(chunk, final)

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        raise NotImplementedError

    def damaged(self) -> SheetError:
        return _damaged()


def _fed(archive: zipfile.ZipFile, part: str, handler: _Handler, deadline: float | None) -> Iterator[None]:
    """Feeds a part to expat a chunk at a time, yielding after each one (the handler then holds what
    the chunk had). A failure inside a chunk is raised after that chunk's yield, so that what came
    before it is taken first. A DOCTYPE is refused (no workbook has one; entity tricks start there)."""
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.buffer_text = True
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.text
    parser.StartDoctypeDeclHandler = _refuse_doctype
    handler.prepare(parser)
    without_tags = 0
    for chunk in chain(_member_chunks(archive, part, XML_CHUNK_BYTES, handler.damaged), (b"",)):
        check_deadline(deadline)
        tags = handler.tags
        failure: SheetError | None = None
        try:
            handler.feed(parser, chunk, not chunk)
        except _Done:
            yield
            return
        except SheetError as error:
            failure = error
        except Exception:  # expat's errors, and a value expat passed that does not convert
            failure = handler.damaged()
        without_tags = without_tags + len(chunk) if handler.tags == tags else 0
        if failure is None and without_tags > MAX_XML_TOKEN_BYTES:
            failure = SheetError(
                "unreadable",
                f"The workbook's XML has more than {MAX_XML_TOKEN_BYTES / 1024**2:g} MB in one text, tag "
                "or comment: it is damaged or was not written by a spreadsheet program.",
            )
        yield
        if failure is not None:
            raise failure


def _member_chunks(
    archive: zipfile.ZipFile, part: str, size: int, damaged: Callable[[], SheetError]
) -> Iterator[bytes]:
    """A member's bytes, decompressed a chunk at a time. One that does not decompress (corrupt data,
    a wrong CRC, an encrypted member, a method zipfile lacks) makes the workbook damaged."""
    try:
        with archive.open(part) as stream:
            while chunk := stream.read(size):
                yield chunk
    except Exception:  # zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError...
        raise damaged() from None


def _read_whole(archive: zipfile.ZipFile, part: str, handler: _Handler, deadline: float | None) -> None:
    """A small part of the workbook, read through (a part it names but lacks means it is damaged)."""
    info = _member(archive, part)
    if info is None:
        raise _damaged()
    if info.file_size > MAX_XLSX_PART_BYTES:
        raise SheetError(
            "unreadable",
            f"A part of the workbook is {info.file_size / 1024**2:,.0f} MB once uncompressed, far more "
            "than a spreadsheet program writes there.",
        )
    for _ in _fed(archive, part, handler, deadline):
        pass


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(name)
    except KeyError:
        return None


def _refuse_doctype(*_args: object) -> None:
    raise SheetError(
        "unreadable", "The workbook's XML declares a DOCTYPE, which no spreadsheet program writes."
    )


def _too_deep() -> SheetError:
    return SheetError("unreadable", f"The workbook's XML nests deeper than {MAX_XML_DEPTH} elements.")


# ---------------------------------------------------------------------------------------------
# Content types, workbook, relationships, styles


@dataclass(frozen=True, slots=True)
class _Workbook:
    sheet_part: str
    strings_part: str | None
    epoch: Any  # the datetime day 0 of the workbook's date serials


def _workbook_of(archive: zipfile.ZipFile, deadline: float | None) -> _Workbook:
    types = _ContentTypes()
    _read_whole(archive, ARC_CONTENT_TYPES, types, deadline)
    if types.macros:
        raise macros_refused()
    workbook_part = types.workbook_part()
    sheets = _Sheets()
    _read_whole(archive, workbook_part, sheets, deadline)
    relationships = _Relationships(wanted={sheet_id for _title, sheet_id in sheets.sheets})
    _read_whole(archive, get_rels_path(workbook_part), relationships, deadline)
    names = set(archive.namelist())
    parts = []
    for title, sheet_id in sheets.sheets:
        relationship = relationships.found.get(sheet_id)
        if relationship is None:
            raise _damaged()
        kind, target = relationship
        if kind == WORKSHEET_RELATIONSHIP and target in names:
            parts.append((title, target))
    if not parts:
        raise SheetError("empty", "The workbook has no worksheet.")
    chosen = next(
        (part for title, part in parts if title.strip().casefold() == SAMPLES_SHEET_NAME), parts[0][1]
    )
    epoch = CALENDAR_MAC_1904 if sheets.date1904 else WINDOWS_EPOCH
    return _Workbook(sheet_part=chosen, strings_part=types.strings_part, epoch=epoch)


class _ContentTypes(_Handler):
    """[Content_Types].xml: whether anything is macro-enabled, which part is the workbook (as openpyxl
    finds it) and which the shared strings table."""

    def __init__(self) -> None:
        super().__init__()
        self.macros = False
        self.overrides: dict[str, str] = {}  # workbook type → part, the first of each
        self.default_workbook = False
        self.strings_part: str | None = None

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        if depth != 2:
            return
        content_type = attributes.get("ContentType", "")
        if "macroenabled" in content_type.lower():
            self.macros = True
        if name == CONTENT_DEFAULT and content_type in WORKBOOK_TYPES:
            self.default_workbook = True
        elif name == CONTENT_OVERRIDE:
            part = attributes.get("PartName", "").removeprefix("/")
            if content_type in WORKBOOK_TYPES:
                self.overrides.setdefault(content_type, part)
            elif content_type == SHARED_STRINGS and self.strings_part is None:
                self.strings_part = part

    def workbook_part(self) -> str:
        for content_type in WORKBOOK_TYPES:
            if content_type in self.overrides:
                return self.overrides[content_type]
        if self.default_workbook:
            return DEFAULT_WORKBOOK_PART
        raise _damaged()


class _Sheets(_Handler):
    """The workbook part: its sheets in order (name, relationship id), and its date system."""

    def __init__(self) -> None:
        super().__init__()
        self.sheets: list[tuple[str, str]] = []
        self.date1904 = False

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        if depth == 3 and name == SHEET:
            sheet_id = attributes.get(RELATIONSHIP_ID)
            if sheet_id:  # openpyxl skips a sheet without one
                if len(self.sheets) >= MAX_SHEETS:
                    raise SheetError("unreadable", f"The workbook has more than {MAX_SHEETS:,} sheets.")
                self.sheets.append((attributes.get("name", ""), sheet_id))
        elif depth == 2 and name == WORKBOOK_PROPERTIES:
            self.date1904 = attributes.get("date1904", "").lower() in ("1", "true")


class _Relationships(_Handler):
    """The workbook's relationships: type and part of those it wants (its sheets), resolved as
    openpyxl resolves them (relative to the workbook's folder, or from the root when absolute)."""

    def __init__(self, *, wanted: set[str]) -> None:
        super().__init__()
        self.wanted = wanted
        self.found: dict[str, tuple[str, str]] = {}

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        if depth != 2 or name != RELATIONSHIP or attributes.get("TargetMode") == "External":
            return
        relationship_id = attributes.get("Id", "")
        if relationship_id in self.wanted and relationship_id not in self.found:
            target = attributes.get("Target", "")
            part = target[1:] if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
            self.found[relationship_id] = (attributes.get("Type", ""), part)


@dataclass(frozen=True, slots=True)
class _DateStyles:
    """The cell formats (indexes of cellXfs) whose number format shows a date, or a duration."""

    dates: frozenset[int] = frozenset()
    durations: frozenset[int] = frozenset()


def _date_styles(archive: zipfile.ZipFile, deadline: float | None) -> _DateStyles:
    if _member(archive, ARC_STYLE) is None:
        return _DateStyles()  # openpyxl reads no dates then either
    styles = _Styles()
    _read_whole(archive, ARC_STYLE, styles, deadline)
    dates, durations = set(), set()
    for index, format_id in enumerate(styles.cell_formats):
        code = styles.number_formats.get(format_id, BUILTIN_FORMATS.get(format_id))
        if is_date_format(code):
            dates.add(index)
        if is_timedelta_format(code):
            durations.add(index)
    return _DateStyles(frozenset(dates), frozenset(durations))


class _Styles(_Handler):
    """styles.xml: each cell format's number format id, and the workbook's own number formats."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.cell_formats: list[int] = []
        self.number_formats: dict[int, str] = {}

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        if depth == 2:
            self.section = name
        elif depth == 3 and self.section == CELL_FORMATS and name == CELL_FORMAT:
            if len(self.cell_formats) >= MAX_CELL_FORMATS:
                raise SheetError("unreadable", "The workbook has more cell formats than Excel allows.")
            self.cell_formats.append(int(attributes.get("numFmtId", 0)))
        elif depth == 3 and self.section == NUMBER_FORMATS and name == NUMBER_FORMAT:
            if len(self.number_formats) >= MAX_CELL_FORMATS:
                raise SheetError("unreadable", "The workbook has more number formats than Excel allows.")
            self.number_formats[int(attributes["numFmtId"])] = attributes.get("formatCode", "")


# ---------------------------------------------------------------------------------------------
# Shared strings


class SharedStrings:
    """The workbook's shared strings as UTF-8 in one buffer, with where each ends: about a byte a
    character and 4 an entry, where a list of str costs ~60 bytes an entry (measured: 2,000,000
    entries of 8 characters take 26 MB here, 126 MB as a list)."""

    __slots__ = ("_ends", "_text")

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends = array("I")  # < 4 GiB: the table is bounded far below that

    def extend(self, texts: list[str]) -> None:
        """Adds entries a batch at a time: the per-entry work is C loops, not Python calls."""
        encoded = [text.encode() for text in texts]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=len(self._text)), 1, None))
        self._text += b"".join(encoded)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        if index < 0:
            raise IndexError(index)
        start = self._ends[index - 1] if index else 0
        return self._text[start : self._ends[index]].decode()


def _shared_strings(archive: zipfile.ZipFile, part: str | None, deadline: float | None) -> SharedStrings:
    """The table, refused before it is parsed when the ZIP directory or a quick count of its
    entries shows it beyond MAX_XLSX_SHARED_STRINGS(_MB); the parser counts them again."""
    table = SharedStrings()
    info = _member(archive, part) if part else None
    if info is None:
        return table  # a cell that refers to it is then damaged
    max_entries = upload_settings.MAX_XLSX_SHARED_STRINGS
    max_bytes = upload_settings.max_xlsx_shared_strings_bytes
    if info.file_size > max_bytes:
        raise _table_too_large(
            f"is {info.file_size / 1024**2:,.0f} MB once uncompressed", max_entries, max_bytes
        )
    if _counted_entries(archive, info, stop_after=max_entries, deadline=deadline) > max_entries:
        raise _table_too_large(f"has more than {max_entries:,} entries", max_entries, max_bytes)
    reader = _StringsReader(table, max_entries=max_entries)
    for _ in _fed(archive, info.filename, reader, deadline):
        pass
    reader.flush()
    return table


def _counted_entries(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, stop_after: int, deadline: float | None
) -> int:
    """The entries (<si> start tags) of the table, counted in its bytes as they are decompressed;
    stops once past `stop_after`. A tag with a namespace prefix is not counted (no program writes
    one there): the parser still counts every entry."""
    count = 0
    tail = b""
    for chunk in _member_chunks(archive, info.filename, SCAN_CHUNK_BYTES, _damaged):
        check_deadline(deadline)
        window = tail + chunk
        count += window.count(b"<si>") + window.count(b"<si ") + window.count(b"<si/")
        if count > stop_after:
            break
        tail = window[-3:]  # a tag split between chunks (a tag is 4 bytes, so none is counted twice)
    return count


def _table_too_large(what: str, max_entries: int, max_bytes: int) -> SheetError:
    return SheetError(
        "strings_table_too_large",
        f"The workbook's shared strings table {what}: at most {max_entries:,} entries and "
        f"{max_bytes // 1024**2:,} MB are read (MAX_XLSX_SHARED_STRINGS, MAX_XLSX_SHARED_STRINGS_MB).",
    )


class _StringsReader(_Handler):
    """sharedStrings.xml, entry by entry into the table. An entry's text is its <t>, or the <t> of
    each run of a rich text; a phonetic guide's (<rPh>) is not part of it, as in openpyxl.

    Up to MAX_XLSX_SHARED_STRINGS entries go through here (five expat calls each): start and end
    test the most frequent cases first, and entries reach the table in batches (see `flush`)."""

    BATCH = 4_096

    def __init__(self, table: SharedStrings, *, max_entries: int) -> None:
        super().__init__()
        self.table = table
        self.max_entries = max_entries
        self.entries = 0
        self.pending: list[str] = []  # entries read, not yet in the table
        self.parts: list[str] | None = None  # the open entry's texts
        self.text_parts: list[str] | None = None  # where character data goes now
        self.text_depth = 0
        self.run = False
        self.elements = 0
        self.chars = 0

    def start(self, name: str, _attributes: dict[str, str]) -> None:
        self.tags += 1
        depth = self.depth = self.depth + 1
        if depth == 2:
            if name == STRING_ENTRY:
                self.entries += 1
                if self.entries > self.max_entries:
                    raise _table_too_large(
                        f"has more than {self.max_entries:,} entries",
                        self.max_entries,
                        upload_settings.max_xlsx_shared_strings_bytes,
                    )
                self.parts = []
                self.elements = self.chars = 0
            return
        if depth > MAX_XML_DEPTH:
            raise _too_deep()
        parts = self.parts
        if parts is None:
            return
        self.elements += 1
        if self.elements > MAX_ELEMENTS_PER_RECORD:
            raise SheetError("unreadable", "A shared string of the workbook has more parts than Excel makes.")
        if name == TEXT and (depth == 3 or (depth == 4 and self.run)):
            self.text_parts = parts
            self.text_depth = depth
        elif depth == 3:
            self.run = name == RUN

    def end(self, _name: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if depth == self.text_depth:
            self.text_parts = None
            self.text_depth = 0
        elif depth == 2:
            if self.parts is not None:
                self.pending.append("".join(self.parts))
                self.parts = None
                if len(self.pending) >= self.BATCH:
                    self.flush()
        elif depth == 3:
            self.run = False

    def text(self, data: str) -> None:
        if self.text_parts is not None:
            self.text_parts.append(data)
            self.chars += len(data)
            if self.chars > MAX_ROW_CHARS:
                raise SheetError(
                    "row_too_large",
                    f"A shared string of the workbook is longer than {MAX_ROW_CHARS:,} characters.",
                )

    def flush(self) -> None:
        # openpyxl's way with the escaped underscore Excel writes as "_x005F_".
        self.table.extend([text.replace("x005F_", "") for text in self.pending])
        self.pending = []


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
    for _ in _fed(archive, part, reader, deadline):
        if reader.rows:
            rows, reader.rows = reader.rows, []
            yield from rows


class _SheetReader(_Handler):
    """A worksheet's rows as expat reports its elements; `rows` collects them until they are taken.

    A cell's value is converted as openpyxl's reader does with data_only (a formula's cached value):
    numbers (dates where the cell's format is one), shared and inline strings, booleans, ISO dates,
    error values and formula strings as their text.
    """

    def __init__(
        self, *, strings: SharedStrings, styles: _DateStyles, epoch: Any, max_rows: int, max_columns: int
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
            raise _too_deep()
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
                raise _Done()  # the rest of the part (merged cells, page setup, ...) holds no value
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
        return _damaged(after_row=self.completed)

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
