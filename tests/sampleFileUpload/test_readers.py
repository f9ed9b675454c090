"""Reading sample sheets: every format path, encoding, delimiter and refusal of readers.open_sheet."""

import datetime as dt
import os
import zipfile
from pathlib import Path

import pytest

from src.sampleFileUpload import readers, writers, xlsx_archive
from src.sampleFileUpload.readers import SheetError, detect_delimiter, open_sheet, parse_header
from tests.sampleFileUpload import files

HEADER = ["sample_id", "volume [mL]", "note"]
# A member name a hostile archive may carry; it must never become a path.
ABSOLUTE_MEMBER = "/tmp/studybase-evil-absolute.txt"  # noqa: S108


def read(tmp_path: Path, content: bytes, filename: str | None = "sheet.csv", max_rows: int = 1000):
    """(format, encoding, headers, rows) of the file, rows fully read."""
    path = files.write_to(tmp_path, "stored", content)
    with open_sheet(path, filename=filename, max_rows=max_rows) as sheet:
        return sheet.format, sheet.encoding, sheet.headers, list(sheet.rows)


def refusal(tmp_path: Path, content: bytes, filename: str | None, max_rows: int = 1000) -> SheetError:
    with pytest.raises(SheetError) as caught:
        read(tmp_path, content, filename, max_rows)
    return caught.value


# ---------------------------------------------------------------------------------------------
# CSV and TSV


def test_utf8_csv_reads_headers_trimmed_and_cells_as_text(tmp_path):
    content = files.csv_bytes([[" sample_id ", "volume [mL]", "note"], ["S1", " 3.5 ", "naïve"]])

    assert read(tmp_path, content) == ("csv", "utf-8", HEADER, [(2, ["S1", " 3.5 ", "naïve"])])


def test_utf8_bom_is_reported_and_not_part_of_the_first_header(tmp_path):
    content = files.csv_bytes([HEADER, ["S1", "1", "é"]], bom=True)

    assert read(tmp_path, content)[1:] == ("utf-8-sig", HEADER, [(2, ["S1", "1", "é"])])


def test_utf16_with_bom_as_excel_saves_unicode_text(tmp_path):
    content = "\ufeff".encode("utf-16-le") + files.csv_bytes(
        [HEADER, ["S1", "1", "ü"]], delimiter="\t"
    ).decode("utf-8").encode("utf-16-le")

    assert read(tmp_path, content, "sheet.txt") == ("tsv", "utf-16", HEADER, [(2, ["S1", "1", "ü"])])


def test_windows_1252_from_excel_is_detected_and_reported(tmp_path):
    rows = [[f"S{i}", "5,5", "“smart” café — 5 €"] for i in range(10)]
    content = files.csv_bytes([HEADER, *rows], delimiter=";", encoding="cp1252")

    format_, encoding, headers, read_rows = read(tmp_path, content)

    assert (format_, encoding, headers) == ("csv", "cp1252", HEADER)
    assert read_rows[-1] == (11, ["S9", "5,5", "“smart” café — 5 €"])


def test_windows_1252_first_seen_deep_in_the_file_is_still_read_as_such(tmp_path):
    # The first 64 KB are ASCII, so a prefix alone would call the file UTF-8 and fail on row 5,002.
    rows = [[f"S{i}", "1", "plain text"] for i in range(5000)] + [["S-last", "1", "é à l\u2019eau"]]
    content = files.csv_bytes([HEADER, *rows], encoding="cp1252")
    assert len(content) > readers.TEXT_SAMPLE_BYTES

    _, encoding, _, read_rows = read(tmp_path, content, max_rows=10_000)

    assert encoding == "cp1252"
    assert read_rows[-1] == (5002, ["S-last", "1", "é à l\u2019eau"])


def test_cyrillic_windows_1251_is_not_mistaken_for_windows_1252(tmp_path):
    content = files.csv_bytes(
        [["Имя", "Город"], ["Иван", "Москва"], ["Пётр", "Санкт-Петербург"]], encoding="cp1251"
    )

    assert read(tmp_path, content)[1:3] == ("cp1251", ["Имя", "Город"])


