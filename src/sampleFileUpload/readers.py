"""From a stored sample file to its header and rows, streamed: CSV/TSV in any common encoding, XLSX.

The format is read from the content, never trusted from the client: a ZIP is checked as an XLSX
workbook (zip bomb, macros, not OOXML) before openpyxl opens it; an OLE2 file is a legacy .xls or
a password-protected workbook; anything else is text. The filename's extension is a hint and a
consistency check only: a .csv that holds a workbook, or a .xlsx that holds text, is refused.

Text encoding: UTF-8 (a BOM makes it "utf-8-sig"; a UTF-16 BOM is honoured too) is checked over the
WHOLE file in one cheap pass of an incremental decoder, before any row is parsed. A file that is
UTF-8 for 64 KB and Windows-1252 after that (an "é" in row 5,000) is then read as what it is,
instead of failing half way. Otherwise charset-normalizer guesses the encoding from a bounded
sample (the start of the file and the bytes around the first non-UTF-8 byte), Windows-1252 being
preferred when it reads the sample nearly as cleanly (what Excel on Windows saves; see
_guessed_encoding). The same pass refuses NUL characters, which no spreadsheet writes in text and
Python's csv module would let through. A binary file without NUL bytes decodes as some single-byte
code page: it is read, and its headers then match no field.

Rows are numbered as the user's editor shows them: every record counts (blank ones too, and a
quoted cell spanning three lines is still one row), the header is the first non-blank row.
"""

import codecs
import csv
import io
import re
import struct
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import openpyxl
from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from src.sampleFileUpload.constants import FORMULA_TRIGGERS, GUARD

# openpyxl (3.1, pinned) opens every read-only worksheet by scanning its XML for a <dimension>
# element, which Excel writes first but openpyxl's own write-only mode (our exports) never writes:
# such a sheet is parsed whole just to find none, before its rows are read (measured: 7,700 rows/s
# read instead of 9,800). The reader ignores the stored dimension anyway (reset_dimensions() in
# _xlsx_sheet: a wrong one would cut rows), so the worksheets are opened unsized.
ReadOnlyWorksheet._get_size = lambda _worksheet: None

# Bounds on what a ZIP may make us do before openpyxl sees it. An XLSX of 2,000,000 rows of ten
# columns is about 1.2 GB of XML; sheet XML compresses about 5-20:1 (measured on openpyxl's output),
# so a big member at 100:1 is a bomb, not a workbook.
MAX_XLSX_UNCOMPRESSED_BYTES = 2 * 1024**3
MAX_XLSX_COMPRESSION_RATIO = 100
RATIO_CHECKED_FROM_BYTES = 1024**2
# zipfile reads the whole central directory into objects on open: a 100 MB ZIP of a million empty
# members would cost far more memory than its size. A workbook has a few dozen members.
MAX_ZIP_MEMBERS = 10_000
MAX_CONTENT_TYPES_BYTES = 1024**2
# How much of a text file the encoding and delimiter are guessed from.
TEXT_SAMPLE_BYTES = 64 * 1024
DELIMITER_SAMPLE_CHARS = 16 * 1024
# How much worse than the detector's best guess Windows-1252 may read a sample and still be chosen
# (charset-normalizer's "mess ratio": the share of characters that look out of place).
WESTERN_MESS_TOLERANCE = 0.3
SCAN_CHUNK_BYTES = 1024**2

TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
XLSX_EXTENSION = ".xlsx"
DELIMITERS = ",;\t"
SAMPLES_SHEET_NAME = "samples"

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted OOXML workbook is an OLE2 file holding a stream of this name (MS-OFFCRYPTO).
ENCRYPTED_PACKAGE_NAME = "EncryptedPackage".encode("utf-16-le")
END_OF_CENTRAL_DIRECTORY = struct.Struct("<4s4H2LH")


