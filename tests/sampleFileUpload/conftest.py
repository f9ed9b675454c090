"""Fixtures of the sample-file tests: a study with typed fields, and an upload in one call."""

import shutil
from pathlib import Path

import httpx
import pytest

from src.config import settings
from src.study.constants import StudyStatus
from tests.conftest import assert_problem
from tests.sampleFileUpload.files import csv_bytes
from tests.study import conftest as study_fixtures
from tests.study.conftest import FIELDS, study_url

# The study tests' users, shared.
alice = study_fixtures.alice
alice_headers = study_fixtures.alice_headers
admin = study_fixtures.admin

SAMPLE_FILES = "/api/v1/sample-files"
HEADER = ["sample_id", "status", "tissue", "volume [mL]", "age", "fasting", "collected_on"]


def good_rows(count: int, *, start: int = 1) -> list[list[object]]:
    return [
        [f"S-{number:06d}", "received", "blood", f"{number % 90}.5", str(number % 100), "yes", "2026-11-20"]
        for number in range(start, start + count)
    ]


def sample_csv(count: int = 3, *, start: int = 1) -> bytes:
    return csv_bytes([HEADER, *good_rows(count, start=start)])


def stored_files() -> list[Path]:
    """Every file under UPLOAD_DIR, temporary ones included."""
    root = Path(settings.UPLOAD_DIR)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def files_url(study) -> str:
    return study_url(study, "sample-files")


async def upload(
    client: httpx.AsyncClient,
    study,
    headers: dict[str, str],
    content: bytes,
    *,
    filename: str = "samples.csv",
    mode: str | None = None,
    dry_run: bool | None = None,
    content_type: str = "text/csv",
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    """Posts `content` as the upload's file; `fields` are more form fields (date_order, ...)."""
    data = dict(fields or {})
    if mode is not None:
        data["mode"] = mode
    if dry_run is not None:
        data["dry_run"] = "true" if dry_run else "false"
    return await client.post(
        files_url(study), files={"file": (filename, content, content_type)}, data=data, headers=headers
    )


@pytest.fixture(autouse=True)
def empty_upload_dir():
    """Each test starts with no stored file, so it can count what it leaves behind."""
    shutil.rmtree(settings.UPLOAD_DIR, ignore_errors=True)


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def assert_import_failed(
    client: httpx.AsyncClient, headers: dict[str, str], response: httpx.Response, status: int, code: str
) -> dict:
    """An upload whose import job failed: answered with the problem the import met (as when imports
    ran in the request), with `sample_file_id`, whose record says `failed` and why; the upload is
    the only file kept (with its record), and no sample was written."""
    body = assert_problem(response, status, code)
    record = (await client.get(f"{SAMPLE_FILES}/{body['sample_file_id']}", headers=headers)).json()
    assert (record["status"], record["failure"]["code"], record["report"]) == ("failed", code, None)
    assert record["finished_at"] is not None
    assert len(stored_files()) == 1
    samples = await client.get(f"/api/v1/studies/{record['study_id']}/samples", headers=headers)
    assert samples.json()["total"] == 0
    return body
