"""Writing sheets: CSV and XLSX chunks that read back, through readers.py, as the same values."""

import codecs
import datetime as dt
import io
import tempfile
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from src.sampleFileUpload import writers
from src.sampleFileUpload.readers import open_sheet
from src.sampleFileUpload.writers import (
    EXCEL_EU,
    CsvStyle,
    Worksheet,
    csv_cell,
    csv_chunks,
    guard_formula,
    plain_float,
    xlsx_chunks,
    xlsx_file,
)
from tests.sampleFileUpload import files

HEADER = ["sample_id", "volume [mL]", "count", "ok", "collected", "frozen_at", "note"]
ROWS = [
    ["S1", 3.25, -5, True, dt.date(2025, 3, 4), dt.datetime(2025, 3, 4, 10, 30, tzinfo=dt.UTC), "café, “x”"],
    ["S2", 34.0, 0, False, None, None, "line one\nline two"],
    ["S3", 0.1, 2**40, None, dt.date(1999, 12, 31), dt.datetime(2025, 1, 1, 23, 59, 59), "=HYPERLINK(1)"],
    ["S4", -1.5, None, True, None, None, "-5"],
]


def read_back(path: Path, filename: str) -> tuple[list[str], list[tuple[int, list[object]]]]:
    with open_sheet(path, filename=filename, max_rows=1_000_000) as sheet:
        return sheet.headers, list(sheet.rows)


def write_csv(tmp_path: Path, rows, style: CsvStyle = writers.EXCEL) -> Path:
    return files.write_to(tmp_path, "out.csv", b"".join(csv_chunks(rows, style=style)))


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_starts_with_a_bom_and_ends_lines_with_crlf(tmp_path):
    content = b"".join(csv_chunks([["a", "b"], ["1", "2"]]))

    assert content == codecs.BOM_UTF8 + b"a,b\r\n1,2\r\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-5, "-5"),
        (34.0, "34"),
        (-0.5, "-0.5"),
        (0.1, "0.1"),
        (1e-05, "0.00001"),
        (1.5e20, "150000000000000000000"),
        (2.0**60, "1152921504606847000"),  # the shortest decimal of that float
        (dt.date(2025, 3, 4), "2025-03-04"),
        (dt.datetime(2025, 3, 4, 10, 30), "2025-03-04T10:30:00"),
        (dt.datetime(2025, 3, 4, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), "2025-03-04T10:30:00Z"),
        ("plain", "plain"),
        (Decimal("1.50"), "1.50"),
        (Decimal("-1.5"), "-1.5"),
    ],
)
def test_csv_cells_are_written_for_a_reupload(value, text):
    assert csv_cell(value) == text


