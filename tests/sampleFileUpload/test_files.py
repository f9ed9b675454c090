"""Files as researchers write them, files that are not sheets, limits, and where uploads are stored."""

import datetime as dt

import pytest
from sqlalchemy import select

from src.config import settings
from src.database import SessionFactory
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.models import SampleFile
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import (
    HEADER,
    assert_import_failed,
    csv_bytes,
    files_url,
    good_rows,
    stored_files,
    upload,
)
from tests.sampleFileUpload.files import ole2_bytes, xlsx_bytes, zip_bomb_xlsx
from tests.study.conftest import study_url

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def values_by_id(study) -> dict[str, dict]:
    async with SessionFactory() as session:
        rows = await session.execute(
            select(Sample.sample_id, Sample.values).where(Sample.study_id == study.id)
        )
        return dict(rows.all())


async def test_excel_csv_with_semicolons_windows_1252_and_decimal_commas(client, alice_headers, study):
    rows = [["sample_id", "tissue", "volume [mL]", "label"], ["Größe-1", "blood", "3,5", "ÄB"[1:]]]
    content = csv_bytes(rows, delimiter=";", encoding="cp1252")

    response = await upload(client, study, alice_headers, content, filename="Proben.csv")

    assert response.status_code == 201, response.text
    assert response.json()["encoding"].lower() in {"cp1252", "windows-1252"}
    assert await values_by_id(study) == {"Größe-1": {"tissue": "blood", "volume": 3.5, "label": "B"}}


async def test_utf8_csv_with_a_bom(client, alice_headers, study):
    content = csv_bytes([["sample_id", "tissue", "label"], ["S-1", "blood", "AB"]], bom=True)

    response = await upload(client, study, alice_headers, content)

    assert response.status_code == 201, response.text
    assert response.json()["report"]["columns"][0] == {"header": "sample_id", "field": "sample_id"}
    assert await values_by_id(study) == {"S-1": {"tissue": "blood", "label": "AB"}}


async def test_a_quoted_line_break_stays_inside_its_cell(client, alice_headers, study):
    content = csv_bytes([["sample_id", "tissue", "label"], ["S-1", "blood", "A\nB"]])
    assert b'"A\nB"' in content

    response = await upload(client, study, alice_headers, content)

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    assert [(e["row"], e["column"], e["value"], e["code"]) for e in body["report"]["errors"]] == [
        (2, "label", "A\nB", "invalid_text")  # read whole, refused: text is one line
    ]


async def test_tsv_is_read_as_tsv(client, alice_headers, study):
    content = csv_bytes([["sample_id", "tissue"], ["S-1", "blood"]], delimiter="\t")

    response = await upload(client, study, alice_headers, content, filename="samples.tsv")

    assert response.status_code == 201, response.text
    assert response.json()["format"] == "tsv"


async def test_xlsx_with_real_dates_numbers_and_blank_rows(client, alice_headers, study):
    rows = [
        ["sample_id", "tissue", "age", "volume [mL]", "collected_on", "frozen_at"],
        ["X-1", "blood", 34.0, 2.25, dt.datetime(2026, 11, 20), dt.datetime(2026, 11, 20, 8, 30)],
        [None, None, None, None, None, None],
        [42, "saliva", 7, 1, dt.date(2026, 1, 2), None],
    ]

    response = await upload(
        client, study, alice_headers, xlsx_bytes(rows), filename="samples.xlsx", content_type=XLSX_TYPE
    )

    assert response.status_code == 201, response.text
    assert response.json()["format"] == "xlsx"
    assert response.json()["report"]["rows"] == 2
    assert await values_by_id(study) == {
        "X-1": {
            "tissue": "blood",
            "age": 34,
            "volume": 2.25,
            "collected_on": "2026-11-20",
            "frozen_at": "2026-11-20T08:30:00Z",
        },
        "42": {"tissue": "saliva", "age": 7, "volume": 1.0, "collected_on": "2026-01-02"},
    }


async def test_xlsx_errors_name_the_row_as_excel_numbers_it(client, alice_headers, study):
    rows = [["sample_id", "tissue"], ["A", "blood"], [None, None], ["B", "plasma"]]

    response = await upload(client, study, alice_headers, xlsx_bytes(rows), filename="s.xlsx")

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    assert [(e["row"], e["column"]) for e in body["report"]["errors"]] == [(4, "tissue")]


async def test_blank_lines_above_the_header_move_its_column_errors_to_the_row_it_is_on(
    client, alice_headers, study
):
    # In an editor the header below two blank lines is line 3: its column errors are reported
    # there, like the rows under it, and not on a row 1 that is blank.
    content = b"\r\n\r\nsample_id,tissue,colour\r\nS-1,blood,red\r\nS-1,blood,red\r\n"

    response = await upload(client, study, alice_headers, content)

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    assert [(e["row"], e["code"]) for e in body["report"]["errors"]] == [
        (3, "unknown_column"),
        (5, "duplicate_in_file"),
    ]


