"""Bounded reading: small hostile files are refused early and cheaply, and reading stops at a deadline.

Each test reads a variant of a file that made the readers do unbounded work (issue 16): rows numbered
far beyond the limit, a header of a million columns, a huge shared strings table, a ZIP lying about
its member count, a UTF-8 file with a stray byte, a sample that makes csv.Sniffer's regexes crawl.
"""

import contextlib
import io
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from src.sampleFileUpload import readers, reading_errors, xlsx_archive, xlsx_parts, xlsx_reading, xlsx_xml
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.readers import SheetError, TimeLimitReached, detect_delimiter, open_sheet
from tests.sampleFileUpload import files

HEADER = ["sample_id", "volume [mL]", "note"]


def read(tmp_path: Path, content: bytes, filename: str | None = "sheet.csv", **limits):
    """(headers, rows) of the file, rows fully read; limits default to max_rows=1000."""
    limits.setdefault("max_rows", 1000)
    path = files.write_to(tmp_path, "stored", content)
    with open_sheet(path, filename=filename, **limits) as sheet:
        return sheet.headers, list(sheet.rows)


def refusal(tmp_path: Path, content: bytes, filename: str | None = "sheet.csv", **limits) -> SheetError:
    with pytest.raises(SheetError) as caught:
        read(tmp_path, content, filename, **limits)
    return caught.value


def within(seconds: float, function):
    """function()'s result or exception, failing the test if it takes longer than `seconds` (it is
    then left running in a daemon thread: the unbounded reading this file is about)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = function()
        except BaseException as error:  # handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def peak_memory_mb(function) -> float:
    """The peak of Python's allocations while function() runs (its exception, if any, is swallowed)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(SheetError, TimeLimitReached):
            function()
        return tracemalloc.get_traced_memory()[1] / 1024**2
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------
# Rows: every row counts, and an XLSX row beyond the limit is refused where it is numbered


def test_an_xlsx_row_numbered_far_beyond_the_limit_is_refused_at_once(tmp_path):
    content = files.far_row_xlsx(1_000_000_000_000_000)
    started = time.monotonic()

    error = within(5, lambda: refusal(tmp_path, content, "s.xlsx", max_rows=2_000_000))

    assert time.monotonic() - started < 1
    assert (error.code, error.unsupported) == ("too_many_rows", False)
    assert "1,000,000,000,000,000" in error.message


def test_an_xlsx_row_just_past_the_limit_is_refused_and_the_last_allowed_one_read(tmp_path):
    # The limit counts rows besides the header: max_rows=10 allows rows numbered up to 11.
    assert read(tmp_path, files.far_row_xlsx(11), "s.xlsx", max_rows=10) == (["sample_id"], [(11, ["S1"])])
    assert refusal(tmp_path, files.far_row_xlsx(12), "s.xlsx", max_rows=10).code == "too_many_rows"


def test_a_cell_reference_beyond_the_row_limit_is_refused_even_in_a_row_without_number(tmp_path):
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b'<row r="2">', b"<row>").replace(b'r="A2"', b'r="A99999999999"'),
    )

    assert within(5, lambda: refusal(tmp_path, content, "s.xlsx")).code == "too_many_rows"


def test_an_xlsx_column_beyond_the_column_limit_is_refused_where_it_is_seen(tmp_path):
    error = within(5, lambda: refusal(tmp_path, files.far_column_xlsx("XFD"), "s.xlsx", max_columns=500))

    assert (error.code, error.unsupported) == ("too_many_columns", False)
    assert "500" in error.message


def test_an_xlsx_row_of_more_cells_than_the_column_limit_is_refused(tmp_path):
    # Cells without references, or all at A1: counted, not trusted to stay in the first column.
    cells = b"<c><v>1</v></c>" * 6
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b'<c r="A2" t="inlineStr"><is><t>S1</t></is></c>', cells),
    )

    assert refusal(tmp_path, content, "s.xlsx", max_columns=5).code == "too_many_columns"
    assert read(tmp_path, content, "s.xlsx", max_columns=6)[1] == [(2, [1, 1, 1, 1, 1, 1])]