def test_a_file_the_guessed_encoding_cannot_decode_whole_is_unreadable(tmp_path, monkeypatch):
    # Bytes that Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) after its guess.
    monkeypatch.setattr(readers, "_guessed_encoding", lambda sample: "cp1252")
    content = (
        files.csv_bytes([HEADER, ["S1", "1", "é"]], encoding="cp1252") + b"S2,1,\x81\x8d\x8f\x90\x9d\r\n"
    )

    error = refusal(tmp_path, content, "sheet.csv")

    assert error.code == "unreadable"


@pytest.mark.parametrize(("delimiter", "format_"), [(",", "csv"), (";", "csv"), ("\t", "tsv")])
def test_delimiters_are_detected(tmp_path, delimiter, format_):
    content = files.csv_bytes([HEADER, ["S1", "3,5", "a, b; c"], ["S2", "4", "x"]], delimiter=delimiter)

    assert read(tmp_path, content) == (
        format_,
        "utf-8",
        HEADER,
        [(2, ["S1", "3,5", "a, b; c"]), (3, ["S2", "4", "x"])],
    )


def test_a_tsv_file_is_reported_as_tsv(tmp_path):
    content = files.csv_bytes([HEADER, ["S1", "1", "x"]], delimiter="\t")

    assert read(tmp_path, content, "samples.tsv")[0] == "tsv"


def test_delimiter_falls_back_to_the_header_line_when_no_delimiter_splits_it():
    assert detect_delimiter("sample_id;volume;note") == ";"
    assert detect_delimiter("sample_id") == ","
    assert detect_delimiter("a\tb;c\td", prefer_tab=True) == "\t"


def test_quoted_newlines_stay_in_their_cell_and_rows_count_records_not_lines(tmp_path):
    content = files.csv_bytes(
        [HEADER, ["S1", "1", "first line\nsecond line\nthird"], ["S2", "2", 'say "hi"'], ["S3", "3", "x"]]
    )

    rows = read(tmp_path, content)[3]

    assert rows == [
        (2, ["S1", "1", "first line\nsecond line\nthird"]),
        (3, ["S2", "2", 'say "hi"']),
        (4, ["S3", "3", "x"]),
    ]


def test_blank_rows_are_skipped_but_counted_also_before_the_header(tmp_path):
    content = b"\r\n;;\r\nsample_id;volume [mL];note\r\nS1;1;x\r\n\r\n  ;  ;\r\nS2;2;y\r\n"

    assert read(tmp_path, content)[2:] == (
        HEADER,
        [(4, ["S1", "1", "x"]), (7, ["S2", "2", "y"])],
    )


def test_short_rows_are_padded_and_long_rows_keep_their_extra_cells(tmp_path):
    content = files.csv_bytes([HEADER, ["S1"], ["S2", "2", "x", "extra", ""], ["S3", "3", "y", "", ""]])

    rows = read(tmp_path, content)[3]

    assert rows == [(2, ["S1", None, None]), (3, ["S2", "2", "x", "extra"]), (4, ["S3", "3", "y"])]


def test_trailing_empty_header_cells_are_dropped(tmp_path):
    content = files.csv_bytes([[*HEADER, "", " "], ["S1", "1", "x", "", ""]])

    assert read(tmp_path, content)[2:] == (HEADER, [(2, ["S1", "1", "x"])])


def test_a_header_only_file_has_headers_and_no_rows(tmp_path):
    assert read(tmp_path, files.csv_bytes([HEADER])) == ("csv", "utf-8", HEADER, [])


@pytest.mark.parametrize("content", [b"", b"\r\n\r\n", b" ; ; \n\n"])
def test_an_empty_file_is_refused(tmp_path, content):
    error = refusal(tmp_path, content, "sheet.csv")

    assert (error.code, error.unsupported) == ("empty", False)


def test_too_many_rows_is_raised_while_iterating_past_the_limit(tmp_path):
    content = files.csv_bytes([HEADER, *[[f"S{i}", "1", ""] for i in range(4)]])
    path = files.write_to(tmp_path, "stored", content)

    with open_sheet(path, filename="sheet.csv", max_rows=3) as sheet:
        first_three = [next(sheet.rows) for _ in range(3)]
        with pytest.raises(SheetError) as caught:
            next(sheet.rows)

    assert [number for number, _ in first_three] == [2, 3, 4]
    assert (caught.value.code, caught.value.unsupported) == ("too_many_rows", False)


def test_exactly_max_rows_is_accepted(tmp_path):
    content = files.csv_bytes([HEADER, *[[f"S{i}", "1", ""] for i in range(3)]])

    assert len(read(tmp_path, content, max_rows=3)[3]) == 3


