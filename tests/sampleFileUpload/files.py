"""Builders of sample files for tests: CSV text in any encoding, real XLSX workbooks, hostile files.

Each returns bytes (write them where a test needs them with `write_to`), so the same file can be
read from disk by the readers or posted to the API by the route tests.
"""

import datetime as dt
import io
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------------
# Hostile variants: small files that would make a reader do unbounded work


SHARED_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
SHARED_STRINGS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def workbook_part(workbook: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return archive.read(name)


def with_sheet_xml(workbook: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """A copy of an openpyxl workbook whose first sheet's XML went through `edit`."""
    name = "xl/worksheets/sheet1.xml"
    return with_members(workbook, {name: edit(workbook_part(workbook, name))})


def far_row_xlsx(row: int = 1_000_000_000_000_000) -> bytes:
    """A header and one sample whose row (and cell) reference says `row`: every row between is a gap."""
    return with_sheet_xml(
        xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b'<row r="2"', b'<row r="%d"' % row).replace(b'r="A2"', b'r="A%d"' % row),
    )


def far_column_xlsx(column: str = "XFD") -> bytes:
    """A header whose second cell sits at `column` (XFD: Excel's last, 16,384)."""
    return with_sheet_xml(
        xlsx_bytes([["sample_id", "note"], ["S1", "x"]]),
        lambda xml: xml.replace(b'r="B1"', b'r="%s1"' % column.encode()),
    )


def shared_strings_xml(texts: Iterable[str]) -> bytes:
    entries = "".join(f"<si><t>{text}</t></si>" for text in texts)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"{entries}</sst>"
    ).encode()


def with_shared_strings(workbook: bytes, table: bytes) -> bytes:
    """A copy of an openpyxl workbook (which writes inline strings) with a shared strings part."""
    content_types = workbook_part(workbook, "[Content_Types].xml").replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="%s"/></Types>'
        % SHARED_STRINGS_TYPE.encode(),
    )
    relationships = workbook_part(workbook, "xl/_rels/workbook.xml.rels").replace(
        b"</Relationships>",
        b'<Relationship Id="rIdStrings" Type="%s" Target="sharedStrings.xml"/></Relationships>'
        % SHARED_STRINGS_REL.encode(),
    )
    return with_members(
        workbook,
        {
            "[Content_Types].xml": content_types,
            "xl/_rels/workbook.xml.rels": relationships,
            "xl/sharedStrings.xml": table,
        },
    )


def shared_strings_xlsx(entries: int) -> bytes:
    """A one-sample workbook whose cells refer to a shared strings table of `entries` short texts
    (compressed about 80:1, under the ZIP bomb ratio, as the hostile original was)."""
    workbook = with_sheet_xml(
        xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b't="inlineStr"><is><t>sample_id</t></is>', b't="s"><v>0</v>').replace(
            b't="inlineStr"><is><t>S1</t></is>', b't="s"><v>1</v>'
        ),
    )
    texts = ["sample_id", "S1", *(f"t{number % 1200:04d}" for number in range(entries - 2))]
    return with_shared_strings(workbook, shared_strings_xml(texts))


def zip_with_claimed_count(members: Mapping[str, bytes], *, claimed: int) -> bytes:
    """A ZIP of `members` whose end-of-central-directory record claims `claimed` members instead."""
    content = bytearray(zip_bytes(members, compression=zipfile.ZIP_STORED))
    end = content.rfind(b"PK\x05\x06")
    content[end + 8 : end + 12] = claimed.to_bytes(2, "little") * 2  # entries on this disk, in total
    return bytes(content)


def wide_csv(columns: int, *, rows: int = 1) -> bytes:
    """A header of `columns` columns (and `rows` rows of as many values)."""
    lines = [",".join(f"c{number}" for number in range(columns))]
    lines += [",".join("v" for _ in range(columns))] * rows
    return ("\r\n".join(lines) + "\r\n").encode()


# ---------------------------------------------------------------------------------------------
# Sheets as spreadsheet programs save them in their locales (issue 18)