def test_blank_csv_rows_count_toward_the_limit_also_above_the_header(tmp_path):
    # Three blank lines above the header and one data row: four rows besides the header.
    content = b"\r\n;\r\n\r\nsample_id;note\r\nS1;x\r\n"

    assert read(tmp_path, content, max_rows=4) == (["sample_id", "note"], [(5, ["S1", "x"])])
    error = refusal(tmp_path, content, max_rows=3)
    assert error.code == "too_many_rows"
    assert "more than 3" in error.message


def test_blank_xlsx_rows_count_toward_the_limit(tmp_path):
    blank_rows = b"".join(b'<row r="%d"/>' % number for number in range(3, 9))
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b"</sheetData>", blank_rows + b"</sheetData>"),
    )

    assert read(tmp_path, content, "s.xlsx", max_rows=7)[1] == [(2, ["S1"])]
    assert refusal(tmp_path, content, "s.xlsx", max_rows=6).code == "too_many_rows"


def test_xlsx_rows_out_of_order_are_a_damaged_sheet_not_silently_dropped(tmp_path):
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"], ["S2"]]),
        lambda xml: xml.replace(b'<row r="3"', b'<row r="2"').replace(b'r="A3"', b'r="A2"'),
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


# ---------------------------------------------------------------------------------------------
# Columns and row size


def test_a_header_wider_than_the_column_limit_is_refused_when_the_sheet_opens(tmp_path):
    path = files.write_to(tmp_path, "stored", files.wide_csv(501))

    with (
        pytest.raises(SheetError) as caught,
        open_sheet(path, filename="s.csv", max_rows=10, max_columns=500),
    ):
        pass

    assert (caught.value.code, caught.value.unsupported) == ("too_many_columns", False)
    assert "500" in caught.value.message


def test_the_column_limit_defaults_to_the_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_UPLOAD_COLUMNS", 4)

    assert refusal(tmp_path, files.wide_csv(5)).code == "too_many_columns"
    assert read(tmp_path, files.wide_csv(4))[0] == ["c0", "c1", "c2", "c3"]


def test_a_data_row_wider_than_the_column_limit_is_refused_with_its_row(tmp_path):
    content = files.csv_bytes([HEADER, ["S1", "1", "x"], ["S2", "1", "x", *["extra"] * 8]])

    error = refusal(tmp_path, content, max_columns=10)

    assert error.code == "too_many_columns"
    assert "Row 3" in error.message


def test_a_million_column_header_is_refused_without_building_the_row(tmp_path):
    content = files.wide_csv(1_000_000)  # 7.9 MB on one line
    path = files.write_to(tmp_path, "stored", content)

    def open_it() -> None:
        with open_sheet(path, filename="s.csv", max_rows=10):
            pass

    with pytest.raises(SheetError) as caught:
        open_it()
    assert caught.value.code == "row_too_large"
    assert peak_memory_mb(open_it) < 30


def test_a_record_longer_than_the_row_bound_is_refused_also_across_quoted_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_ROW_CHARS", 1_000)
    many_lines = '"' + "\n".join(["x" * 50] * 30) + '"'
    content = files.csv_bytes([HEADER, ["S1", "1", "short"], ["S2", "1", many_lines]])

    error = refusal(tmp_path, content)

    assert error.code == "row_too_large"
    assert "Row 3" in error.message


def test_an_xlsx_row_whose_text_exceeds_the_row_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_reading, "MAX_ROW_CHARS", 1_000)
    content = files.xlsx_bytes([["sample_id", "note"], ["S1", "x" * 600], ["S2", "y" * 600, "z" * 600]])

    error = refusal(tmp_path, content, "s.xlsx")

    assert error.code == "row_too_large"
    assert "Row 3" in error.message


def test_a_header_cell_longer_than_any_field_name_is_refused(tmp_path):
    content = files.csv_bytes([["sample_id", "n" * 201], ["S1", "x"]])

    error = refusal(tmp_path, content)

    assert error.code == "header_too_long"
    assert "column 2" in error.message


def test_xml_without_a_tag_for_more_than_the_token_bound_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_xml, "MAX_XML_TOKEN_BYTES", 100_000)
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b"<sheetData>", b"<sheetData><!--" + b"x" * 300_000 + b"-->"),
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_xml_nested_deeper_than_a_workbook_is_refused(tmp_path):
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + b"<x>" * 10_000 + b"</x>" * 10_000),
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_a_doctype_is_refused(tmp_path):
    content = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id"], ["S1"]]),
        lambda xml: b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">]>' + xml.replace(b"S1", b"&a;"),
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