class SheetError(ValueError):
    """Why a file cannot be read as a sheet, in one sentence a researcher can act on."""

    # code → True when the answer is 415 (a kind of file we do not take), False for 422.
    UNSUPPORTED: ClassVar[dict[str, bool]] = {
        "unsupported_format": True,
        "not_a_spreadsheet": True,
        "encrypted": True,
        "macros": True,
        "zip_bomb": False,
        "too_many_rows": False,
        "unreadable": False,
        "empty": False,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.unsupported = self.UNSUPPORTED[code]


@dataclass(frozen=True)
class Sheet:
    format: str
    encoding: str | None
    headers: list[str]
    rows: Iterator[tuple[int, list[object]]]
    # The header's row number: 1 unless blank lines come before it (an editor numbers those too).
    header_row: int = 1


@contextmanager
def open_sheet(path: Path, *, filename: str | None, max_rows: int) -> Iterator[Sheet]:
    """The sheet in the file at `path`; SheetError when it is not one we read.

    `filename` is the client's name for the file, used only to check it against the content.
    Iterating the rows raises SheetError("too_many_rows") past `max_rows` data rows, and
    SheetError("unreadable") if the file turns out to be damaged further on.
    """
    extension = _extension_of(filename)
    with path.open("rb") as file:
        magic = file.read(len(OLE2_MAGIC))
        file.seek(0)
        if not magic:
            raise SheetError("empty", "The file is empty.")
        if magic.startswith(OLE2_MAGIC):
            raise _legacy_office_error(file)
        if magic.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
            _check_claims_workbook(extension)
            check_xlsx_archive(file)
            file.seek(0)
            with _xlsx_sheet(file, max_rows=max_rows) as sheet:
                yield sheet
            return
        _check_claims_text(extension)
        with _text_sheet(file, extension=extension, max_rows=max_rows) as sheet:
            yield sheet


def _extension_of(filename: str | None) -> str | None:
    if not filename:
        return None
    extension = Path(filename.replace("\\", "/").replace("\x00", "")).suffix.lower()
    return extension or None


def _check_claims_workbook(extension: str | None) -> None:
    if extension == ".xlsm":
        raise SheetError("macros", "Macro-enabled workbooks (.xlsm) are refused: save the sheet as .xlsx.")
    if extension in TEXT_EXTENSIONS:
        raise SheetError(
            "not_a_spreadsheet",
            f"The file is named {extension} but holds a ZIP archive (such as an Excel workbook), not "
            "text: upload it as .xlsx or save it as CSV.",
        )
    _check_known_extension(extension)


def _check_claims_text(extension: str | None) -> None:
    if extension in (XLSX_EXTENSION, ".xlsm", ".xls"):
        raise SheetError(
            "not_a_spreadsheet",
            f"The file is named {extension} but is not an Excel workbook: its content is not a ZIP "
            "archive. If it is CSV text, name it .csv.",
        )
    _check_known_extension(extension)


def _check_known_extension(extension: str | None) -> None:
    if extension is not None and extension not in TEXT_EXTENSIONS and extension != XLSX_EXTENSION:
        raise SheetError(
            "unsupported_format",
            f"Files ending {extension} are not read: upload a .csv, .tsv or .xlsx file.",
        )


def _legacy_office_error(file: BinaryIO) -> SheetError:
    if _contains(file, ENCRYPTED_PACKAGE_NAME):
        return SheetError(
            "encrypted",
            "The workbook is password-protected: remove the password in Excel (File > Info > "
            "Protect Workbook) and upload it again.",
        )
    return SheetError(
        "unsupported_format",
        "The file is an Excel 97-2003 workbook (.xls), which is not read: save it as .xlsx or CSV.",
    )


def _contains(file: BinaryIO, needle: bytes) -> bool:
    """Whether `needle` occurs anywhere in the file, read in chunks (an OLE2 directory can be anywhere)."""
    tail = b""
    while chunk := file.read(SCAN_CHUNK_BYTES):
        if needle in tail + chunk[: len(needle)] or needle in chunk:
            return True
        tail = chunk[-len(needle) + 1 :]
    return False


# ---------------------------------------------------------------------------------------------
# XLSX


def check_xlsx_archive(file: BinaryIO) -> None:
    """Refuse a ZIP that is a bomb, bears macros or is not an Excel workbook; nothing is extracted.

    Member names are only compared, never used as paths. A member that lies about its size cannot
    get past this either: zipfile stops decompressing at the declared size.
    """
    _check_member_count(file)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise SheetError("unreadable", "The file looks like an Excel workbook but is damaged.") from None
    with archive:
        members = archive.infolist()
        _check_sizes(members)
        names = {member.filename.lower() for member in members}
        if "mimetype" in names and "content.xml" in names:
            raise SheetError(
                "unsupported_format",
                "OpenDocument spreadsheets (.ods) are not read: save the sheet as .xlsx or CSV.",
            )
        if "[content_types].xml" not in names or "xl/workbook.xml" not in names:
            raise SheetError("not_a_spreadsheet", "The file is a ZIP archive, not an Excel workbook (.xlsx).")
        if any(name.endswith("vbaproject.bin") for name in names) or _declares_macros(archive):
            raise SheetError("macros", "The workbook contains macros: save it as a plain .xlsx workbook.")


def _check_member_count(file: BinaryIO) -> None:
    # The end-of-central-directory record is in the last 22 bytes plus a comment of up to 64 KB.
    size = file.seek(0, io.SEEK_END)
    file.seek(max(0, size - END_OF_CENTRAL_DIRECTORY.size - 0xFFFF))
    tail = file.read()
    file.seek(0)
    at = tail.rfind(EMPTY_ZIP_MAGIC)
    if at < 0 or len(tail) - at < END_OF_CENTRAL_DIRECTORY.size:
        raise SheetError("unreadable", "The file looks like an Excel workbook but is damaged.")
    total_members = END_OF_CENTRAL_DIRECTORY.unpack_from(tail, at)[4]
    # 0xFFFF means the count is in a ZIP64 record: a workbook never needs one.
    if total_members > MAX_ZIP_MEMBERS:
        raise SheetError("zip_bomb", "The archive has too many members to be a workbook.")


def _check_sizes(members: Iterable[zipfile.ZipInfo]) -> None:
    total = 0
    for member in members:
        total += member.file_size
        if (
            member.file_size >= RATIO_CHECKED_FROM_BYTES
            and member.file_size > MAX_XLSX_COMPRESSION_RATIO * max(member.compress_size, 1)
        ):
            raise SheetError(
                "zip_bomb", "The workbook is compressed far more than a real sheet could be (a zip bomb)."
            )
    if total > MAX_XLSX_UNCOMPRESSED_BYTES:
        raise SheetError("zip_bomb", "The workbook would be too large once uncompressed.")


def _declares_macros(archive: zipfile.ZipFile) -> bool:
    with archive.open("[Content_Types].xml") as content_types:
        declared = content_types.read(MAX_CONTENT_TYPES_BYTES)
    return b"macroenabled" in declared.lower()


@contextmanager
def _xlsx_sheet(file: BinaryIO, *, max_rows: int) -> Iterator[Sheet]:
    try:
        workbook = openpyxl.load_workbook(file, read_only=True, data_only=True, keep_links=False)
    except Exception:  # openpyxl raises many kinds on a malformed file; all mean "damaged"
        raise SheetError("unreadable", "The Excel workbook is damaged and cannot be read.") from None
    try:
        worksheet = _samples_worksheet(workbook)
        if worksheet is None:
            raise SheetError("empty", "The workbook has no worksheet.")
        # Writers that store a wrong dimension would get rows cut to it; read what is really there.
        worksheet.reset_dimensions()
        records = _xlsx_records(worksheet.iter_rows(min_row=1, values_only=True))
        yield _sheet_of("xlsx", None, records, max_rows=max_rows)
    finally:
        workbook.close()


def _samples_worksheet(workbook: openpyxl.Workbook):  # -> a read-only worksheet or None
    worksheets = workbook.worksheets
    for worksheet in worksheets:
        if worksheet.title.strip().casefold() == SAMPLES_SHEET_NAME:
            return worksheet
    return worksheets[0] if worksheets else None


def _xlsx_records(rows: Iterator[tuple[object, ...]]) -> Iterator[tuple[int, list[object]]]:
    number = 0
    try:
        for row in rows:
            number += 1
            yield number, list(row)
    except Exception:  # a damaged sheet XML fails while it is being parsed, row by row
        raise SheetError(
            "unreadable", f"The Excel workbook is damaged after row {number} and cannot be read."
        ) from None


# ---------------------------------------------------------------------------------------------
# CSV and TSV


@contextmanager
def _text_sheet(file: BinaryIO, *, extension: str | None, max_rows: int) -> Iterator[Sheet]:
    encoding = detect_encoding(file)
    file.seek(0)
    sample = _decoded_sample(file, encoding)
    file.seek(0)
    delimiter = detect_delimiter(sample, prefer_tab=extension == ".tsv")
    # newline="" hands line endings to the csv module, which keeps those inside quoted cells.
    with io.TextIOWrapper(file, encoding=encoding, newline="") as text:
        records = _csv_records(csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True))
        yield _sheet_of("tsv" if delimiter == "\t" else "csv", encoding, records, max_rows=max_rows)


