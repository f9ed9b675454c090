"""The parts of an XLSX workbook that its sheet's values depend on, read with expat, streaming.

The content types (which part is the workbook, which the shared strings), the workbook (its sheets, its
date system), the workbook's relationships (where each sheet is), the styles (which cell formats are
dates) and the shared strings (the texts cells refer to by number), each fed to expat by xlsx_xml.py;
xlsx_reading.py then reads the chosen worksheet with what they hold.

openpyxl's own reader is not used for that: it builds the whole shared strings table as Python strings
(~60 bytes an entry, +700 MB and a minute of CPU for a 1 MB file holding 5,000,000 entries) and an
object per style before the first row. Here a small part is refused past a size, the shared strings
table is counted before it is parsed and kept as UTF-8 in one buffer, and no entry may grow past a
bound.
"""

import posixpath
import zipfile
from array import array
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any

from openpyxl.packaging.relationship import get_rels_path
from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.datetime import CALENDAR_MAC_1904, WINDOWS_EPOCH
from openpyxl.xml.constants import (
    ARC_CONTENT_TYPES,
    ARC_STYLE,
    REL_NS,
    SHARED_STRINGS,
    XLSM,
    XLSX,
    XLTM,
    XLTX,
)

from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import MAX_ROW_CHARS
from src.sampleFileUpload.reading_errors import SheetError, check_deadline
from src.sampleFileUpload.xlsx_archive import DEFAULT_WORKBOOK_PART, macros_refused
from src.sampleFileUpload.xlsx_xml import (
    CELL_FORMAT,
    CELL_FORMATS,
    CONTENT_DEFAULT,
    CONTENT_OVERRIDE,
    MAX_ELEMENTS_PER_RECORD,
    MAX_XML_DEPTH,
    NUMBER_FORMAT,
    NUMBER_FORMATS,
    RELATIONSHIP,
    RELATIONSHIP_ID,
    RUN,
    SHEET,
    STRING_ENTRY,
    TEXT,
    WORKBOOK_PROPERTIES,
    Handler,
    damaged,
    fed,
    member_chunks,
    too_deep,
)

# The parts read whole besides the sheet and the shared strings (content types, workbook, its
# relationships, styles): a few KB in Excel's files, a few MB in the most bloated ones.
MAX_XLSX_PART_BYTES = 16 * 1024**2
MAX_SHEETS = 4_096
# Excel allows 64,000 cell formats in a workbook.
MAX_CELL_FORMATS = 65_536
# How much of the shared strings table the quick count reads at a time.
SCAN_CHUNK_BYTES = 1024**2
# In openpyxl's order of preference (the macro-enabled ones are refused before this is used).
WORKBOOK_TYPES = (XLTM, XLTX, XLSM, XLSX)
WORKSHEET_RELATIONSHIP = REL_NS + "/worksheet"
SAMPLES_SHEET_NAME = "samples"


# ---------------------------------------------------------------------------------------------
# Content types, workbook, relationships, styles


def _read_whole(archive: zipfile.ZipFile, part: str, handler: Handler, deadline: float | None) -> None:
    """A small part of the workbook, read through (a part it names but lacks means it is damaged)."""
    info = _member(archive, part)
    if info is None:
        raise damaged()
    if info.file_size > MAX_XLSX_PART_BYTES:
        raise SheetError(
            "unreadable",
            f"A part of the workbook is {info.file_size / 1024**2:,.0f} MB once uncompressed, far more "
            "than a spreadsheet program writes there.",
        )
    for _ in fed(archive, part, handler, deadline):
        pass


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(name)
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class Workbook:
    sheet_part: str
    strings_part: str | None
    epoch: Any  # the datetime day 0 of the workbook's date serials


def workbook_of(archive: zipfile.ZipFile, deadline: float | None) -> Workbook:
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
            raise damaged()
        kind, target = relationship
        if kind == WORKSHEET_RELATIONSHIP and target in names:
            parts.append((title, target))
    if not parts:
        raise SheetError("empty", "The workbook has no worksheet.")
    chosen = next(
        (part for title, part in parts if title.strip().casefold() == SAMPLES_SHEET_NAME), parts[0][1]
    )
    epoch = CALENDAR_MAC_1904 if sheets.date1904 else WINDOWS_EPOCH
    return Workbook(sheet_part=chosen, strings_part=types.strings_part, epoch=epoch)


class _ContentTypes(Handler):
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
        raise damaged()


class _Sheets(Handler):
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


class _Relationships(Handler):
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
class DateStyles:
    """The cell formats (indexes of cellXfs) whose number format shows a date, or a duration."""

    dates: frozenset[int] = frozenset()
    durations: frozenset[int] = frozenset()


def date_styles(archive: zipfile.ZipFile, deadline: float | None) -> DateStyles:
    if _member(archive, ARC_STYLE) is None:
        return DateStyles()  # openpyxl reads no dates then either
    styles = _Styles()
    _read_whole(archive, ARC_STYLE, styles, deadline)
    dates, durations = set(), set()
    for index, format_id in enumerate(styles.cell_formats):
        code = styles.number_formats.get(format_id, BUILTIN_FORMATS.get(format_id))
        if is_date_format(code):
            dates.add(index)
        if is_timedelta_format(code):
            durations.add(index)
    return DateStyles(frozenset(dates), frozenset(durations))


class _Styles(Handler):
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


def shared_strings(archive: zipfile.ZipFile, part: str | None, deadline: float | None) -> SharedStrings:
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
    for _ in fed(archive, info.filename, reader, deadline):
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
    for chunk in member_chunks(archive, info.filename, SCAN_CHUNK_BYTES, damaged):
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


class _StringsReader(Handler):
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
            raise too_deep()
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
