"""Builders of sample files for tests: CSV text in any encoding, real XLSX workbooks, hostile files.

Each returns bytes (write them where a test needs them with `write_to`), so the same file can be
read from disk by the readers or posted to the API by the route tests.
"""

import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from openpyxl import Workbook

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def write_to(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def csv_bytes(
    rows: Iterable[Sequence[object]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    bom: bool = False,
    newline: str = "\r\n",
) -> bytes:
    """Rows as delimited text: cells quoted only where needed (a delimiter, quote or line break)."""
    lines = [delimiter.join(_quoted(cell, delimiter) for cell in row) for row in rows]
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def _quoted(cell: object, delimiter: str) -> str:
    text = "" if cell is None else str(cell)
    if any(mark in text for mark in (delimiter, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def xlsx_bytes(
    rows: Iterable[Sequence[object]] = (),
    *,
    title: str = "Sheet1",
    sheets: Mapping[str, Iterable[Sequence[object]]] | None = None,
) -> bytes:
    """A real workbook written by openpyxl: `rows` on a sheet named `title`, or several `sheets`.

    openpyxl writes formulas without cached values: to test a cell whose formula Excel computed,
    write the computed value (what `data_only=True` reads from an Excel-saved file).
    """
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, sheet_rows in (sheets or {title: rows}).items():
        worksheet = workbook.create_sheet(name)
        for row in sheet_rows:
            worksheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def zip_bytes(members: Mapping[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP of the given members, names written as given (also "../x" or "/etc/x")."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=compression)
    return buffer.getvalue()


def with_members(workbook: bytes, members: Mapping[str, bytes]) -> bytes:
    """A copy of a workbook's ZIP with members added (or replaced)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(workbook)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            if item.filename not in members:
                target.writestr(item, source.read(item.filename))
        for name, content in members.items():
            target.writestr(zipfile.ZipInfo(name), content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def zip_bomb_xlsx(uncompressed_mb: int = 50) -> bytes:
    """A valid-looking workbook with one member that inflates from kilobytes to `uncompressed_mb` MB."""
    return with_members(
        xlsx_bytes([["sample_id"]]), {"xl/media/padding.bin": b"\0" * (uncompressed_mb << 20)}
    )


def ole2_bytes(*, encrypted: bool = False, size: int = 4096) -> bytes:
    """Enough of an OLE2 compound file to be recognised: legacy .xls, or a password-protected workbook.

    A protected .xlsx is an OLE2 file whose directory names an "EncryptedPackage" stream.
    """
    body = bytearray(size)
    body[: len(OLE2_MAGIC)] = OLE2_MAGIC
    name = ("EncryptedPackage" if encrypted else "Workbook").encode("utf-16-le")
    body[1024 : 1024 + len(name)] = name
    return bytes(body)
