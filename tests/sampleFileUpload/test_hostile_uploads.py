"""Hostile sheets through the API: refused at once with a problem whose `errors` carry the reader's
stable code, nothing left stored; and values right of the header reported once per column."""

import csv
import io

import pytest

from src.sampleFileUpload.config import upload_settings
from tests.conftest import assert_problem
from tests.sampleFileUpload import files
from tests.sampleFileUpload.conftest import (
    HEADER,
    assert_import_failed,
    csv_bytes,
    good_rows,
    stored_files,
    upload,
)


def file_error(body: dict) -> dict:
    [error] = body["errors"]
    assert error["loc"] == ["body", "file"]
    assert error["msg"] == body["detail"]
    return error


@pytest.mark.parametrize(
    ("content", "filename", "code"),
    [
        (files.far_row_xlsx(1_000_000_000_000_000), "far.xlsx", "too_many_rows"),
        (files.far_column_xlsx("XFD"), "wide.xlsx", "too_many_columns"),
        (files.wide_csv(501), "wide.csv", "too_many_columns"),
        (files.wide_csv(200_000), "wider.csv", "row_too_large"),
        (csv_bytes([["sample_id", "x" * 300], ["S-1", "1"]]), "long.csv", "header_too_long"),
        (
            csv_bytes([["sample_id", "tissue"], ["S-café naïve 日本", "blood"]]) + b"S-caf\xe9,blood\r\n",
            "stray.csv",
            "invalid_encoding",
        ),
        (files.zip_bomb_xlsx(200), "bomb.xlsx", "zip_bomb"),
    ],
    ids=["far-row", "far-column", "wide-header", "huge-header-line", "long-header", "stray-byte", "zip-bomb"],
)
async def test_a_hostile_sheet_is_422_with_the_reader_code_and_nothing_is_stored(
    client, alice_headers, study, content, filename, code
):
    response = await upload(client, study, alice_headers, content, filename=filename)

    body = assert_problem(response, 422, "UNREADABLE_FILE")
    assert file_error(body)["code"] == code
    assert len(response.content) < 4_096
    if "sample_file_id" in body:  # refused by the import job, as it read the rows: its record says why
        await assert_import_failed(client, alice_headers, response, 422, "UNREADABLE_FILE")
    else:  # refused before anything was stored
        assert stored_files() == []


async def test_a_shared_strings_table_over_its_limit_is_422(client, alice_headers, study, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_XLSX_SHARED_STRINGS", 1_000)

    response = await upload(client, study, alice_headers, files.shared_strings_xlsx(5_000), filename="s.xlsx")

    assert file_error(assert_problem(response, 422, "UNREADABLE_FILE"))["code"] == "strings_table_too_large"
    assert stored_files() == []


async def test_a_zip_lying_about_its_member_count_is_422(client, alice_headers, study):
    # One more member than MAX_ZIP_MEMBERS, its end record claiming 9.
    members = {f"xl/m{number}.xml": b"" for number in range(10_005)}
    content = files.zip_with_claimed_count(members, claimed=9)

    response = await upload(client, study, alice_headers, content, filename="s.xlsx")

    assert file_error(assert_problem(response, 422, "UNREADABLE_FILE"))["code"] == "zip_bomb"
    assert stored_files() == []


async def test_a_kind_of_file_we_do_not_take_is_415_with_its_code(client, alice_headers, study):
    response = await upload(client, study, alice_headers, files.ole2_bytes(), filename="old.xls")

    assert file_error(assert_problem(response, 415, "UNSUPPORTED_FILE_TYPE"))["code"] == "unsupported_format"


async def test_the_column_limit_is_the_setting(client, alice_headers, study, monkeypatch):
    monkeypatch.setattr(upload_settings, "MAX_UPLOAD_COLUMNS", 7)
    content = csv_bytes([[*HEADER, "extra"], [*good_rows(1)[0], "x"]])

    response = await upload(client, study, alice_headers, content)

    assert "at most 7" in file_error(assert_problem(response, 422, "UNREADABLE_FILE"))["msg"]


async def test_values_right_of_the_header_are_one_error_and_stored_at_the_header_width(
    client, alice_headers, study
):
    rows = [[*row, *(["stray"] * 400)] for row in good_rows(500)]
    content = csv_bytes([HEADER, *rows])

    response = await upload(client, study, alice_headers, content)

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    # An error of the columns (issue 18): on the header row, counted apart; no row is rejected for it.
    report = body["report"]
    assert (report["errors_total"], report["column_errors"], report["rejected"]) == (1, 1, 0)
    assert [(e["row"], e["column"], e["code"], e["message"]) for e in report["errors"]] == [
        (1, None, "unknown_column", "columns 8-407 have values but no header (first on row 2)")
    ]
    errors_csv = await client.get(
        f"/api/v1/sample-files/{body['sample_file_id']}/errors.csv", headers=alice_headers
    )
    lines = list(csv.reader(io.StringIO(errors_csv.content.decode("utf-8-sig"))))
    assert [len(line) for line in lines] == [2 + len(HEADER), 2]  # the header, then the column's error
    assert sum(path.stat().st_size for path in stored_files()) < 2 * len(content)
