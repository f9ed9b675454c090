"""Idempotency-Key on the POSTs that create something: a retry gets the first answer, never a second
resource; the same key with another request, or while the first runs, is refused."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from src import idempotency
from src.database import SessionFactory, utcnow
from src.idempotency import IdempotencyRecord
from src.invitations.models import Invitation
from src.mail.models import OutboxMail
from src.study import service as study_service
from src.study.models import Sample, Study
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import sample_csv
from tests.study.conftest import FIELDS, study_url

STUDIES = "/api/v1/studies"


def study_body(code: str = "IK-1") -> dict:
    return {"code": code, "title": "Idempotent", "sample_fields": FIELDS}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def count(model) -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(model))


@pytest.fixture
async def alice_headers(make_user, auth_headers):
    return await auth_headers(await make_user(email="alice@example.org"))


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_creates_nothing_more(
    client, alice_headers
):
    key = str(uuid.uuid4())
    first = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(Study) == 1


async def test_the_draft_quoted_key_and_the_bare_key_are_the_same_key(client, alice_headers):
    key = str(uuid.uuid4())
    await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, f'"{key}"'))

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert retry.headers["idempotent-replayed"] == "true"
    assert await count(Study) == 1


async def test_a_json_body_is_compared_as_data_not_as_spacing(client, alice_headers):
    key = str(uuid.uuid4())
    await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))
    reordered = json.dumps({"title": "Idempotent", "sample_fields": FIELDS, "code": "IK-1"}, indent=2)

    retry = await client.post(
        STUDIES, content=reordered, headers={**keyed(alice_headers, key), "Content-Type": "application/json"}
    )

    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_another_body_is_422(client, alice_headers):
    key = str(uuid.uuid4())
    await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    other = await client.post(STUDIES, json=study_body("IK-2"), headers=keyed(alice_headers, key))

    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await count(Study) == 1


async def test_keys_belong_to_their_user(client, alice_headers, make_user, auth_headers):
    key = str(uuid.uuid4())
    bob_headers = await auth_headers(await make_user(email="bob@example.org"))
    await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    bobs = await client.post(STUDIES, json=study_body("IK-B"), headers=keyed(bob_headers, key))

    assert bobs.status_code == 201
    assert "idempotent-replayed" not in bobs.headers
    assert await count(Study) == 2


async def test_a_retry_while_the_first_still_runs_is_409_with_retry_after(client, alice_headers, monkeypatch):
    running = asyncio.Event()
    release = asyncio.Event()
    create = study_service.create_study

    async def slow_create(session, **kwargs):
        running.set()
        await release.wait()
        return await create(session, **kwargs)

    monkeypatch.setattr(study_service, "create_study", slow_create)
    key = str(uuid.uuid4())
    first = asyncio.create_task(client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key)))
    await asyncio.wait_for(running.wait(), timeout=5)

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert_problem(retry, 409, "IDEMPOTENT_REQUEST_IN_PROGRESS")
    assert retry.headers["retry-after"]
    release.set()
    assert (await first).status_code == 201
    assert await count(Study) == 1


async def test_a_first_request_that_failed_on_the_server_without_writing_gives_its_key_back(
    client, alice_headers, monkeypatch
):
    async def database_down(_session, **_kwargs):
        raise sa_exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    key = str(uuid.uuid4())
    with monkeypatch.context() as patched:
        patched.setattr(study_service, "create_study", database_down)
        failed = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))
    assert failed.status_code == 503

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert retry.status_code == 201  # run again, not a replay of the 503
    assert "idempotent-replayed" not in retry.headers
    assert await count(Study) == 1


async def test_a_refusal_is_replayed_as_it_was(client, alice_headers):
    await client.post(STUDIES, json=study_body(), headers=alice_headers)
    key = str(uuid.uuid4())
    taken = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))
    assert_problem(taken, 409, "STUDY_CODE_TAKEN")

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert retry.status_code == 409
    assert retry.json() == taken.json()
    assert retry.headers["idempotent-replayed"] == "true"


async def test_a_write_that_committed_but_lost_its_answer_is_never_done_twice(
    client, alice_headers, monkeypatch
):
    async def died_before_keeping_the_answer(*_args, **_kwargs) -> None:
        return  # the process died between the commit and the storing of its answer

    key = str(uuid.uuid4())
    with monkeypatch.context() as patched:
        patched.setattr(idempotency, "finish", died_before_keeping_the_answer)
        await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert_problem(retry, 409, "IDEMPOTENT_REQUEST_APPLIED")
    assert await count(Study) == 1


async def test_a_key_whose_first_request_died_before_committing_is_taken_over_once_stale(
    client, alice_headers, monkeypatch
):
    key = str(uuid.uuid4())

    async def died_before_committing(_session, **_kwargs):
        raise asyncio.CancelledError  # a worker killed mid-request

    with monkeypatch.context() as patched:
        patched.setattr(study_service, "create_study", died_before_committing)
        patched.setattr(idempotency, "finish", lambda *_a, **_k: asyncio.sleep(0))
        with pytest.raises(asyncio.CancelledError):
            await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))
    in_progress = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))
    assert_problem(in_progress, 409, "IDEMPOTENT_REQUEST_IN_PROGRESS")
    async with SessionFactory() as session:
        await session.execute(update(IdempotencyRecord).values(updated_at=utcnow() - timedelta(hours=1)))
        await session.commit()

    retry = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert retry.status_code == 201
    assert await count(Study) == 1


async def test_samples_and_invitations_take_keys_too(client, alice_headers, make_user):
    study = (await client.post(STUDIES, json=study_body(), headers=alice_headers)).json()
    sample = {"sample_id": "S-1", "values": {"tissue": "blood"}}
    member = {"email": (await make_user(email="carol@example.org")).email, "role": "viewer"}
    for path, body, status in (
        (study_url(study["id"], "samples"), sample, 201),
        (study_url(study["id"], "members"), member, 202),
    ):
        key = str(uuid.uuid4())
        first = await client.post(path, json=body, headers=keyed(alice_headers, key))
        retry = await client.post(path, json=body, headers=keyed(alice_headers, key))
        assert first.status_code == retry.status_code == status, first.text
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()
    assert await count(Sample) == 1
    assert await count(Invitation) == 1
    assert await count(OutboxMail) == 1  # one invitation mailed once, not twice


async def test_an_upload_retried_with_its_key_is_imported_once_whatever_the_multipart_boundary(
    client, alice_headers
):
    study = (
        await client.post(STUDIES, json={**study_body(), "sample_fields": FIELDS}, headers=alice_headers)
    ).json()
    await client.post(study_url(study["id"], "status"), json={"status": "active"}, headers=alice_headers)
    key = str(uuid.uuid4())
    files = {"file": ("samples.csv", sample_csv(3), "text/csv")}
    path = study_url(study["id"], "sample-files")

    first = await client.post(path, files=files, headers=keyed(alice_headers, key))
    retry = await client.post(path, files=files, headers=keyed(alice_headers, key))  # a new boundary
    other = await client.post(
        path, files={"file": ("samples.csv", sample_csv(4), "text/csv")}, headers=keyed(alice_headers, key)
    )

    assert first.status_code == retry.status_code == 201, first.text
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await count(Sample) == 3


@pytest.mark.parametrize("key", ["", "x" * 256, '"unterminated', "has space"])
async def test_a_malformed_key_is_refused(client, alice_headers, key):
    response = await client.post(STUDIES, json=study_body(), headers=keyed(alice_headers, key))

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert await count(Study) == 0


async def test_without_a_key_nothing_is_kept(client, alice_headers):
    await client.post(STUDIES, json=study_body(), headers=alice_headers)

    assert await count(IdempotencyRecord) == 0


async def test_prune_removes_expired_keys_only(client, alice_headers):
    for key in ("old", "new"):
        await client.post(STUDIES, json=study_body(f"IK-{key}"), headers=keyed(alice_headers, key))
    async with SessionFactory() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "old")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        removed = await idempotency.prune_expired(session, max_rows=100)
        left = list(await session.scalars(select(IdempotencyRecord.key)))

    assert removed == 1
    assert left == ["new"]
