"""An XLSX file as a ZIP archive: checked before anything in it is decompressed.

The member count and the central directory come from what the file holds: the directory is found
where zipfile will look for it and walked record by record (the count the end record claims can be
faked: 300,005 members claiming 9 cost zipfile 160 MB of objects), before zipfile opens the file.
Then the directory's sizes are checked (a member compressed like a bomb, too much in all), and the
members' names (an OpenDocument file, a ZIP that is no workbook, a VBA project). Nothing is extracted
to disk; member names are only compared, never used as paths.
"""

import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from src.sampleFileUpload.reading_errors import SheetError, check_deadline

# Bounds on what a ZIP may make us do before its XML is read. An XLSX of 2,000,000 rows of ten
# columns is about 1.2 GB of XML; sheet XML compresses about 5-20:1 (measured on openpyxl's output),
# so a big member at 100:1 is a bomb, not a workbook.
MAX_XLSX_UNCOMPRESSED_BYTES = 2 * 1024**3
MAX_XLSX_COMPRESSION_RATIO = 100
RATIO_CHECKED_FROM_BYTES = 1024**2
# zipfile reads the whole central directory into memory, then builds an object per member (~500
# bytes each): both are bounded before it opens the file. A workbook has a few dozen members with
# short names; a central directory record is 46 bytes plus the name, an extra field and a comment.
MAX_ZIP_MEMBERS = 10_000
MAX_CENTRAL_DIRECTORY_BYTES = 4 * 1024**2
_CENTRAL_RECORD = struct.Struct("<4s24xHHH12x")  # signature; lengths of name, extra field, comment
_CENTRAL_RECORD_SIGNATURE = b"PK\x01\x02"
CENTRAL_DIRECTORY_DEADLINE_EVERY = 1024  # records walked between two looks at the clock
DEFAULT_WORKBOOK_PART = "xl/workbook.xml"


@contextmanager
def opened_workbook(file: BinaryIO, *, deadline: float | None) -> Iterator[zipfile.ZipFile]:
    """The ZIP open, once it is known to be neither a bomb nor too many members, an Excel workbook
    (not ODS, not any ZIP) and without a VBA project; SheetError otherwise."""
    _check_central_directory(file, deadline)
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _damaged_zip() from None
    with archive:
        _check_members(archive)
        yield archive


def _check_central_directory(file: BinaryIO, deadline: float | None) -> None:
    """Counts the members the central directory really holds, up to MAX_ZIP_MEMBERS + 1, reading it
    where zipfile will (its records are walked by their lengths: no ZipInfo is built)."""
    start, size = _central_directory_span(file)
    if size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise SheetError("zip_bomb", "The archive's directory is far larger than a workbook's.")
    file.seek(start)
    directory = file.read(size)
    at = members = 0
    while at < size:
        if len(directory) - at < _CENTRAL_RECORD.size:
            raise _damaged_zip()
        signature, name, extra, comment = _CENTRAL_RECORD.unpack_from(directory, at)
        if signature != _CENTRAL_RECORD_SIGNATURE:
            raise _damaged_zip()
        at += _CENTRAL_RECORD.size + name + extra + comment
        members += 1
        if members > MAX_ZIP_MEMBERS:
            raise SheetError("zip_bomb", "The archive has too many members to be a workbook.")
        if not members % CENTRAL_DIRECTORY_DEADLINE_EVERY:
            check_deadline(deadline)


def _central_directory_span(file: BinaryIO) -> tuple[int, int]:
    """Where the central directory starts and its size, found as zipfile.ZipFile finds them.

    zipfile's own search of the end records is used, so that both read the same directory (its
    private helper, stable since Python 2: a ZIP64 end record is followed to the directory it names).
    """
    try:
        end = zipfile._EndRecData(file)
    except (OSError, zipfile.BadZipFile):
        end = None
    if end is None:
        raise _damaged_zip()
    size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]
    # "concat" in zipfile: bytes before the archive (a self-extractor's stub); the records say where
    # the directory is relative to the archive's start.
    concat = end[zipfile._ECD_LOCATION] - size - offset
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    start = offset + concat
    if start < 0 or size < 0:
        raise _damaged_zip()
    return start, size


def _check_members(archive: zipfile.ZipFile) -> None:
    members = archive.infolist()
    _check_sizes(members)
    names = {member.filename.lower() for member in members}
    if "mimetype" in names and "content.xml" in names:
        raise SheetError(
            "unsupported_format",
            "OpenDocument spreadsheets (.ods) are not read: save the sheet as .xlsx or CSV.",
        )
    if "[content_types].xml" not in names or DEFAULT_WORKBOOK_PART not in names:
        raise SheetError("not_a_spreadsheet", "The file is a ZIP archive, not an Excel workbook (.xlsx).")
    if any(name.endswith("vbaproject.bin") for name in names):
        raise macros_refused()


def _check_sizes(members: list[zipfile.ZipInfo]) -> None:
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


def _damaged_zip() -> SheetError:
    return SheetError("unreadable", "The file looks like an Excel workbook but is damaged.")


def macros_refused() -> SheetError:
    return SheetError("macros", "The workbook contains macros: save it as a plain .xlsx workbook.")