def test_plain_float_reads_back_as_the_same_float():
    for value in (0.1, 1 / 3, 1e-07, 123456789.123, 1.7976931348623157e308, 5e-324, -2.5e-10):
        assert float(plain_float(value)) == value
        assert "e" not in plain_float(value)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+CMD|' /C calc'!A0", "'+CMD|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'already", "''already"),
        ("-5", "-5"),
        ("+42", "+42"),
        ("-3,5", "-3,5"),
        ("-1.5e3", "-1.5e3"),
        # numbers as a spreadsheet in any locale writes them, thousands grouped, are no formulas
        ("-1.234,5", "-1.234,5"),
        ("-1,234.5", "-1,234.5"),
        ("-1.234.567", "-1.234.567"),
        ("-1\u00a0234,5", "-1\u00a0234,5"),
        ("+1\u202f234", "+1\u202f234"),
        # ...but a plain space is Excel's intersection operator, and groups are of three digits
        ("+1 234", "'+1 234"),
        ("-1.2.3", "'-1.2.3"),
        ("-1.2345,6", "'-1.2345,6"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_formula_injection_guard(text, written):
    assert guard_formula(text) == written


def test_csv_round_trip_reads_the_same_values(tmp_path):
    path = write_csv(tmp_path, [HEADER, *ROWS])

    headers, rows = read_back(path, "export.csv")

    assert headers == HEADER
    assert rows == [
        (2, ["S1", "3.25", "-5", "true", "2025-03-04", "2025-03-04T10:30:00Z", "café, “x”"]),
        (3, ["S2", "34", "0", "false", "", "", "line one\nline two"]),
        (4, ["S3", "0.1", str(2**40), "", "1999-12-31", "2025-01-01T23:59:59", "=HYPERLINK(1)"]),
        (5, ["S4", "-1.5", "", "true", "", "", "-5"]),
    ]


def test_csv_round_trip_of_text_that_starts_like_a_formula_or_with_the_guard(tmp_path):
    texts = ["=1+1", "+x", "-x", "@x", "'", "''", "'=x", "-5", "it's"]

    rows = read_back(write_csv(tmp_path, [["note"], *[[text] for text in texts]]), "e.csv")[1]

    assert [cells[0] for _, cells in rows] == texts


# ---------------------------------------------------------------------------------------------
# CSV dialects (issue 18): excel-eu, and Windows-1252 for errors.csv


def test_excel_eu_csv_has_semicolons_decimal_commas_and_day_first_dates(tmp_path):
    content = b"".join(csv_chunks([HEADER, *ROWS], style=EXCEL_EU))

    assert content.decode("utf-8-sig").splitlines()[:3] == [
        "sample_id;volume [mL];count;ok;collected;frozen_at;note",
        "S1;3,25;-5;true;04.03.2025;04.03.2025 10:30:00;café, “x”",
        'S2;34;0;false;;;"line one',
    ]
    assert content.startswith(codecs.BOM_UTF8)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (0, "0"),
        (-5, "-5"),
        (34.0, "34"),
        (-0.5, "-0,5"),
        (1234.5, "1234,5"),
        (1.234, "1,234"),
        (1e-05, "0,00001"),
        (1.5e20, "150000000000000000000"),
        (dt.date(2025, 3, 4), "04.03.2025"),
        (dt.date(812, 1, 9), "09.01.0812"),
        (dt.datetime(2025, 3, 4, 10, 30), "04.03.2025 10:30:00"),
        (dt.datetime(2025, 3, 4, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), "04.03.2025 10:30:00"),
        # a fraction of a second, which DD.MM.YYYY HH:MM:SS cannot hold, keeps the ISO form
        (dt.datetime(2025, 3, 4, 10, 30, 0, 500, tzinfo=dt.UTC), "2025-03-04T10:30:00.000500Z"),
        ("-1,5", "-1,5"),
        ("=1+1", "'=1+1"),
    ],
)
def test_excel_eu_cells_are_written_for_a_reupload(value, text):
    assert csv_cell(value, EXCEL_EU) == text


def test_a_negative_decimal_comma_number_is_not_guarded_in_excel_eu():
    assert csv_cell(-1.5, EXCEL_EU) == "-1,5"
    assert csv_cell("-1,5", EXCEL_EU) == "-1,5"
    assert csv_cell("-1.234,5", EXCEL_EU) == "-1.234,5"


def test_excel_eu_csv_is_read_back_as_semicolon_separated_with_every_cell_whole(tmp_path):
    headers, rows = read_back(write_csv(tmp_path, [HEADER, *ROWS], EXCEL_EU), "export.csv")

    assert headers == HEADER
    assert rows[0] == (
        2,
        ["S1", "3,25", "-5", "true", "04.03.2025", "04.03.2025 10:30:00", "café, “x”"],
    )
    assert rows[2][1][-1] == "=HYPERLINK(1)"  # the guard taken off again
    assert rows[3] == (5, ["S4", "-1,5", "", "true", "", "", "-5"])


def test_a_windows_1252_style_writes_no_bom_and_windows_1252_bytes():
    style = CsvStyle(delimiter=";", encoding="cp1252")

    content = b"".join(csv_chunks([["note"], ["Grüße „5 €“"]], style=style))

    assert content == "note\r\nGrüße „5 €“\r\n".encode("cp1252")


def test_csv_values_are_sent_in_chunks_of_bounded_size(monkeypatch):
    monkeypatch.setattr(writers, "CSV_CHUNK_CHARS", 1000)

    chunks = list(csv_chunks([["S", "x" * 40] for _ in range(1000)]))

    assert len(chunks) > 30
    assert max(len(chunk) for chunk in chunks) < 1100


# ---------------------------------------------------------------------------------------------
# XLSX


def test_xlsx_round_trip_keeps_types_and_writes_real_dates(tmp_path):
    path = xlsx_file([HEADER, *ROWS], sheet_name="samples", directory=tmp_path)

    headers, rows = read_back(path, "export.xlsx")

    assert headers == HEADER
    assert rows == [
        (2, ["S1", 3.25, -5, True, dt.datetime(2025, 3, 4), dt.datetime(2025, 3, 4, 10, 30), "café, “x”"]),
        (3, ["S2", 34, 0, False, None, None, "line one\nline two"]),
        (
            4,
            [
                "S3",
                0.1,
                2**40,
                None,
                dt.datetime(1999, 12, 31),
                dt.datetime(2025, 1, 1, 23, 59, 59),
                "=HYPERLINK(1)",
            ],
        ),
        (5, ["S4", -1.5, None, True, None, None, "-5"]),
    ]


