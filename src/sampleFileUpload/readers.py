"""From a stored sample file to its header and rows, streamed: CSV/TSV in any common encoding, XLSX.

The format is read from the content, never trusted from the client: a ZIP is read as an XLSX workbook
(xlsx_archive.py checks it is not a bomb, macro-enabled or no workbook first); an OLE2 file is a legacy
.xls or a password-protected workbook; anything else is text. The filename's extension is a hint and a
consistency check only: a .csv that holds a workbook, or a .xlsx that holds text, is refused.

Text encoding: UTF-8 (a BOM makes it "utf-8-sig"; a UTF-16 BOM is honoured too) is checked over the
WHOLE file in one cheap pass of an incremental decoder, before any row is parsed. A file that is not
UTF-8 is read in a legacy encoding only when it is not UTF-8 at all: when its bytes that are not UTF-8
outnumber its well-formed multi-byte UTF-8 characters (a Windows code page makes a few of those by
chance: „Groß“ ends in DF 93, a UTF-8 letter). Otherwise it is UTF-8 with damaged bytes, and is
refused ("invalid_encoding", naming the first bad line) instead of being read as mojibake; so is any
bad byte after a UTF-8 BOM. The legacy encoding is guessed by charset-normalizer from a bounded sample
(the start of the file and the bytes around the first non-UTF-8 byte), Windows-1252 being preferred
when it reads the sample nearly as cleanly (what Excel on Windows saves; see _guessed_encoding). The
same pass refuses NUL characters, which no spreadsheet writes in text and Python's csv module would
let through. A binary file without NUL bytes decodes as some single-byte code page: it is read, and
its headers then match no field.

Bounded work: every row read counts toward max_rows (blank ones too, also above the header), a row of
more than max_columns cells is refused (the header is the first row checked), a CSV record is read a
line at a time and refused past MAX_ROW_CHARS before the csv module builds it, and the delimiter is
found on a bounded prefix by a linear count. Reading stops with TimeLimitReached once the deadline
given to open_sheet has passed.

Rows are numbered as the user's editor shows them: every record counts (blank ones too, and a
quoted cell spanning three lines is still one row), the header is the first non-blank row.
"""

import codecs
import csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TextIO

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

from src.sampleFileUpload import xlsx_reading
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import FORMULA_TRIGGERS, GUARD, HEADER_MAX_LENGTH, MAX_ROW_CHARS
from src.sampleFileUpload.reading_errors import SheetError, TimeLimitReached, check_deadline

__all__ = ["Sheet", "SheetError", "TimeLimitReached", "detect_delimiter", "open_sheet", "parse_header"]

# How much of a text file the encoding and delimiter are guessed from.
TEXT_SAMPLE_BYTES = 64 * 1024
DELIMITER_SAMPLE_CHARS = 16 * 1024
# The records of that sample the delimiter is judged on.
DELIMITER_SAMPLE_RECORDS = 50
# How much worse than the detector's best guess Windows-1252 may read a sample and still be chosen
# (charset-normalizer's "mess ratio": the share of characters that look out of place).
WESTERN_MESS_TOLERANCE = 0.3
SCAN_CHUNK_BYTES = 1024**2
# Rows read between two looks at the clock (a look costs ~50 ns; 256 rows at least ~50 us).
DEADLINE_EVERY_ROWS = 256

TEXT_EXTENSIONS = frozenset({".csv", ".tsv", ".txt"})
XLSX_EXTENSION = ".xlsx"
DELIMITERS = ",;\t"

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted OOXML workbook is an OLE2 file holding a stream of this name (MS-OFFCRYPTO).
ENCRYPTED_PACKAGE_NAME = "EncryptedPackage".encode("utf-16-le")


@dataclass(frozen=True)
class Sheet:
    format: str
    encoding: str | None
    headers: list[str]
    rows: Iterator[tuple[int, list[object]]]
    # The header's row number: 1 unless blank lines come before it (an editor numbers those too).
    header_row: int = 1
    # A CSV or TSV file's delimiter (which decides its default decimal mark); None for a workbook.
    delimiter: str | None = None
    # Blocking: the rows after the header row the file has (blank ones too) as far as it can be told
    # cheaply, at most max_rows; None when it cannot (see data_rows_of_workbook, data_rows_of_text).
    # For showing an import's progress only: the rows read decide everything else.
    data_rows_claimed: Callable[[], int | None] = lambda: None