def test_nul_bytes_are_refused_with_their_line(tmp_path):
    content = b"sample_id,note\r\nS1,ok\r\nS2,bad\x00cell\r\n"

    error = refusal(tmp_path, content, "sheet.csv")

    assert error.code == "unreadable"
    assert "Line 3" in error.message


def test_a_cell_beyond_the_csv_field_limit_is_unreadable_with_its_row(tmp_path):
    content = b'sample_id,note\r\nS1,"' + b"x" * 200_000 + b'"\r\n'

    error = refusal(tmp_path, content, "sheet.csv")

    assert error.code == "unreadable"
    assert "Row 2" in error.message


def test_guarded_cells_written_by_the_exporter_read_back_without_the_guard(tmp_path):
    content = files.csv_bytes([HEADER, ["'=1+1", "'-x", "'isn't"], ["''quoted", "'@x", "plain"]])

    assert read(tmp_path, content)[3] == [(2, ["=1+1", "-x", "'isn't"]), (3, ["'quoted", "@x", "plain"])]


# ---------------------------------------------------------------------------------------------
# XLSX


def test_xlsx_reads_typed_cells_blank_rows_and_row_numbers(tmp_path):
    content = files.xlsx_bytes(
        [
            ["sample_id", "collected [date]", "count", "ok", "volume"],
            ["S1", dt.datetime(2025, 3, 4), 34.0, True, 1.25],
            [None, None],
            ["S2", dt.date(2025, 3, 5), 7, False, None],
            ["S3", dt.datetime(2025, 3, 6, 14, 30), -2, None, "12"],
        ]
    )

    format_, encoding, headers, rows = read(tmp_path, content, "samples.xlsx")

    assert (format_, encoding) == ("xlsx", None)
    assert headers == ["sample_id", "collected [date]", "count", "ok", "volume"]
    assert rows == [
        (2, ["S1", dt.datetime(2025, 3, 4), 34, True, 1.25]),
        (4, ["S2", dt.datetime(2025, 3, 5), 7, False, None]),
        (5, ["S3", dt.datetime(2025, 3, 6, 14, 30), -2, None, "12"]),
    ]


def test_xlsx_numbers_as_header_cells_are_text(tmp_path):
    content = files.xlsx_bytes([["sample_id", 2024, 1.5], ["S1", 1, 2]])

    assert read(tmp_path, content, "s.xlsx")[2] == ["sample_id", "2024", "1.5"]


def test_xlsx_formula_cells_read_their_cached_value_or_none(tmp_path):
    # openpyxl stores no cached value for a formula it writes (Excel does), so a formula cell written
    # here reads None; the computed-value case is a plain value cell, which is what Excel saves.
    content = files.xlsx_bytes([["sample_id", "total"], ["S1", "=1+2"], ["S2", 3]])

    assert read(tmp_path, content, "s.xlsx")[3] == [(2, ["S1", None]), (3, ["S2", 3])]


def test_xlsx_sheet_named_samples_is_chosen_in_any_case(tmp_path):
    content = files.xlsx_bytes(
        sheets={"Read me": [["Fill in the other sheet"]], " SAMPLES ": [["sample_id"], ["S1"]]}
    )

    assert read(tmp_path, content, "s.xlsx")[2:] == (["sample_id"], [(2, ["S1"])])


def test_xlsx_without_a_samples_sheet_reads_the_first(tmp_path):
    content = files.xlsx_bytes(sheets={"data": [["sample_id"], ["S1"]], "notes": [["other"]]})

    assert read(tmp_path, content, "s.xlsx")[2] == ["sample_id"]


def test_an_xlsx_export_is_parsed_once_not_first_scanned_for_its_size(tmp_path, monkeypatch):
    # openpyxl's read-only reader first scanned a sheet without <dimension> (our exports) whole.
    opened = []
    real_open = zipfile.ZipFile.open

    def open_member(archive, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(archive, name, *args, **kwargs)

    workbook = writers.xlsx_file([["sample_id"], ["S1"], ["S2"]], sheet_name="samples", directory=tmp_path)
    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)

    with open_sheet(workbook, filename="export.xlsx", max_rows=10) as sheet:
        rows = list(sheet.rows)

    sheet_parts = [name for name in opened if name.startswith("xl/worksheets/")]
    assert (sheet.headers, rows, len(sheet_parts)) == (["sample_id"], [(2, ["S1"]), (3, ["S2"])], 1)