# ---------------------------------------------------------------------------------------------
# The shared strings table


def test_shared_strings_are_read_including_rich_text_runs_but_not_phonetic_guides(tmp_path):
    table = files.shared_strings_xml(["sample_id", "note"]).replace(
        b"</sst>",
        b"<si><t>S1</t></si>"
        b'<si><r><rPr><b/></rPr><t>bold</t></r><r><t xml:space="preserve"> and plain</t></r>'
        b'<rPh sb="0" eb="1"><t>PHONETIC</t></rPh></si></sst>',
    )
    workbook = files.with_sheet_xml(
        files.xlsx_bytes([["sample_id", "note"], ["S1", "x"]]),
        lambda xml: (
            xml.replace(b't="inlineStr"><is><t>sample_id</t></is>', b't="s"><v>0</v>')
            .replace(b't="inlineStr"><is><t>note</t></is>', b't="s"><v>1</v>')
            .replace(b't="inlineStr"><is><t>S1</t></is>', b't="s"><v>2</v>')
            .replace(b't="inlineStr"><is><t>x</t></is>', b't="s"><v>3</v>')
        ),
    )

    content = files.with_shared_strings(workbook, table)

    assert read(tmp_path, content, "s.xlsx") == (["sample_id", "note"], [(2, ["S1", "bold and plain"])])


def test_a_cell_referring_past_the_shared_strings_is_damaged(tmp_path):
    content = files.with_shared_strings(
        files.with_sheet_xml(
            files.xlsx_bytes([["sample_id"], ["S1"]]),
            lambda xml: xml.replace(b't="inlineStr"><is><t>S1</t></is>', b't="s"><v>7</v>'),
        ),
        files.shared_strings_xml(["sample_id"]),
    )

    assert refusal(tmp_path, content, "s.xlsx").code == "unreadable"


def test_a_shared_strings_table_over_the_entry_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS", 1_000)
    parsed = []
    monkeypatch.setattr(xlsx_parts.SharedStrings, "extend", lambda table, texts: parsed.extend(texts))

    error = refusal(tmp_path, files.shared_strings_xlsx(1_001), "s.xlsx")

    assert (error.code, error.unsupported) == ("strings_table_too_large", False)
    assert "1,000" in error.message
    assert parsed == []


def test_a_shared_strings_table_at_the_entry_limit_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS", 1_000)

    assert read(tmp_path, files.shared_strings_xlsx(1_000), "s.xlsx") == (["sample_id"], [(2, ["S1"])])


def test_a_shared_strings_table_over_the_byte_limit_is_refused_from_the_zip_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS_MB", 1)
    content = files.shared_strings_xlsx(60_000)  # about 1.1 MB of XML
    opened = []
    real_open = zipfile.ZipFile.open

    def open_member(archive, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(archive, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", open_member)

    assert refusal(tmp_path, content, "s.xlsx").code == "strings_table_too_large"
    assert "xl/sharedStrings.xml" not in opened


def test_entries_the_quick_count_misses_are_still_bounded_by_the_parser(tmp_path, monkeypatch):
    # A namespace prefix hides the entries from the byte scan; the parser counts them itself.
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS", 100)
    entries = b"".join(b"<x:si><x:t>t%d</x:t></x:si>" % number for number in range(101))
    table = (
        b'<x:sst xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + entries + b"</x:sst>"
    )
    content = files.with_shared_strings(files.xlsx_bytes([["sample_id"], ["S1"]]), table)

    assert refusal(tmp_path, content, "s.xlsx").code == "strings_table_too_large"


def test_a_large_shared_strings_table_is_refused_with_little_memory(tmp_path, monkeypatch):
    # The hostile table (5,000,000 entries in 91 MB) scaled down 20 times, against a limit scaled the same.
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS", 100_000)
    path = files.write_to(tmp_path, "stored", files.shared_strings_xlsx(250_000))

    def open_it() -> None:
        with open_sheet(path, filename="s.xlsx", max_rows=10):
            pass

    assert peak_memory_mb(open_it) < 10


# ---------------------------------------------------------------------------------------------
# The ZIP's member count


def test_a_zip_that_understates_its_member_count_is_refused_by_what_it_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_archive, "MAX_ZIP_MEMBERS", 20)
    content = files.zip_with_claimed_count({f"m{number}": b"" for number in range(41)}, claimed=9)
    assert zipfile.ZipFile(io.BytesIO(content)).infolist()[40].filename == "m40"  # zipfile reads all 41
    constructed = []
    monkeypatch.setattr(xlsx_archive.zipfile, "ZipFile", lambda *args, **kwargs: constructed.append(args))

    error = refusal(tmp_path, content, "s.xlsx")

    assert (error.code, constructed) == ("zip_bomb", [])


def test_a_central_directory_larger_than_a_workbook_needs_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx_archive, "MAX_CENTRAL_DIRECTORY_BYTES", 500)
    content = files.zip_bytes({f"member-{number:04d}": b"" for number in range(20)})

    assert refusal(tmp_path, content, "s.xlsx").code == "zip_bomb"