async def test_the_template_description_row_is_skipped_also_below_blank_lines(client, alice_headers, study):
    template = (await client.get(study_url(study, "sample-template"), headers=alice_headers)).content
    template = template.removeprefix(b"\xef\xbb\xbf")

    response = await upload(client, study, alice_headers, b"\r\n" + template + b"S-1,,blood,,,,,,\r\n")

    assert response.status_code == 201, response.text
    assert response.json()["report"]["rows"] == 1


@pytest.mark.parametrize(
    ("content", "filename", "status", "code"),
    [
        (ole2_bytes(), "old.xls", 415, "UNSUPPORTED_FILE_TYPE"),
        (ole2_bytes(encrypted=True), "locked.xlsx", 415, "UNSUPPORTED_FILE_TYPE"),
        (b"sample_id,tissue\nS-1,blood\n", "samples.xlsx", 415, "UNSUPPORTED_FILE_TYPE"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "photo.csv", 415, "UNSUPPORTED_FILE_TYPE"),
        (b"", "empty.csv", 422, "UNREADABLE_FILE"),
    ],
)
async def test_files_that_are_not_sheets_are_refused_and_not_stored(
    client, alice_headers, study, content, filename, status, code
):
    response = await upload(client, study, alice_headers, content, filename=filename)

    assert_problem(response, status, code)
    assert stored_files() == []


async def test_a_zip_bomb_is_refused_before_it_is_opened(client, alice_headers, study):
    response = await upload(client, study, alice_headers, zip_bomb_xlsx(200), filename="bomb.xlsx")

    assert_problem(response, 422, "UNREADABLE_FILE")
    assert stored_files() == []


async def test_more_rows_than_the_limit_is_422_and_nothing_is_written(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(upload_settings, "MAX_UPLOAD_ROWS", 5)

    response = await upload(client, study, alice_headers, csv_bytes([HEADER, *good_rows(6)]))

    # Found by the import job, as it reads the rows: its record says failed, and why.
    body = await assert_import_failed(client, alice_headers, response, 422, "UNREADABLE_FILE")
    assert "more than 5" in body["detail"]
    assert await values_by_id(study) == {}


async def test_a_file_past_the_size_limit_is_413_while_streaming_and_leaves_no_file(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(upload_settings, "MAX_UPLOAD_MB", 1)
    received = 0

    async def body():
        nonlocal received
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        for _ in range(64):  # 4 MB offered, 64 KB at a time; the server stops reading past 1 MB
            received += 1
            yield b"x" * 65_536
        yield b"\r\n" + boundary + b"--\r\n"

    response = await client.post(
        files_url(study),
        content=body(),
        headers={**alice_headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )

    assert_problem(response, 413, "UPLOAD_TOO_LARGE")
    assert received < 20
    assert stored_files() == []


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../x.csv", "x.csv"),
        ("..\\\\..\\\\windows\\\\x.csv", "x.csv"),
        ("/etc/passwd", "passwd"),
        ("a\x01b\x1f\u202ec.csv", "abc.csv"),  # NUL is refused (tests/test_bad_input.py)
        ("é" * 300 + ".csv", "é" * 251 + ".csv"),  # cut to 255 characters in the stem
        ("..", "upload"),
    ],
)
async def test_client_file_names_are_stored_cleaned_and_never_used_as_paths(
    client, alice_headers, study, sent, stored
):
    content = csv_bytes([["sample_id", "tissue"], ["S-1", "blood"]])
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="'
        + sent.encode()
        + b'"\r\n\r\n'
        + content
        + b"\r\n--b0undary--\r\n"
    )
    response = await client.post(
        files_url(study),
        content=body,
        headers={**alice_headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["filename"] == stored
    async with SessionFactory() as session:
        record = await session.scalar(select(SampleFile))
    assert record.storage_key != stored
    (path,) = stored_files()
    assert path.name == record.storage_key
    download = await client.get(f"/api/v1/sample-files/{record.id}/content", headers=alice_headers)
    disposition = download.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "/" not in disposition.split('"')[1]
    assert "\x00" not in disposition
    assert disposition.isascii()


async def test_a_rejected_file_keeps_the_upload_and_its_errors_and_no_temporary_file(
    client, alice_headers, study
):
    response = await upload(
        client, study, alice_headers, csv_bytes([["sample_id", "tissue"], ["S-1", "plasma"]])
    )

    assert response.status_code == 422
    stored = [path.relative_to(settings.UPLOAD_DIR) for path in stored_files()]
    # The file and its errors; nothing left in the temporary area.
    assert [path.parts[0] for path in stored] == ["files", "files"]