def detect_encoding(file: BinaryIO) -> str:
    """The codec name the whole file decodes under; SheetError for NUL characters or no codec."""
    start = file.read(4)
    file.seek(0)
    if start.startswith(codecs.BOM_UTF8):
        candidate = "utf-8-sig"
    elif start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidate = "utf-16"
    else:
        candidate = "utf-8"
    bad_offset = _first_undecodable_offset(file, candidate)
    if bad_offset is None:
        return candidate
    file.seek(0)
    sample = file.read(TEXT_SAMPLE_BYTES)
    if bad_offset >= len(sample):
        file.seek(max(0, bad_offset - TEXT_SAMPLE_BYTES // 2))
        sample += b"\n" + file.read(TEXT_SAMPLE_BYTES)
    encoding = _guessed_encoding(sample)
    file.seek(0)
    if _first_undecodable_offset(file, encoding) is not None:
        raise SheetError(
            "unreadable",
            f"The file's text encoding could not be recognised (it is neither UTF-8 nor {encoding}): "
            "save it from your editor as CSV UTF-8.",
        )
    return encoding


def _guessed_encoding(sample: bytes) -> str:
    """charset-normalizer's guess, except that Windows-1252 wins when it reads the sample about as well.

    On the few accented letters of a typical sheet the detector cannot tell the Windows code pages
    apart (it reads "é à" as cp1250 as readily as cp1252), while Excel on Windows in Western
    locales saves cp1252; a Cyrillic or Japanese file read as cp1252 is a mess and loses.
    """
    best = from_bytes(sample).best()
    try:
        western_mess = mess_ratio(sample.decode("cp1252"), maximum_threshold=1.0)
    except UnicodeDecodeError:
        western_mess = None
    if western_mess is not None and western_mess <= (best.chaos if best else 0.0) + WESTERN_MESS_TOLERANCE:
        return "cp1252"
    if best is None:
        raise SheetError(
            "not_a_spreadsheet", "The file is neither text in a known encoding nor an Excel workbook."
        )
    return codecs.lookup(best.encoding).name


def _first_undecodable_offset(file: BinaryIO, encoding: str) -> int | None:
    """The byte offset at which decoding fails (about), else None; NUL characters are refused here."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    lines = 1
    while True:
        chunk = file.read(SCAN_CHUNK_BYTES)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            return offset + max(0, error.start)
        nul = text.find("\x00")
        if nul >= 0:
            raise SheetError(
                "unreadable",
                f"Line {lines + text.count(chr(10), 0, nul)} contains a NUL character: the file is "
                "binary or damaged, not CSV text.",
            )
        if not chunk:
            return None
        lines += text.count("\n")
        offset += len(chunk)


def _decoded_sample(file: BinaryIO, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)()
    return decoder.decode(file.read(TEXT_SAMPLE_BYTES))[:DELIMITER_SAMPLE_CHARS]


def detect_delimiter(sample: str, *, prefer_tab: bool = False) -> str:
    """`,` `;` or tab: csv.Sniffer's pick among those, else the one the header line has most of.

    The sample is cut to whole lines so that the Sniffer sees no truncated record.
    """
    lines = sample.splitlines()
    whole = "\n".join(lines[:-1]) if len(lines) > 1 and not sample.endswith(("\n", "\r")) else sample
    try:
        return csv.Sniffer().sniff(whole, delimiters=DELIMITERS).delimiter
    except csv.Error:
        pass
    header = next((line for line in lines if line.strip()), "")
    counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
    if prefer_tab and counts["\t"]:
        return "\t"
    best = max(DELIMITERS, key=counts.__getitem__)  # ties go to the first: `,`
    return best if counts[best] else ","


def _csv_records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[object]]]:
    number = 0
    try:
        for cells in reader:
            number += 1
            yield number, unguard_cells(cells)
    except csv.Error as error:
        raise SheetError("unreadable", f"Row {number + 1} cannot be read as CSV: {error}.") from None
    except UnicodeDecodeError:  # only if the file changed after its encoding was checked
        raise SheetError("unreadable", f"Row {number + 1} is not valid text.") from None


def unguard_cells(cells: list[str]) -> list[str]:
    """Cells with the writer's formula-injection guard taken off: "'-5" reads "-5" again."""
    if GUARD not in "".join(cells):  # one C-speed test for the rows (nearly all) without any
        return cells
    return [unguard_cell(cell) for cell in cells]


def unguard_cell(cell: str) -> str:
    if cell[:1] == GUARD and len(cell) > 1 and (cell[1] in FORMULA_TRIGGERS or cell[1] == GUARD):
        return cell[1:]
    return cell


# ---------------------------------------------------------------------------------------------
# Both


def _sheet_of(
    format_: str, encoding: str | None, records: Iterator[tuple[int, list[object]]], *, max_rows: int
) -> Sheet:
    filled = (record for record in records if not _is_blank(record[1]))
    first = next(filled, None)
    if first is None:
        raise SheetError("empty", "The file has no header row: it is empty.")
    headers = _header_texts(first[1])
    return Sheet(
        format=format_,
        encoding=encoding,
        headers=headers,
        header_row=first[0],
        rows=_data_rows(filled, width=len(headers), max_rows=max_rows),
    )


def _is_blank(cells: list[object]) -> bool:
    # A loop that stops at the first filled cell: in a data row that is nearly always the first one.
    for cell in cells:
        if cell is not None and (cell.__class__ is not str or (cell and not cell.isspace())):
            return False
    return True


def _header_texts(cells: list[object]) -> list[str]:
    texts = ["" if cell is None else _cell_text(cell).strip() for cell in cells]
    # Excel often saves formatted but empty columns after the last header.
    while texts and not texts[-1]:
        texts.pop()
    return texts


def _cell_text(cell: object) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _data_rows(
    records: Iterator[tuple[int, list[object]]], *, width: int, max_rows: int
) -> Iterator[tuple[int, list[object]]]:
    """Rows padded with None to the header's width; empty cells past it dropped, others kept."""
    for count, (number, cells) in enumerate(records, start=1):
        if count > max_rows:
            raise SheetError("too_many_rows", f"The file has more than {max_rows:,} data rows.")
        if len(cells) < width:
            cells.extend([None] * (width - len(cells)))
        elif len(cells) > width:
            while len(cells) > width and _is_blank(cells[-1:]):
                cells.pop()
        yield number, cells


_HEADER_UNIT = re.compile(r"^(?P<name>.*?)\s*\[\s*(?P<unit>[^\[\]]*?)\s*\]$", re.DOTALL)


def parse_header(text: str) -> tuple[str, str | None]:
    """A header's field name and unit: "Volume [ mL ]" → ("Volume", "mL"); no brackets → no unit."""
    text = text.strip()
    match = _HEADER_UNIT.match(text)
    if match is None or not match.group("name"):
        return text, None
    return match.group("name"), match.group("unit") or None
