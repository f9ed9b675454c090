"""Records of sample files: listing, reading, downloading, deleting; who may do what."""

import csv
import datetime as dt
import hashlib
import io
import uuid
from unittest.mock import ANY

import pytest
from sqlalchemy import delete, select

from src.config import settings
from src.database import SessionFactory
from src.sampleFileUpload import exports, import_runs
from src.sampleFileUpload.constants import ERRORS_FILE_UPLOAD_MULTIPLE, HEADER_MAX_LENGTH, MAX_REPORT_TEXT
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.storage import LocalStorage
from src.study.constants import StudyRole, StudyStatus
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import (
    SAMPLE_FILES,
    csv_bytes,
    files_url,
    sample_csv,
    stored_files,
    upload,
)
from tests.sampleFileUpload.files import xlsx_bytes
from tests.sampleFileUpload.test_files import XLSX_TYPE
from tests.study.conftest import FIELDS, study_url


def file_url(file_id: str, *rest: str) -> str:
    return "/".join([SAMPLE_FILES, file_id, *rest])


async def imported(client, study, headers, count: int = 2, *, start: int = 1, **kwargs) -> dict:
    response = await upload(client, study, headers, sample_csv(count, start=start), **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


async def rejected(client, study, headers) -> str:
    response = await upload(client, study, headers, csv_bytes([["sample_id", "tissue"], ["S-1", "plasma"]]))
    assert response.status_code == 422, response.text
    return response.json()["sample_file_id"]


# Reading


async def test_list_is_newest_first_and_paginated(client, alice_headers, study):
    first = await imported(client, study, alice_headers, 1)
    second = await imported(client, study, alice_headers, 1, start=10, filename="b.csv", mode="upsert")
    third = await rejected(client, study, alice_headers)

    page = await client.get(files_url(study), params={"page_size": 2}, headers=alice_headers)

    assert page.status_code == 200
    body = page.json()
    assert [item["id"] for item in body["items"]] == [third, second["id"]]
    assert (body["total"], body["total_is_exact"]) == (3, True)
    rest = await client.get(files_url(study), params={"page_size": 2, "page": 2}, headers=alice_headers)
    assert [item["id"] for item in rest.json()["items"]] == [first["id"]]


async def test_one_record_with_its_report(client, alice_headers, study):
    record = await imported(client, study, alice_headers, 2)

    response = await client.get(file_url(record["id"]), headers=alice_headers)

    assert response.status_code == 200
    assert response.json() == {**record, "duplicate_of": None}


async def test_download_streams_the_original_bytes_with_etag_and_304(client, alice_headers, study):
    content = sample_csv(2)
    record = await imported(client, study, alice_headers, 2, filename="Proben ä.csv")

    download = await client.get(file_url(record["id"], "content"), headers=alice_headers)

    assert download.status_code == 200
    assert download.content == content
    tag = f'"{hashlib.sha256(content).hexdigest()}"'
    assert download.headers["etag"] == tag
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"Proben a.csv\"; filename*=UTF-8''Proben%20%C3%A4.csv"
    )
    again = await client.get(
        file_url(record["id"], "content"), headers={**alice_headers, "If-None-Match": tag}
    )
    assert again.status_code == 304
    assert again.content == b""
    other = await client.get(
        file_url(record["id"], "content"), headers={**alice_headers, "If-None-Match": '"x"'}
    )
    assert other.status_code == 200


async def test_errors_csv_of_an_imported_file_has_only_the_header(client, alice_headers, study):
    record = await imported(client, study, alice_headers)

    response = await client.get(file_url(record["id"], "errors.csv"), headers=alice_headers)

    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").splitlines() == [
        "# row,# errors,sample_id,status,tissue,volume [mL],age,fasting,collected_on"
    ]