def test_xlsx_rows_past_the_limit_raise_too_many_rows(tmp_path):
    content = files.xlsx_bytes([["sample_id"], ["S1"], ["S2"]])

    assert refusal(tmp_path, content, "s.xlsx", max_rows=1).code == "too_many_rows"


def test_an_empty_workbook_sheet_is_empty(tmp_path):
    assert refusal(tmp_path, files.xlsx_bytes([]), "s.xlsx").code == "empty"


def test_a_workbook_without_a_filename_is_read_by_its_content(tmp_path):
    assert read(tmp_path, files.xlsx_bytes([["sample_id"]]), None)[0] == "xlsx"


# ---------------------------------------------------------------------------------------------
# Refusals of wrong and hostile files


def test_legacy_xls_is_unsupported(tmp_path):
    error = refusal(tmp_path, files.ole2_bytes(), "old.xls")

    assert (error.code, error.unsupported) == ("unsupported_format", True)
    assert ".xls" in error.message


def test_password_protected_workbook_is_encrypted(tmp_path):
    error = refusal(tmp_path, files.ole2_bytes(encrypted=True, size=3 * readers.SCAN_CHUNK_BYTES), "s.xlsx")

    assert (error.code, error.unsupported) == ("encrypted", True)


def test_encrypted_package_name_split_across_scan_chunks_is_found(tmp_path):
    content = bytearray(files.ole2_bytes(size=2 * readers.SCAN_CHUNK_BYTES))
    at = readers.SCAN_CHUNK_BYTES - 5
    content[at : at + len(readers.ENCRYPTED_PACKAGE_NAME)] = readers.ENCRYPTED_PACKAGE_NAME

    assert refusal(tmp_path, bytes(content), "s.xlsx").code == "encrypted"


def test_workbook_with_vba_project_is_refused_as_macros(tmp_path):
    content = files.with_members(files.xlsx_bytes([["sample_id"]]), {"xl/vbaProject.bin": b"\x01" * 100})

    error = refusal(tmp_path, content, "s.xlsx")

    assert (error.code, error.unsupported) == ("macros", True)


def test_workbook_declared_macro_enabled_is_refused(tmp_path):
    workbook = files.xlsx_bytes([["sample_id"]])
    with zipfile.ZipFile(files.io.BytesIO(workbook)) as archive:
        types = archive.read("[Content_Types].xml").replace(
            b"spreadsheetml.sheet.main+xml", b"ms-excel.sheet.macroEnabled.main+xml"
        )
    content = files.with_members(workbook, {"[Content_Types].xml": types})

    assert refusal(tmp_path, content, "s.xlsx").code == "macros"


def test_xlsm_extension_is_refused_as_macros(tmp_path):
    assert refusal(tmp_path, files.xlsx_bytes([["sample_id"]]), "s.xlsm").code == "macros"


def test_zip_bomb_is_refused_before_opening(tmp_path):
    error = refusal(tmp_path, files.zip_bomb_xlsx(uncompressed_mb=20), "s.xlsx")

    assert (error.code, error.unsupported) == ("zip_bomb", False)


def test_zip_whose_total_uncompressed_size_is_too_big_is_a_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_archive, "MAX_XLSX_UNCOMPRESSED_BYTES", 10_000)
    content = files.with_members(files.xlsx_bytes([["sample_id"]]), {"xl/media/a.bin": os.urandom(20_000)})

    assert refusal(tmp_path, content, "s.xlsx").code == "zip_bomb"


def test_zip_with_too_many_members_is_refused_before_listing_them(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_archive, "MAX_ZIP_MEMBERS", 20)
    content = files.zip_bytes({f"m{i}": b"" for i in range(21)})

    assert refusal(tmp_path, content, "s.xlsx").code == "zip_bomb"


def test_zip_that_is_not_a_workbook_is_not_a_spreadsheet(tmp_path):
    error = refusal(tmp_path, files.zip_bytes({"readme.txt": b"hello"}), "s.xlsx")

    assert (error.code, error.unsupported) == ("not_a_spreadsheet", True)