def test_a_real_workbook_passes_the_central_directory_walk(tmp_path, monkeypatch):
    workbook = files.xlsx_bytes([["sample_id"], ["S1"]])
    monkeypatch.setattr(
        xlsx_archive, "MAX_ZIP_MEMBERS", len(zipfile.ZipFile(io.BytesIO(workbook)).namelist())
    )

    assert read(tmp_path, workbook, "s.xlsx") == (["sample_id"], [(2, ["S1"])])


# ---------------------------------------------------------------------------------------------
# Text encoding: UTF-8 with a few bad bytes is refused; only a file that is not UTF-8 is legacy


def test_utf8_with_a_stray_byte_is_refused_naming_its_line(tmp_path):
    rows = [HEADER, ["S1", "1", "café naïve 日本"], ["S2", "2", "ok"]]
    content = files.csv_bytes(rows) + b"S3,3,caf\xe9\r\n"

    error = refusal(tmp_path, content)

    assert (error.code, error.unsupported) == ("invalid_encoding", False)
    assert "line 4" in error.message


def test_one_utf8_letter_and_one_stray_byte_is_refused_rather_than_guessed(tmp_path):
    content = files.csv_bytes([HEADER, ["S1", "1", "café"]]) + b"S2,2,caf\xe9\r\n"

    assert refusal(tmp_path, content).code == "invalid_encoding"


def test_utf8_bom_with_a_bad_byte_is_refused(tmp_path):
    content = files.csv_bytes([HEADER, ["S1", "1", "x"]], bom=True) + b"S2,2,\xff\r\n"

    error = refusal(tmp_path, content)

    assert error.code == "invalid_encoding"
    assert "line 3" in error.message


def test_windows_1252_whose_bytes_form_a_utf8_letter_by_chance_is_still_read_as_such(tmp_path):
    # „Groß“ in Windows-1252 ends in DF 93, which is also a well-formed UTF-8 letter (U+07D3); the
    # file's other accents are not UTF-8 at all.
    rows = [HEADER, ["S1", "1", "„Groß“"], ["S2", "2", "Größe, Maße, Übung, café"]]
    content = files.csv_bytes(rows, encoding="cp1252")
    assert len(content.decode("utf-8", "replace")) < len(content)  # some bytes do decode

    assert read(tmp_path, content)[1] == [
        (2, ["S1", "1", "„Groß“"]),
        (3, ["S2", "2", "Größe, Maße, Übung, café"]),
    ]


# ---------------------------------------------------------------------------------------------
# Delimiter detection: a bounded prefix, at bounded cost


@pytest.mark.parametrize(
    "sample",
    [',"a' * 5461, (',"a' * 80 + "\n") * 68, ' "a\n' * 4000, "'" * 16384, '"' * 16384],
    ids=["quotes-no-close", "quotes-per-line", "spaces-quotes", "apostrophes", "quotes"],
)
def test_delimiter_detection_is_cheap_whatever_the_sample_holds(sample):
    started = time.monotonic()

    assert detect_delimiter(sample) in readers.DELIMITERS

    assert time.monotonic() - started < 0.5