@contextmanager
def open_sheet(
    path: Path,
    *,
    filename: str | None,
    max_rows: int,
    max_columns: int | None = None,
    deadline: float | None = None,
) -> Iterator[Sheet]:
    """The sheet in the file at `path`; SheetError when it is not one we read.

    `filename` is the client's name for the file, used only to check it against the content.
    A file may have `max_rows` rows besides its header row (blank rows count too) and rows of at most
    `max_columns` cells (MAX_UPLOAD_COLUMNS when not given); past either, opening or iterating the
    rows raises SheetError ("too_many_rows", "too_many_columns"), as it does ("unreadable") if the
    file turns out to be damaged further on. Past `deadline` (a time.monotonic() instant), opening
    or iterating raises TimeLimitReached.
    """
    if max_columns is None:
        max_columns = upload_settings.MAX_UPLOAD_COLUMNS
    check_deadline(deadline)
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
            with xlsx_reading.workbook_records(
                file, max_rows=max_rows, max_columns=max_columns, deadline=deadline
            ) as workbook:
                sheet = _sheet_of("xlsx", None, workbook.rows, max_rows=max_rows, deadline=deadline)
                claimed = workbook.claimed_last_row()  # read with the header row: it comes before
                yield dataclasses.replace(
                    sheet, data_rows_claimed=lambda: _rows_after(sheet.header_row, claimed, max_rows)
                )
            return
        _check_claims_text(extension)
        with _text_sheet(
            file, extension=extension, max_rows=max_rows, max_columns=max_columns, deadline=deadline
        ) as sheet:
            yield dataclasses.replace(
                sheet, data_rows_claimed=lambda: _counted_data_rows(path, sheet, max_rows, deadline)
            )


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
# CSV and TSV


@contextmanager
def _text_sheet(
    file: BinaryIO, *, extension: str | None, max_rows: int, max_columns: int, deadline: float | None
) -> Iterator[Sheet]:
    encoding = detect_encoding(file, deadline=deadline)
    file.seek(0)
    sample = _decoded_sample(file, encoding)
    file.seek(0)
    delimiter = detect_delimiter(sample, prefer_tab=extension == ".tsv")
    # newline="" hands line endings to the csv module, which keeps those inside quoted cells.
    with io.TextIOWrapper(file, encoding=encoding, newline="") as text:
        records = _csv_records(text, delimiter, max_columns=max_columns)
        sheet = _sheet_of(
            "tsv" if delimiter == "\t" else "csv", encoding, records, max_rows=max_rows, deadline=deadline
        )
        yield dataclasses.replace(sheet, delimiter=delimiter)