def test_opendocument_spreadsheet_is_unsupported(tmp_path):
    content = files.zip_bytes(
        {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
        compression=zipfile.ZIP_STORED,
    )

    assert refusal(tmp_path, content, None).code == "unsupported_format"


def test_damaged_zip_is_unreadable(tmp_path):
    content = files.xlsx_bytes([["sample_id"]])[:-200]

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_workbook_with_broken_sheet_xml_is_unreadable(tmp_path):
    content = files.with_members(
        files.xlsx_bytes([["sample_id"]]), {"xl/worksheets/sheet1.xml": b"<worksheet"}
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_workbook_whose_sheet_breaks_after_some_rows_is_unreadable_while_iterating(tmp_path):
    workbook = files.xlsx_bytes([["sample_id"], *[[f"S{i}"] for i in range(50)]])
    with zipfile.ZipFile(files.io.BytesIO(workbook)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml")
    cut = sheet_xml.index(b'<row r="40"')
    content = files.with_members(workbook, {"xl/worksheets/sheet1.xml": sheet_xml[:cut] + b"<row r=>"})
    path = files.write_to(tmp_path, "stored", content)

    with open_sheet(path, filename="s.xlsx", max_rows=1000) as sheet:
        rows = []
        with pytest.raises(SheetError) as caught:
            rows.extend(sheet.rows)

    assert caught.value.code == "unreadable"
    assert rows[-1][0] <= 39


@pytest.mark.parametrize("member", ["xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/styles.xml"])
def test_a_member_whose_compressed_data_is_corrupt_is_unreadable(tmp_path, member):
    workbook = files.with_shared_strings(
        files.xlsx_bytes([["sample_id"], *[[f"S{number}"] for number in range(200)]]),
        files.shared_strings_xml(f"text {number}" for number in range(2_000)),
    )
    content = bytearray(workbook)
    with zipfile.ZipFile(files.io.BytesIO(workbook)) as archive:
        info = archive.getinfo(member)
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for at in range(data_start + 10, data_start + info.compress_size - 10, 7):
        content[at] ^= 0x5A

    assert refusal(tmp_path, bytes(content), "s.xlsx").code == "unreadable"


def test_zip_with_a_damaged_central_directory_is_unreadable(tmp_path):
    content = files.xlsx_bytes([["sample_id"]]).replace(b"PK\x01\x02", b"XX\x01\x02")

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_text_named_xlsx_is_not_a_spreadsheet(tmp_path):
    error = refusal(tmp_path, files.csv_bytes([HEADER]), "s.xlsx")

    assert (error.code, error.unsupported) == ("not_a_spreadsheet", True)
    assert ".xlsx" in error.message


def test_workbook_named_csv_is_not_a_spreadsheet(tmp_path):
    error = refusal(tmp_path, files.xlsx_bytes([["sample_id"]]), "s.csv")

    assert (error.code, error.unsupported) == ("not_a_spreadsheet", True)


def test_unknown_extension_is_unsupported(tmp_path):
    assert refusal(tmp_path, files.csv_bytes([HEADER]), "s.pdf").code == "unsupported_format"


@pytest.mark.parametrize("filename", ["../../x.csv", "C:\\Users\\me\\x.CSV", "x\x00.csv", "", None])
def test_the_client_filename_is_only_a_hint(tmp_path, filename):
    assert read(tmp_path, files.csv_bytes([HEADER]), filename)[:3] == ("csv", "utf-8", HEADER)


def test_path_traversal_member_names_are_never_touched_on_disk(tmp_path, monkeypatch):
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    content = files.with_members(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        {"../../evil.txt": b"x", ABSOLUTE_MEMBER: b"x", "xl/../../evil2.txt": b"x"},
    )

    assert read(workdir, content, "s.xlsx")[2:] == (["sample_id"], [(2, ["S1"])])
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a", "b", "stored"]
    assert not Path(ABSOLUTE_MEMBER).exists()


# ---------------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("volume [mL]", ("volume", "mL")),
        ("volume[mL]", ("volume", "mL")),
        (" Volume [ mL ] ", ("Volume", "mL")),
        ("concentration [ng/uL]", ("concentration", "ng/uL")),
        ("sample_id", ("sample_id", None)),
        ("volume []", ("volume", None)),
        ("[mL]", ("[mL]", None)),
        ("a [b] c", ("a [b] c", None)),
    ],
)
def test_parse_header_splits_name_and_unit(text, parsed):
    assert parse_header(text) == parsed
