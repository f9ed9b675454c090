"""Records of sample files: listing, reading, downloading, deleting; who may do what."""

import hashlib

import pytest
from sqlalchemy import delete

from src.database import SessionFactory
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
from tests.study.conftest import study_url


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
    assert response.content.decode("utf-8-sig").splitlines() == ["row,column,value,code,message"]


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