@dataclass(frozen=True)
class SavedAs:
    """How a spreadsheet program in one locale writes cells, and a sheet as CSV.

    Dates and times as its default formats show them, numbers with its decimal mark (and its
    thousands separator where the column is formatted with one), booleans as its TRUE and FALSE.
    """

    name: str
    delimiter: str
    encoding: str
    decimal: str
    thousands: str
    date: Callable[[dt.date], str]
    moment: Callable[[dt.datetime], str]
    true: str
    false: str
    bom: bool = False

    def cell(self, value: object) -> object:
        """A value as this program writes it in a cell; text (and None, an empty cell) stays as it is."""
        if value is None or isinstance(value, str):
            return value
        if value is True or value is False:
            return self.true if value else self.false
        if isinstance(value, dt.datetime):
            return self.moment(value)
        if isinstance(value, dt.date):
            return self.date(value)
        return self.number(value)

    def number(self, value: float, *, grouped: bool = False) -> str:
        """A number with this locale's decimal mark, its thousands grouped when `grouped`."""
        whole, _, fraction = (f"{value:,}" if grouped else str(value)).partition(".")
        return whole.replace(",", self.thousands) + (self.decimal + fraction if fraction else "")

    def csv(self, rows: Iterable[Sequence[object]]) -> bytes:
        return csv_bytes(
            [[self.cell(value) for value in row] for row in rows],
            delimiter=self.delimiter,
            encoding=self.encoding,
            bom=self.bom,
        )

    def xlsx(self, rows: Iterable[Sequence[object]]) -> bytes:
        """A workbook whose cells are all text, written as this locale shows them (cells formatted
        as Text, or pasted from another program)."""
        return xlsx_bytes([[self.cell(value) for value in row] for row in rows])


def _day_month_year(separator: str, *, padded: bool = True) -> Callable[[dt.date], str]:
    if padded:
        return lambda day: f"{day.day:02d}{separator}{day.month:02d}{separator}{day.year}"
    return lambda day: f"{day.day}{separator}{day.month}{separator}{day.year}"


def _us_date(day: dt.date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


GERMAN_EXCEL = SavedAs(
    "German Excel",
    delimiter=";",
    encoding="cp1252",
    decimal=",",
    thousands=".",
    date=_day_month_year("."),
    moment=lambda moment: f"{_day_month_year('.')(moment)} {moment:%H:%M}",
    true="WAHR",
    false="FALSCH",
)
# LibreOffice's Text CSV export: comma-separated, UTF-8, the locale's decimal comma (such cells quoted).
GERMAN_LIBREOFFICE = SavedAs(
    "German LibreOffice",
    delimiter=",",
    encoding="utf-8",
    decimal=",",
    thousands=".",
    date=_day_month_year("."),
    moment=lambda moment: f"{_day_month_year('.')(moment)} {moment:%H:%M:%S}",
    true="WAHR",
    false="FALSCH",
)
FRENCH_EXCEL = SavedAs(
    "French Excel",
    delimiter=";",
    encoding="cp1252",
    decimal=",",
    thousands="\u00a0",
    date=_day_month_year("/"),
    moment=lambda moment: f"{_day_month_year('/')(moment)} {moment:%H:%M}",
    true="VRAI",
    false="FAUX",
)
FRENCH_LIBREOFFICE = SavedAs(
    "French LibreOffice",
    delimiter=";",
    encoding="utf-8",
    decimal=",",
    thousands="\u202f",
    date=_day_month_year("/"),
    moment=lambda moment: f"{_day_month_year('/')(moment)} {moment:%H:%M:%S}",
    true="VRAI",
    false="FAUX",
)
US_EXCEL = SavedAs(
    "US Excel",
    delimiter=",",
    encoding="cp1252",
    decimal=".",
    thousands=",",
    date=_us_date,
    moment=lambda moment: f"{_us_date(moment)} {moment.hour % 12 or 12}:{moment:%M %p}",
    true="TRUE",
    false="FALSE",
)
UK_EXCEL = SavedAs(
    "UK Excel",
    delimiter=",",
    encoding="utf-8",
    decimal=".",
    thousands=",",
    date=_day_month_year("/"),
    moment=lambda moment: f"{_day_month_year('/')(moment)} {moment:%H:%M}",
    true="TRUE",
    false="FALSE",
    bom=True,  # "CSV UTF-8 (Comma delimited)"
)
LOCALES = (GERMAN_EXCEL, GERMAN_LIBREOFFICE, FRENCH_EXCEL, FRENCH_LIBREOFFICE, US_EXCEL, UK_EXCEL)