def test_xlsx_strings_starting_with_equals_are_text_not_formulas(tmp_path):
    path = xlsx_file([["note"], ["=1+1"]], sheet_name="samples", directory=tmp_path)

    with zipfile.ZipFile(path) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml")

    assert b"<f>" not in sheet_xml
    assert b'<c r="A2" t="inlineStr"><is><t>=1+1</t></is></c>' in sheet_xml


def test_xlsx_drops_characters_xml_cannot_hold(tmp_path):
    path = xlsx_file([["note"], ["a\x01b\x1fc"]], sheet_name="samples", directory=tmp_path)

    assert read_back(path, "e.xlsx")[1] == [(2, ["abc"])]


def test_xlsx_extra_sheets_follow_the_first(tmp_path):
    path = xlsx_file(
        [["sample_id"]],
        sheet_name="samples",
        extra_sheets={"fields": [["field", "type"], ["volume", "number"]]},
    )
    try:
        workbook = load_workbook(path, read_only=True)
        assert workbook.sheetnames == ["samples", "fields"]
        assert list(workbook["fields"].iter_rows(values_only=True)) == [
            ("field", "type"),
            ("volume", "number"),
        ]
        workbook.close()
    finally:
        path.unlink()


def test_xlsx_failure_leaves_no_file(tmp_path):
    def rows():
        yield ["sample_id"]
        raise RuntimeError("the database went away")

    openpyxl_files_before = set(Path(tempfile.gettempdir()).glob("openpyxl.*"))

    with pytest.raises(RuntimeError):
        xlsx_file(rows(), sheet_name="samples", directory=tmp_path)

    assert list(tmp_path.iterdir()) == []
    assert set(Path(tempfile.gettempdir()).glob("openpyxl.*")) <= openpyxl_files_before


# ---------------------------------------------------------------------------------------------
# XLSX, streamed (issue 16, finding 7)


def counted(rows: list[list[object]], taken: list[int]):
    """The rows, counting in `taken` how many were asked for."""
    for row in rows:
        taken[0] += 1
        yield row


def noisy_rows(count: int) -> list[list[object]]:
    """Rows that do not compress to nothing, so the workbook comes in many chunks."""
    return [
        [f"S-{number:06d}", number * 7919 % 100_003 / 7, str(number * 2654435761 % 2**32)]
        for number in range(count)
    ]


def test_xlsx_first_chunk_comes_before_any_row_is_asked_for():
    taken = [0]
    chunks = xlsx_chunks([("samples", counted(noisy_rows(10), taken))])

    first = next(chunks)

    assert first.startswith(b"PK\x03\x04")
    assert taken == [0]


def test_xlsx_chunks_are_bounded_and_come_while_the_rows_are_read():
    rows = noisy_rows(60_000)
    taken = [0]
    taken_at_chunk = []

    chunks = []
    for chunk in xlsx_chunks([("samples", counted(rows, taken))]):
        chunks.append(chunk)
        taken_at_chunk.append(taken[0])

    assert len(chunks) > 10
    assert max(len(chunk) for chunk in chunks) < 3 * writers.XLSX_CHUNK_BYTES
    assert taken_at_chunk[1] < len(rows) / 2  # the second chunk left before half the rows were read
    workbook = load_workbook(io.BytesIO(b"".join(chunks)), read_only=True)
    read = list(workbook["samples"].iter_rows(values_only=True))
    assert [list(row) for row in (read[0], read[-1])] == [rows[0], rows[-1]]
    assert len(read) == len(rows)


def test_xlsx_chunks_closed_early_ask_for_no_more_rows():
    taken = [0]
    chunks = xlsx_chunks([("samples", counted(noisy_rows(60_000), taken))])
    next(chunks)
    next(chunks)
    taken_when_closed = taken[0]

    chunks.close()

    assert taken_when_closed < 60_000
    assert taken[0] == taken_when_closed


