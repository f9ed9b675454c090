"""An upload while its body arrives, and while it waits for an import slot, holds no pooled
connection (a worker's pool is small and reads must not starve); the caller's right to import is
checked again under the study's lock, since the body may take minutes to arrive."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from src.database import engine
from src.sampleFileUpload import service
from src.study.constants import StudyRole
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import files_url, sample_csv, stored_files
from tests.study.conftest import FIELDS, study_url

BOUNDARY = "studybase-test-boundary"
SETTLE_SECONDS = 0.3  # long enough for a request to reach whatever it would block on


class HeldBody:
    """A multipart upload whose file stops halfway until `finish()`: a slow client."""

    def __init__(self, content: bytes) -> None:
        half = len(content) // 2
        self.head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode() + content[:half]
        self.tail = content[half:] + f"\r\n--{BOUNDARY}--\r\n".encode()
        self.halfway = asyncio.Event()
        self.released = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.head
        self.halfway.set()
        await self.released.wait()
        yield self.tail

    def finish(self) -> None:
        self.released.set()


def send(client: httpx.AsyncClient, study, headers: dict[str, str], body: HeldBody) -> asyncio.Task:
    content_type = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return asyncio.create_task(
        client.post(files_url(study), content=body.chunks(), headers={**headers, **content_type})
    )


def connections_in_use() -> int:
    return engine.pool.checkedout()


async def test_an_upload_holds_no_pooled_connection_while_its_body_arrives(client, alice_headers, study):
    before = connections_in_use()
    body = HeldBody(sample_csv(50))
    uploading = send(client, study, alice_headers, body)
    await asyncio.wait_for(body.halfway.wait(), timeout=10)
    await asyncio.sleep(SETTLE_SECONDS)

    assert connections_in_use() == before
    body.finish()
    response = await asyncio.wait_for(uploading, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json()["report"]["created"] == 50


async def test_uploads_beyond_the_import_slots_wait_holding_no_connection(client, alice_headers, study):
    slots = service.import_slots()
    taken = 0
    while not slots.locked():  # every slot busy, as if other imports were running
        await slots.acquire()
        taken += 1
    try:
        before = connections_in_use()
        body = HeldBody(sample_csv(20))
        body.finish()
        uploading = send(client, study, alice_headers, body)
        await asyncio.sleep(SETTLE_SECONDS)

        assert not uploading.done()
        assert connections_in_use() == before
    finally:
        for _ in range(taken):
            slots.release()
    response = await asyncio.wait_for(uploading, timeout=30)
    assert response.status_code == 201, response.text
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 20


@pytest.fixture
async def shared_study(alice, make_user, make_study, add_member, auth_headers):
    """Alice's study, with Erin as an editor."""
    erin = await make_user(email="erin@example.org")
    study = await make_study(owner=alice, sample_fields=FIELDS)
    await add_member(study, erin, StudyRole.EDITOR)
    return study, erin, await auth_headers(erin)


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("remove", 404, "STUDY_NOT_FOUND"),
        ("viewer", 403, "STUDY_ROLE_REQUIRED"),
    ],
)
async def test_an_editor_removed_or_demoted_while_the_body_arrives_imports_nothing(
    client, alice_headers, shared_study, change, status, code
):
    study, erin, erin_headers = shared_study
    body = HeldBody(sample_csv(30))
    uploading = send(client, study, erin_headers, body)
    await asyncio.wait_for(body.halfway.wait(), timeout=10)

    member_url = study_url(study, f"members/{erin.id}")
    if change == "remove":
        changed = await client.delete(member_url, headers=alice_headers)
    else:
        changed = await client.patch(member_url, json={"role": "viewer"}, headers=alice_headers)
    assert changed.status_code in (200, 204), changed.text
    body.finish()

    assert_problem(await asyncio.wait_for(uploading, timeout=30), status, code)
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 0
    assert (await client.get(files_url(study), headers=alice_headers)).json()["total"] == 0
    assert stored_files() == []