def detect_encoding(file: BinaryIO, *, deadline: float | None = None) -> str:
    """The codec name the whole file decodes under; SheetError for NUL characters, for UTF-8 with
    damaged bytes ("invalid_encoding") or for no codec at all."""
    start = file.read(4)
    file.seek(0)
    if start.startswith(codecs.BOM_UTF8):
        candidate = "utf-8-sig"
    elif start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidate = "utf-16"
    else:
        candidate = "utf-8"
    bad_offset = _first_undecodable_offset(file, candidate, deadline)
    if bad_offset is None:
        return candidate
    if candidate != "utf-16" and (candidate == "utf-8-sig" or _mostly_utf8(file, deadline)):
        raise SheetError(
            "invalid_encoding",
            f"The file is UTF-8 text with bytes that are not UTF-8, the first on line "
            f"{_line_at(file, bad_offset):,} (damaged, or joined from files in different encodings): "
            "correct that line and upload the file again.",
        )
    file.seek(0)
    sample = file.read(TEXT_SAMPLE_BYTES)
    if bad_offset >= len(sample):
        file.seek(max(0, bad_offset - TEXT_SAMPLE_BYTES // 2))
        sample += b"\n" + file.read(TEXT_SAMPLE_BYTES)
    encoding = _guessed_encoding(sample)
    file.seek(0)
    if _first_undecodable_offset(file, encoding, deadline) is not None:
        raise SheetError(
            "unreadable",
            f"The file's text encoding could not be recognised (it is neither UTF-8 nor {encoding}): "
            "save it from your editor as CSV UTF-8.",
        )
    return encoding


def _mostly_utf8(file: BinaryIO, deadline: float | None) -> bool:
    """Whether the file has at least as many well-formed multi-byte UTF-8 characters as bytes that
    are not UTF-8: then it is UTF-8 with damaged bytes, not text in a legacy encoding (whose accents
    are nearly all malformed UTF-8, and only rarely a well-formed sequence by chance).

    One pass of C-speed codecs: the bad bytes decode to lone surrogates ("surrogateescape"), which
    UTF-8 re-encoding drops and ASCII encoding drops with every other non-ASCII character.
    """
    file.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    read_bytes = valid_bytes = non_ascii = 0
    while True:
        chunk = file.read(SCAN_CHUNK_BYTES)
        check_deadline(deadline)
        text = decoder.decode(chunk, final=not chunk)
        read_bytes += len(chunk)
        valid_bytes += len(text.encode("utf-8", "ignore"))
        non_ascii += len(text) - len(text.encode("ascii", "ignore"))
        if not chunk:
            break
    malformed = read_bytes - valid_bytes
    well_formed = non_ascii - malformed
    return well_formed >= malformed


def _line_at(file: BinaryIO, offset: int) -> int:
    """The line (counted from 1) holding the byte at `offset`."""
    file.seek(0)
    lines = 1
    while offset > 0:
        chunk = file.read(min(SCAN_CHUNK_BYTES, offset))
        if not chunk:
            break
        lines += chunk.count(b"\n")
        offset -= len(chunk)
    return lines


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


def _first_undecodable_offset(file: BinaryIO, encoding: str, deadline: float | None) -> int | None:
    """The byte offset at which decoding fails (about), else None; NUL characters are refused here."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    lines = 1
    while True:
        chunk = file.read(SCAN_CHUNK_BYTES)
        check_deadline(deadline)
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
    """`,` `;` or tab: the one that splits the sample's first records most often into as many cells
    as its header (the first non-blank record) has, and of those the one giving the header most
    cells; tab first in a .tsv; `,` when none gives the header two cells.

    One pass of csv.reader per candidate over a bounded sample: linear in the sample whatever it
    holds (csv.Sniffer's regexes took 1.2 s on a crafted 16 KB). The sample is cut to whole lines,
    so that no truncated record is judged.
    """
    lines = sample.splitlines(keepends=True)
    whole = "".join(lines[:-1]) if len(lines) > 1 and not sample.endswith(("\n", "\r")) else sample
    best, best_score = None, (False, 0.0, 0)
    for delimiter in DELIMITERS:
        widths = _record_widths(whole, delimiter)
        if not widths or widths[0] < 2:
            continue
        agreeing = sum(width == widths[0] for width in widths) / len(widths)
        score = (prefer_tab and delimiter == "\t", agreeing, widths[0])
        if score > best_score:  # a tie keeps the earlier candidate: `,` before `;` before tab
            best, best_score = delimiter, score
    return best or _most_frequent_delimiter(lines, prefer_tab=prefer_tab)


def _most_frequent_delimiter(lines: list[str], *, prefer_tab: bool) -> str:
    """For a sample no candidate splits into a header of two cells (one column, or only delimiters
    and spaces): the delimiter its first line with any text has most of, `,` when it has none."""
    header = next((line for line in lines if line.strip()), "")
    counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
    if prefer_tab and counts["\t"]:
        return "\t"
    most = max(DELIMITERS, key=counts.__getitem__)  # ties go to the first: `,`
    return most if counts[most] else ","


def _record_widths(text: str, delimiter: str) -> list[int]:
    """The cell counts of the first non-blank records of `text` split at `delimiter`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True)
    widths: list[int] = []
    try:
        for cells in islice(reader, DELIMITER_SAMPLE_RECORDS):
            if not _is_blank(cells):
                widths.append(len(cells))
    except csv.Error:  # a cell too long for the csv module: judged on the records before it
        pass
    return widths


class _RecordTooLong(Exception):
    pass


@dataclass(slots=True)
class _RecordLength:
    """The characters of the record being read so far (its lines, when quoted cells span several)."""

    chars: int = 0


def _bounded_lines(text: TextIO, record: _RecordLength) -> Iterator[str]:
    """The text's lines for csv.reader, each read with a length limit: a record may not take more
    than MAX_ROW_CHARS, so a line of a million commas is refused before it is a million cells."""
    readline = text.readline
    while True:
        line = readline(MAX_ROW_CHARS - record.chars + 1)
        if not line:
            return
        record.chars += len(line)
        if record.chars > MAX_ROW_CHARS:
            raise _RecordTooLong
        yield line


def _csv_records(text: TextIO, delimiter: str, *, max_columns: int) -> Iterator[tuple[int, list[object]]]:
    record = _RecordLength()
    reader = csv.reader(_bounded_lines(text, record), delimiter=delimiter, quotechar='"', doublequote=True)
    number = 0
    try:
        for cells in reader:
            number += 1
            record.chars = 0
            if len(cells) > max_columns:
                raise _too_many_columns(number, len(cells), max_columns)
            yield number, unguard_cells(cells)
    except csv.Error as error:
        raise SheetError("unreadable", f"Row {number + 1} cannot be read as CSV: {error}.") from None
    except UnicodeDecodeError:  # only if the file changed after its encoding was checked
        raise SheetError("unreadable", f"Row {number + 1} is not valid text.") from None
    except _RecordTooLong:
        raise SheetError(
            "row_too_large",
            f"Row {number + 1:,} is longer than {MAX_ROW_CHARS:,} characters, more than a row of samples "
            "holds.",
        ) from None


def _too_many_columns(row: int, cells: int, max_columns: int) -> SheetError:
    return SheetError(
        "too_many_columns",
        f"Row {row:,} has {cells:,} columns: a file may have at most {max_columns:,} (MAX_UPLOAD_COLUMNS), "
        "empty ones included.",
    )


def unguard_cells(cells: list[str]) -> list[str]:
    """Cells with the writer's formula-injection guard taken off: "'-5" reads "-5" again."""
    if GUARD not in "".join(cells):  # one C-speed test for the rows (nearly all) without any
        return cells
    return [unguard_cell(cell) for cell in cells]


def unguard_cell(cell: str) -> str:
    if cell[:1] == GUARD and len(cell) > 1 and (cell[1] in FORMULA_TRIGGERS or cell[1] == GUARD):
        return cell[1:]
    return cell


def _counted_data_rows(path: Path, sheet: Sheet, max_rows: int, deadline: float | None) -> int | None:
    """A text file's data rows (blank ones too) counted in one quick pass over its bytes (a few ms
    for 100,000 rows, against seconds for their import): None when its encoding does not write line
    ends and quotes as ASCII does (UTF-16), or its quotes do not pair up."""
    assert sheet.encoding is not None
    if not _LINE_END_AND_QUOTE.encode(sheet.encoding).endswith(_LINE_END_AND_QUOTE.encode("ascii")):
        return None
    with path.open("rb") as file:
        records = count_records(file, deadline=deadline)
    return _rows_after(sheet.header_row, records, max_rows)


_LINE_END_AND_QUOTE = '\r\n"'


def count_records(file: BinaryIO, *, deadline: float | None = None) -> int | None:
    """The CSV records in `file`: its line ends (CRLF, LF or a lone CR) outside quoted cells, and a
    last line without one. A line end inside quotes is a cell's: a cell `""` quotes nothing, so
    splitting at every quote leaves the text outside quotes in the even pieces. None when the quotes
    do not pair up (a quote inside an unquoted cell, which the CSV reader takes as text)."""
    records, quoted, last = 0, False, b""
    while chunk := file.read(SCAN_CHUNK_BYTES):
        check_deadline(deadline)
        while chunk.endswith(b"\r") and (more := file.read(1)):  # a CRLF is never split
            chunk += more
        pieces = chunk.split(b'"')
        for outside in pieces[1 if quoted else 0 :: 2]:
            records += outside.count(b"\n") + outside.count(b"\r") - outside.count(b"\r\n")
        quoted ^= (len(pieces) - 1) % 2 == 1
        last = chunk[-1:]
    if quoted:
        return None
    return records + (last not in (b"", b"\n", b"\r"))


def _rows_after(header_row: int, last_row: int | None, max_rows: int) -> int | None:
    return None if last_row is None else min(max(last_row - header_row, 0), max_rows)


# ---------------------------------------------------------------------------------------------
# Both


def _sheet_of(
    format_: str,
    encoding: str | None,
    records: Iterator[tuple[int, list[object]]],
    *,
    max_rows: int,
    deadline: float | None,
) -> Sheet:
    filled = (record for record in _counted(records, max_rows, deadline) if not _is_blank(record[1]))
    first = next(filled, None)
    if first is None:
        raise SheetError("empty", "The file has no header row: it is empty.")
    headers = _header_texts(first[1])
    return Sheet(
        format=format_,
        encoding=encoding,
        headers=headers,
        header_row=first[0],
        rows=_data_rows(filled, width=len(headers)),
    )


def _counted(
    records: Iterator[tuple[int, list[object]]], max_rows: int, deadline: float | None
) -> Iterator[tuple[int, list[object]]]:
    """Every record read counts, blank ones too (they cost reading like any other), above the
    header too: rows are numbered up to max_rows + 1. The deadline is looked at as they come."""
    last = max_rows + 1
    for count, record in enumerate(records, start=1):
        if record[0] > last:
            raise SheetError(
                "too_many_rows",
                f"The file has more than {max_rows:,} rows besides its header row (blank rows count too).",
            )
        if not count % DEADLINE_EVERY_ROWS:
            check_deadline(deadline)
        yield record


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
    for index, text in enumerate(texts):
        if len(text) > HEADER_MAX_LENGTH:
            raise SheetError(
                "header_too_long",
                f"The header of column {index + 1} has {len(text):,} characters: a column header is a "
                f"field name, with its unit in brackets, of at most {HEADER_MAX_LENGTH} characters.",
            )
    return texts


def _cell_text(cell: object) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _data_rows(
    records: Iterator[tuple[int, list[object]]], *, width: int
) -> Iterator[tuple[int, list[object]]]:
    """Rows padded with None to the header's width; empty cells past it dropped, others kept."""
    for number, cells in records:
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
