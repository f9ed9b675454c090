"""The API with STORAGE_URL=s3://...: uploads, downloads, deletes and prune against a real S3 HTTP
API on loopback (moto's server mode), and a store that is away answering 503, never half-writing."""

import logging
import uuid
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

import main
from scripts.local_stack import free_port
from src.config import settings
from src.database import SessionFactory, utcnow
from src.sampleFileUpload import service
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.storage import S3Storage, get_storage
from src.study.constants import StudyStatus
from src.study.models import Sample, StudyActivity
from src.third_party import object_store
from tests.conftest import assert_problem
from tests.s3_server import S3_CREDENTIALS
from tests.sampleFileUpload.conftest import (
    HEADER,
    SAMPLE_FILES,
    csv_bytes,
    good_rows,
    sample_csv,
    stored_files,
    upload,
)
from tests.study.conftest import FIELDS, study_url

PREFIX = "studybase/uploads"


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """The app stores through STORAGE_URL=s3://<a new bucket>/studybase/uploads on the moto server."""
    bucket = s3_server.new_bucket()
    monkeypatch.setattr(settings, "STORAGE_URL", f"s3://{bucket}/{PREFIX}")
    monkeypatch.setattr(settings, "S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setattr(settings, "AWS_ACCESS_KEY_ID", S3_CREDENTIALS.access_key_id)
    monkeypatch.setattr(settings, "AWS_SECRET_ACCESS_KEY", SecretStr(S3_CREDENTIALS.secret_access_key))
    monkeypatch.setattr(settings, "AWS_DEFAULT_REGION", S3_CREDENTIALS.region)
    monkeypatch.setattr(object_store, "MAX_ATTEMPTS", 1)  # a store that is away fails at once
    assert isinstance(get_storage(), S3Storage)
    return bucket


@pytest.fixture
def store_away(monkeypatch):
    """`store_away()`: from now on the app's S3 endpoint is a loopback port nobody listens on."""

    def away() -> None:
        monkeypatch.setattr(settings, "S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")

    return away


def objects(s3_server, bucket: str) -> list[str]:
    return s3_server.object_names(bucket)


def object_of(key: str) -> str:
    return f"{PREFIX}/{key}"


async def record_of(file_id: str) -> SampleFile | None:
    async with SessionFactory() as session:
        return await session.get(SampleFile, uuid.UUID(str(file_id)))


async def rows_written() -> tuple[int, int, int]:
    async with SessionFactory() as session:
        files = await session.scalar(select(func.count()).select_from(SampleFile))
        samples = await session.scalar(select(func.count()).select_from(Sample))
        activity = await session.scalar(select(func.count()).select_from(StudyActivity))
    return files, samples, activity


def rejected_csv() -> bytes:
    rows = good_rows(3)
    rows[1][4] = "many"  # age is an integer
    return csv_bytes([HEADER, *rows])


async def test_a_file_goes_to_the_bucket_comes_back_and_goes_with_its_record(
    client, alice_headers, study, s3_server, s3_bucket
):
    content = sample_csv(3)

    uploaded = await upload(client, study, alice_headers, content)

    assert uploaded.status_code == 201, uploaded.text
    record = await record_of(uploaded.json()["id"])
    assert objects(s3_server, s3_bucket) == [object_of(record.storage_key)]
    assert s3_server.object_bytes(s3_bucket, object_of(record.storage_key)) == content
    assert stored_files() == []  # nothing on this host: no stored file, no temporary one left

    url = f"{SAMPLE_FILES}/{record.id}/content"
    downloaded = await client.get(url, headers=alice_headers)
    assert downloaded.status_code == 200
    assert downloaded.content == content
    assert downloaded.headers["etag"] == f'"{record.sha256}"'
    unchanged = await client.get(url, headers={**alice_headers, "If-None-Match": downloaded.headers["etag"]})
    assert unchanged.status_code == 304
    assert unchanged.headers["etag"] == downloaded.headers["etag"]


async def test_a_rejected_file_and_its_errors_are_in_the_bucket_until_the_file_is_deleted(
    client, alice_headers, study, s3_server, s3_bucket
):
    response = await upload(client, study, alice_headers, rejected_csv())

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    record = await record_of(body["sample_file_id"])
    assert objects(s3_server, s3_bucket) == sorted(
        [object_of(record.storage_key), object_of(record.errors_key)]
    )
    errors = await client.get(f"{SAMPLE_FILES}/{record.id}/errors.csv", headers=alice_headers)
    assert errors.status_code == 200
    assert errors.text.splitlines()[1].startswith('3,"age: must be a whole number')
    assert "S-000002" in errors.text

    deleted = await client.delete(f"{SAMPLE_FILES}/{record.id}", headers=alice_headers)

    assert deleted.status_code == 204
    assert objects(s3_server, s3_bucket) == []
    assert await record_of(str(record.id)) is None


async def test_prune_removes_old_objects_without_a_record_and_keeps_the_rest(
    client, alice_headers, study, s3_server, s3_bucket
):
    imported = (await upload(client, study, alice_headers, sample_csv(2))).json()
    record = await record_of(imported["id"])
    storage = get_storage()
    with storage.temp_file() as temp:
        temp.write_bytes(b"a worker died before its record was committed")
        orphan = storage.save(temp)
    s3_server.client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/README", Body=b"not one of ours")
    assert len(objects(s3_server, s3_bucket)) == 3

    async with SessionFactory() as session:
        too_young = await service.prune_orphan_files(session, storage=storage, max_files=100)
        # A day and more later, everything in the bucket is past the grace period.
        later = utcnow() + timedelta(hours=25)
        removed = await service.prune_orphan_files(session, storage=storage, max_files=100, now=later)

    assert too_young == 0
    assert removed == 1
    assert object_of(orphan) not in objects(s3_server, s3_bucket)
    assert objects(s3_server, s3_bucket) == sorted([object_of(record.storage_key), f"{PREFIX}/README"])
    downloaded = await client.get(f"{SAMPLE_FILES}/{record.id}/content", headers=alice_headers)
    assert downloaded.status_code == 200


# A store that is away, or refuses us.


async def test_an_upload_while_the_store_is_away_is_503_and_writes_nothing(
    client, alice_headers, study, s3_bucket, store_away
):
    before = await rows_written()
    store_away()

    response = await upload(client, study, alice_headers, sample_csv(3))
    rejected = await upload(client, study, alice_headers, rejected_csv())

    body = assert_problem(response, 503, "STORAGE_UNAVAILABLE")
    assert response.headers["retry-after"] == "5"
    assert "Traceback" not in body["detail"]
    assert_problem(rejected, 503, "STORAGE_UNAVAILABLE")
    assert await rows_written() == before  # no record, no sample, no activity
    assert stored_files() == []


async def test_an_upload_to_a_bucket_that_does_not_exist_is_503_and_writes_nothing(
    client, alice_headers, study, s3_bucket, monkeypatch
):
    before = await rows_written()
    monkeypatch.setattr(settings, "STORAGE_URL", f"s3://no-such-bucket-{s3_bucket}/{PREFIX}")

    response = await upload(client, study, alice_headers, sample_csv(3))

    assert_problem(response, 503, "STORAGE_UNAVAILABLE")
    assert await rows_written() == before


async def test_downloads_while_the_store_is_away_are_503_before_any_byte(
    client, alice_headers, study, s3_bucket, store_away
):
    imported = (await upload(client, study, alice_headers, sample_csv(2))).json()
    rejected = (await upload(client, study, alice_headers, rejected_csv())).json()
    store_away()

    content = await client.get(f"{SAMPLE_FILES}/{imported['id']}/content", headers=alice_headers)
    errors = await client.get(
        f"{SAMPLE_FILES}/{rejected['sample_file_id']}/errors.csv", headers=alice_headers
    )
    errors_excel = await client.get(
        f"{SAMPLE_FILES}/{rejected['sample_file_id']}/errors.csv?dialect=excel", headers=alice_headers
    )

    assert_problem(content, 503, "STORAGE_UNAVAILABLE")
    assert_problem(errors, 503, "STORAGE_UNAVAILABLE")
    assert_problem(errors_excel, 503, "STORAGE_UNAVAILABLE")


async def test_a_delete_while_the_store_is_away_deletes_the_record_and_leaves_the_objects_to_prune(
    client, alice_headers, study, s3_server, s3_bucket, store_away, caplog
):
    rejected = (await upload(client, study, alice_headers, rejected_csv())).json()
    left = objects(s3_server, s3_bucket)
    store_away()

    with caplog.at_level(logging.WARNING):
        deleted = await client.delete(f"{SAMPLE_FILES}/{rejected['sample_file_id']}", headers=alice_headers)

    assert deleted.status_code == 204
    assert await record_of(rejected["sample_file_id"]) is None
    assert objects(s3_server, s3_bucket) == left  # no record names them: prune's
    logged = [
        record.storage_key for record in caplog.records if record.message == "stored_file_left_for_prune"
    ]
    assert sorted(logged) == [name.removeprefix(f"{PREFIX}/") for name in left]


async def test_a_study_deleted_with_its_files_takes_their_objects(
    client, alice_headers, make_study, alice, s3_server, s3_bucket
):
    draft = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.DRAFT)
    await upload(client, draft, alice_headers, rejected_csv())
    assert len(objects(s3_server, s3_bucket)) == 2

    study = (await client.get(study_url(draft), headers=alice_headers)).json()
    deleted = await client.delete(
        study_url(draft), headers={**alice_headers, "If-Match": f'"{study["version"]}"'}
    )

    assert deleted.status_code == 204, deleted.text
    assert objects(s3_server, s3_bucket) == []


async def test_the_prune_command_prunes_the_rest_and_fails_when_the_store_is_away(s3_bucket, store_away):
    store_away()

    with pytest.raises(SystemExit) as stopped:
        await main.prune(batch_rows=100, max_rows=1000)

    assert str(stopped.value).startswith("Pruned 0 sign-in throttles")
    assert str(stopped.value).endswith(
        "Orphan files were not pruned: the file store (STORAGE_URL) is not answering."
    )