def test_delimiter_detection_reads_only_a_bounded_prefix(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(readers, "detect_delimiter", lambda sample, prefer_tab: seen.append(sample) or ";")
    content = files.csv_bytes(
        [["sample_id", "note"], *[[f"S{number}", "x" * 100] for number in range(2_000)]]
    )

    read(tmp_path, content, max_rows=10_000)

    assert len(seen[0]) <= readers.DELIMITER_SAMPLE_CHARS


@pytest.mark.parametrize(
    ("sample", "delimiter"),
    [
        ("sample_id;volume, mL;note\nS1;5,5;x\nS2;4;y\n", ";"),
        ("sample_id,volume;mL,note\nS1,5;5,x\n", ","),
        ("a\tb\tc\n1\t2\t3\n", "\t"),
        ('sample_id,note\nS1,"a;b;c;d"\nS2,"e;f;g;h"\n', ","),
        ("sample_id\nS1\nS2\n", ","),
        ("", ","),
    ],
)
def test_delimiter_is_the_one_giving_consistent_columns(sample, delimiter):
    assert detect_delimiter(sample) == delimiter


# ---------------------------------------------------------------------------------------------
# The deadline


def test_a_past_deadline_stops_a_csv_before_its_rows(tmp_path):
    path = files.write_to(tmp_path, "stored", files.csv_bytes([HEADER, ["S1", "1", "x"]]))

    with (
        pytest.raises(TimeLimitReached),
        open_sheet(path, filename="s.csv", max_rows=10, deadline=time.monotonic() - 1),
    ):
        pass


def test_a_past_deadline_stops_a_workbook_before_its_rows(tmp_path):
    path = files.write_to(tmp_path, "stored", files.xlsx_bytes([["sample_id"], ["S1"]]))

    with (
        pytest.raises(TimeLimitReached),
        open_sheet(path, filename="s.xlsx", max_rows=10, deadline=time.monotonic() - 1),
    ):
        pass


def test_time_limit_reached_is_not_a_refusal_of_the_file():
    assert not issubclass(TimeLimitReached, SheetError)
    assert str(TimeLimitReached()) == "The file took too long to read."


@pytest.mark.parametrize("filename", ["s.csv", "s.xlsx"])
def test_a_deadline_passing_while_rows_are_read_stops_the_rows(tmp_path, monkeypatch, filename):
    rows = [["sample_id"], *[[f"S{number}"] for number in range(3_000)]]
    content = files.xlsx_bytes(rows) if filename.endswith(".xlsx") else files.csv_bytes(rows)
    path = files.write_to(tmp_path, "stored", content)
    now = [100.0]
    monkeypatch.setattr(reading_errors, "monotonic", lambda: now[0])

    read_rows = []

    def read_until_late(rows) -> None:
        for row in rows:
            read_rows.append(row)
            if len(read_rows) == 1_000:
                now[0] = 200.0

    with (
        open_sheet(path, filename=filename, max_rows=10_000, deadline=150.0) as sheet,
        pytest.raises(TimeLimitReached),
    ):
        read_until_late(sheet.rows)

    assert 1_000 <= len(read_rows) < 3_000


def late_only_inside(function_name: str):
    """A clock that reads 200 while `function_name` is running (anywhere up the stack), else 100."""

    def monotonic() -> float:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == function_name:
                return 200.0
            frame = frame.f_back
        return 100.0

    return monotonic


@pytest.mark.parametrize(
    ("loop", "content", "filename"),
    [
        (
            "_check_central_directory",
            files.zip_bytes({f"m{number}": b"" for number in range(3_000)}),
            "s.xlsx",
        ),
        ("_counted_entries", files.shared_strings_xlsx(100_000), "s.xlsx"),
        ("fed", files.xlsx_bytes([["sample_id"], ["S1"]]), "s.xlsx"),
        ("_first_undecodable_offset", files.csv_bytes([HEADER, ["S1", "1", "x"]]), "s.csv"),
        ("_mostly_utf8", files.csv_bytes([HEADER, ["S1", "1", "é"]], encoding="cp1252"), "s.csv"),
    ],
)
def test_every_long_loop_looks_at_the_deadline(tmp_path, monkeypatch, loop, content, filename):
    monkeypatch.setattr(reading_errors, "monotonic", late_only_inside(loop))

    with pytest.raises(TimeLimitReached) as caught:
        read(tmp_path, content, filename, deadline=150.0)

    assert loop in {entry.name for entry in caught.traceback}