def csv_lines(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


async def rejected_rows(client, study, headers, content: bytes, **kwargs) -> list[list[str]]:
    response = await upload(client, study, headers, content, **kwargs)
    assert response.status_code == 422, response.text
    errors = await client.get(file_url(response.json()["sample_file_id"], "errors.csv"), headers=headers)
    assert errors.status_code == 200
    return csv_lines(errors)


async def test_errors_csv_gives_each_rejected_row_back_as_it_was_with_its_errors(
    client, alice_headers, study
):
    rows = [
        ["sample_id", "tissue", "age", "colour"],
        ["S-1", "blood", "40", ""],
        ["S-2", "=cmd()", "many", ""],
        ["S-1", "blood", " 7 ", ""],
    ]

    lines = await rejected_rows(client, study, alice_headers, csv_bytes(rows))

    assert lines == [
        ["# row", "# errors", "sample_id", "tissue", "age", "colour"],
        ["1", "colour: is not a field of this study (unknown_column)"],
        [
            "3",
            "tissue: not one of: blood, saliva, tumour (not_a_choice); "
            "age: must be a whole number, such as 1234 or 1,234 (not_an_integer)",
            "S-2",
            "'=cmd()",  # formula guarded; the reader takes the apostrophe off again
            "many",
            "",
        ],
        [
            "4",
            "sample_id: is on row 2 of this file already (duplicate_in_file)",
            "S-1",
            "blood",
            " 7 ",
            "",
        ],
    ]


async def test_errors_csv_names_a_missing_column_on_row_1(client, alice_headers, study):
    lines = await rejected_rows(client, study, alice_headers, csv_bytes([["sample_id", "age"], ["S-1", "4"]]))

    assert lines[1][:2] == [
        "1",
        "tissue: is a required column but the file has no such header (missing_column)",
    ]
    assert lines[2:] == []


async def test_errors_csv_of_an_xlsx_file_has_its_cells_as_text(client, alice_headers, study):
    rows = [
        ["sample_id", "tissue", "age", "collected_on"],
        ["S-1", "plasma", 34.0, dt.datetime(2026, 11, 20)],
    ]

    lines = await rejected_rows(
        client, study, alice_headers, xlsx_bytes(rows), filename="samples.xlsx", content_type=XLSX_TYPE
    )

    assert lines[1:] == [["2", ANY, "S-1", "plasma", "34", "2026-11-20T00:00:00"]]
    assert lines[1][1].endswith("(not_a_choice)")


async def test_the_fixed_rows_of_errors_csv_upload_as_they_are(client, alice_headers, study):
    rows = [["sample_id", "tissue", "age"], ["S-1", "=plasma", "4"], ["S-2", "blood", "-1"]]
    lines = await rejected_rows(client, study, alice_headers, csv_bytes(rows))
    lines[1][3], lines[2][4] = "saliva", "1"

    response = await upload(client, study, alice_headers, csv_bytes(lines))

    assert response.status_code == 201, response.text
    assert response.json()["report"]["created"] == 2
    assert [column["field"] for column in response.json()["report"]["columns"]] == [
        None,
        None,
        "sample_id",
        "tissue",
        "age",
    ]


async def test_an_unknown_file_is_404(client, alice_headers):
    response = await client.get(file_url("00000000-0000-0000-0000-000000000000"), headers=alice_headers)

    assert_problem(response, 404, "SAMPLE_FILE_NOT_FOUND")


# Deleting


async def test_owner_deletes_a_rejected_file_and_its_stored_files(client, alice_headers, study):
    file_id = await rejected(client, study, alice_headers)

    response = await client.delete(file_url(file_id), headers=alice_headers)

    assert response.status_code == 204
    assert_problem(await client.get(file_url(file_id), headers=alice_headers), 404, "SAMPLE_FILE_NOT_FOUND")
    assert stored_files() == []


async def test_an_imported_file_is_deletable_only_once_its_samples_are_gone(client, alice_headers, study):
    record = await imported(client, study, alice_headers)

    refused = await client.delete(file_url(record["id"]), headers=alice_headers)
    assert_problem(refused, 409, "SAMPLE_FILE_NOT_DELETABLE")
    async with SessionFactory() as session:
        await session.execute(delete(Sample).where(Sample.study_id == study.id))
        await session.commit()
    allowed = await client.delete(file_url(record["id"]), headers=alice_headers)

    assert allowed.status_code == 204
    assert stored_files() == []


async def test_deleting_a_draft_study_deletes_its_files_stored_bytes_at_once(
    client, alice, alice_headers, make_study
):
    draft = await make_study(owner=alice, sample_fields=FIELDS)
    await rejected(client, draft, alice_headers)
    second = csv_bytes([["sample_id", "tissue"], ["S-2", "plasma"]])
    assert (await upload(client, draft, alice_headers, second)).status_code == 422
    assert len(stored_files()) == 4  # each rejected file: the upload and its errors

    response = await client.delete(study_url(draft), headers=alice_headers)

    assert response.status_code == 204, response.text
    assert stored_files() == []  # not left for `prune`, a day later


async def test_a_study_delete_refused_keeps_its_files_stored_bytes(client, alice, alice_headers, make_study):
    draft = await make_study(owner=alice, sample_fields=FIELDS)
    await rejected(client, draft, alice_headers)

    response = await client.delete(study_url(draft), headers={**alice_headers, "If-Match": '"99"'})

    assert_problem(response, 412, "PRECONDITION_FAILED")
    assert len(stored_files()) == 2


# Authorization: non-member 404, viewer 403 for writes, editor uploads but does not delete.


@pytest.fixture
async def member_headers(make_user, add_member, auth_headers, study):
    async def headers_of(role: StudyRole | None) -> dict[str, str]:
        user = await make_user()
        if role is not None:
            await add_member(study, user, role)
        return await auth_headers(user)

    return headers_of


@pytest.mark.parametrize(
    ("role", "upload_status", "read_status", "delete_status"),
    [
        (None, 404, 404, 404),
        (StudyRole.VIEWER, 403, 200, 403),
        (StudyRole.EDITOR, 201, 200, 403),
        (StudyRole.OWNER, 201, 200, 204),
    ],
)
async def test_authorization_matrix(
    client, alice_headers, study, member_headers, role, upload_status, read_status, delete_status
):
    headers = await member_headers(role)
    file_id = await rejected(client, study, alice_headers)

    uploaded = await upload(client, study, headers, sample_csv(1))
    reads = [
        await client.get(url, headers=headers)
        for url in (
            files_url(study),
            file_url(file_id),
            file_url(file_id, "content"),
            file_url(file_id, "errors.csv"),
            study_url(study, "sample-template"),
            study_url(study, "samples", "export"),
        )
    ]
    deleted = await client.delete(file_url(file_id), headers=headers)

    assert uploaded.status_code == upload_status, uploaded.text
    assert [response.status_code for response in reads] == [read_status] * len(reads)
    assert deleted.status_code == delete_status


async def test_an_admin_acts_as_owner(client, admin, auth_headers, alice_headers, study):
    file_id = await rejected(client, study, alice_headers)

    response = await client.delete(file_url(file_id), headers=await auth_headers(admin))

    assert response.status_code == 204


async def test_anonymous_requests_are_401(client, study):
    response = await upload(client, study, {}, sample_csv(1))

    assert_problem(response, 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("status", [StudyStatus.LOCKED, StudyStatus.ARCHIVED])
async def test_a_locked_or_archived_study_takes_no_upload_and_no_deletion(
    client, alice, alice_headers, make_study, status
):
    from tests.study.conftest import FIELDS

    study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    file_id = await rejected(client, study, alice_headers)
    async with SessionFactory() as session:
        current = await session.get(type(study), study.id)
        current.status = status
        await session.commit()

    uploaded = await upload(client, study, alice_headers, sample_csv(1))
    deleted = await client.delete(file_url(file_id), headers=alice_headers)

    assert_problem(uploaded, 409, "STUDY_READ_ONLY")
    assert_problem(deleted, 409, "STUDY_READ_ONLY")
    assert (await client.get(file_url(file_id), headers=alice_headers)).status_code == 200


def test_errors_csv_reads_an_error_file_stored_before_rows_kept_their_cells(tmp_path):
    storage = LocalStorage(tmp_path)
    with storage.temp_file() as path:
        path.write_bytes(
            b'{"row": 3, "column": "age", "value": "x", "code": "not_an_integer", '
            b'"message": "must be whole"}\n'
        )
        key = storage.save(path)
    record = SampleFile(report={"columns": [{"header": "sample_id"}, {"header": "age"}]}, errors_key=key)

    text = b"".join(exports.errors_csv(storage, record)).decode("utf-8-sig")

    assert text.splitlines() == ["# row,# errors,sample_id,age", "3,age: must be whole (not_an_integer)"]


# What is stored and listed stays small, whatever the file held.


async def test_the_stored_report_cuts_long_cells_and_headers_and_errors_csv_keeps_them(
    client, alice_headers, study
):
    long_value = "x" * 50_000
    long_header = "h" * HEADER_MAX_LENGTH  # the longest a reader takes
    content = csv_bytes([["sample_id", "tissue", long_header], ["S-1", long_value, ""]])

    response = await upload(client, study, alice_headers, content)

    assert response.status_code == 422, response.text
    record = (await client.get(file_url(response.json()["sample_file_id"]), headers=alice_headers)).json()
    report = record["report"]
    assert max(len(column["header"]) for column in report["columns"]) <= MAX_REPORT_TEXT
    cut = [error for error in report["errors"] if error["value"] and error["value"].startswith("x")]
    assert cut
    assert all(len(error["value"]) == MAX_REPORT_TEXT and error["value"][-1] == "…" for error in cut)
    unknown = [error for error in report["errors"] if error["code"] == "unknown_column"]
    assert unknown
    assert all(len(error["column"]) <= MAX_REPORT_TEXT for error in unknown)
    errors_csv = await client.get(file_url(record["id"], "errors.csv"), headers=alice_headers)
    assert long_value in errors_csv.text  # the rejected row as it was, to fix and upload again


async def test_the_errors_file_stops_at_a_multiple_of_the_upload_and_the_report_says_so(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(import_runs, "ERRORS_FILE_MIN_BYTES", 0)
    # Every cell wrong: each error line is many times the bytes of its row.
    rows = [[f"S-{n}", "plasma", "-1", "x", "maybe", "soon"] for n in range(2_000)]
    content = csv_bytes([["sample_id", "tissue", "volume [mL]", "age", "fasting", "collected_on"], *rows])

    response = await upload(client, study, alice_headers, content)

    report = response.json()["report"]
    assert report["errors_total"] == 2_000 * 5
    assert report["errors_file_truncated"] is True
    async with SessionFactory() as session:
        errors_key = await session.scalar(
            select(SampleFile.errors_key).where(SampleFile.id == uuid.UUID(response.json()["sample_file_id"]))
        )
    with LocalStorage(settings.UPLOAD_DIR).open(errors_key) as stored:
        assert 0 < len(stored.read()) <= ERRORS_FILE_UPLOAD_MULTIPLE * len(content)
    errors_csv = await client.get(
        file_url(response.json()["sample_file_id"], "errors.csv"), headers=alice_headers
    )
    assert errors_csv.status_code == 200
    assert 1 < len(csv_lines(errors_csv)) < 2_001


async def test_a_listing_gives_each_files_counts_not_its_errors(client, alice_headers, study):
    long_rows = [[f"S-{n}", "z" * 5_000] for n in range(1_500)]  # 1,000 errors of 200 characters kept
    rejected_response = await upload(
        client, study, alice_headers, csv_bytes([["sample_id", "tissue"], *long_rows])
    )
    assert rejected_response.status_code == 422
    await imported(client, study, alice_headers, 3)

    listing = await client.get(files_url(study), headers=alice_headers)

    assert listing.status_code == 200
    assert len(listing.content) < 4_000
    newest, oldest = listing.json()["items"]
    assert newest["report"] == {
        "rows": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors_total": 0,
        "column_errors": 0,
    }
    assert oldest["report"] == {
        "rows": 1_500,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1_500,
        "errors_total": 1_500,
        "column_errors": 0,
    }
    detail = await client.get(file_url(oldest["id"]), headers=alice_headers)
    assert len(detail.json()["report"]["errors"]) == 1_000