def test_xlsx_package_is_a_zip_excel_reads(tmp_path):
    """Data descriptors (the writer cannot go back to fill in sizes), never ZIP64 (Excel reads only a
    strict subset of it), and the parts a workbook needs."""
    content = b"".join(xlsx_chunks([("samples", [["a"], [1]]), ("fields", [["b"]])]))

    with zipfile.ZipFile(io.BytesIO(content)) as package:
        assert package.testzip() is None
        members = package.infolist()
        names = [member.filename for member in members]
        workbook_xml = package.read("xl/workbook.xml").decode()
        types_xml = package.read("[Content_Types].xml").decode()

    assert names == [
        "[Content_Types].xml",
        "_rels/.rels",
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "xl/styles.xml",
        "xl/worksheets/sheet1.xml",
        "xl/worksheets/sheet2.xml",
    ]
    assert all(member.flag_bits & 0x08 for member in members)
    assert all(member.extract_version < 45 for member in members)  # 45: ZIP64
    assert b"PK\x06\x06" not in content  # no ZIP64 end of central directory
    assert '<sheet name="samples" sheetId="1" r:id="rId1"/>' in workbook_xml
    assert '<sheet name="fields" sheetId="2" r:id="rId2"/>' in workbook_xml
    assert "/xl/worksheets/sheet2.xml" in types_xml


def test_xlsx_dates_are_excel_dates_with_a_date_format(tmp_path):
    moment = dt.datetime(2025, 3, 4, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    path = xlsx_file([["on", "at"], [dt.date(2025, 3, 4), moment]], sheet_name="samples", directory=tmp_path)

    worksheet = load_workbook(path)["samples"]

    on, at = worksheet["A2"], worksheet["B2"]
    assert (on.is_date, on.number_format, on.value) == (True, "yyyy-mm-dd", dt.datetime(2025, 3, 4))
    assert (at.is_date, at.number_format, at.value) == (
        True,
        "yyyy-mm-dd h:mm:ss",
        dt.datetime(2025, 3, 4, 10, 30),
    )


def test_xlsx_keeps_in_iso_text_what_an_excel_date_cannot_hold(tmp_path):
    fraction = dt.datetime(2025, 3, 4, 10, 30, 0, 123456, tzinfo=dt.UTC)
    rows = [
        ["at", "on"],
        [fraction, dt.date(1850, 1, 1)],
        [dt.datetime(1899, 12, 31, 12), dt.date(1900, 1, 1)],
    ]

    worksheet = load_workbook(xlsx_file(rows, sheet_name="samples", directory=tmp_path))["samples"]

    assert [[cell.value for cell in row] for row in worksheet.iter_rows(min_row=2)] == [
        ["2025-03-04T10:30:00.123456Z", "1850-01-01"],
        ["1899-12-31T12:00:00", dt.datetime(1900, 1, 1)],
    ]
    assert worksheet["B3"].is_date


def test_xlsx_date_columns_are_formatted_as_dates_wide_enough_to_show_them(tmp_path):
    sheet = Worksheet(
        "samples", [["id", "on", "at"], ["S1", None, None]], date_columns=[2], datetime_columns=[3]
    )

    worksheet = load_workbook(io.BytesIO(b"".join(xlsx_chunks([sheet]))))["samples"]

    on, at = worksheet.column_dimensions["B"], worksheet.column_dimensions["C"]
    assert (on.number_format, at.number_format) == ("yyyy-mm-dd", "yyyy-mm-dd h:mm:ss")
    assert on.width >= 10
    assert at.width >= 19
    assert worksheet.column_dimensions["A"].number_format == "General"
    assert worksheet["B1"].number_format == "General"  # the header stays text


@pytest.mark.parametrize(
    "text",
    ["  padded  ", "line one\r\nline two", "\r", "<b>&amp;</b>", "tab\tinside", "\n", "ünï 日本 🧪", "=1+1"],
)
def test_xlsx_text_reads_back_exactly(tmp_path, text):
    path = xlsx_file([["note"], [text]], sheet_name="samples", directory=tmp_path)

    assert load_workbook(path)["samples"]["A2"].value == text


def test_xlsx_drops_what_xml_cannot_hold_even_a_lone_surrogate(tmp_path):
    path = xlsx_file([["note"], ["a\ud800b\ufffec\x0bd"], ["\x01"]], sheet_name="samples", directory=tmp_path)

    worksheet = load_workbook(path)["samples"]

    assert worksheet["A2"].value == "abcd"
    assert worksheet["A3"].value is None


def test_xlsx_refuses_more_rows_than_a_worksheet_holds(monkeypatch):
    monkeypatch.setattr(writers, "MAX_XLSX_ROWS", 3)

    with pytest.raises(ValueError, match="at most 3 rows"):
        b"".join(xlsx_chunks([("samples", [["a"], [1], [2], [3]])]))
