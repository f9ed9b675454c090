"""Every request answers by its deadline, and no write commits after its client was told it failed
(the deadline passed) or went away."""

import asyncio
import time
import uuid

import pytest
from sqlalchemy import func, select

from src import deadlines
from src.database import SessionFactory
from src.study import service as study_service
from src.study.models import Study
from tests.asgi import OneRequest
from tests.conftest import assert_problem

STUDIES = "/api/v1/studies"


@pytest.fixture
async def alice_headers(make_user, auth_headers):
    return await auth_headers(await make_user())


STUDY = {"code": "DL-1", "title": "Deadlines"}


@pytest.fixture
def short_deadline(app, monkeypatch):
    """The app's request deadline set to 0.3 s for the test (the middleware reads it per request)."""
    middleware = next(m for m in app.user_middleware if m.cls.__name__ == "RequestMiddleware")
    monkeypatch.setitem(middleware.kwargs, "deadline_seconds", 0.3)
    app.middleware_stack = None  # rebuilt with the new value on the next request
    yield 0.3
    app.middleware_stack = None


async def studies_in_database() -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(Study))


async def test_a_request_past_its_deadline_answers_503_at_once_and_its_work_is_cancelled(
    client, alice_headers, short_deadline, monkeypatch
):
    cancelled = asyncio.Event()

    async def hanging_create(session, **_kwargs):
        try:
            await asyncio.Event().wait()  # a database that hangs
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(study_service, "create_study", hanging_create)
    started = time.monotonic()

    response = await client.post(STUDIES, json=STUDY, headers=alice_headers)

    body = assert_problem(response, 503, "REQUEST_TIMED_OUT")
    assert response.headers["retry-after"]
    assert "REQUEST_TIMEOUT_SECONDS" in body["detail"]
    assert time.monotonic() - started < short_deadline + 0.5
    await asyncio.wait_for(cancelled.wait(), timeout=2)


async def test_a_commit_after_the_deadline_is_refused_and_nothing_is_written(
    client, alice_headers, short_deadline, monkeypatch
):
    commit = study_service._commit_unless_code_taken

    async def late_commit(session, *, code):
        # The event loop stuck (CPU work on it): the deadline's timer cannot fire before the commit.
        time.sleep(short_deadline + 0.1)  # noqa: ASYNC251
        await commit(session, code=code)

    monkeypatch.setattr(study_service, "_commit_unless_code_taken", late_commit)

    response = await client.post(STUDIES, json=STUDY, headers=alice_headers)

    assert_problem(response, 503, "REQUEST_TIMED_OUT")
    assert await studies_in_database() == 0


async def test_a_write_whose_client_went_away_does_not_commit(app, alice_headers, monkeypatch):
    at_commit = asyncio.Event()
    client_left = asyncio.Event()
    commit = study_service._commit_unless_code_taken

    async def commit_after_the_client_left(session, *, code):
        at_commit.set()
        await client_left.wait()
        await asyncio.sleep(0.05)  # the server tells the app (the watcher's receive returns)
        await commit(session, code=code)

    monkeypatch.setattr(study_service, "_commit_unless_code_taken", commit_after_the_client_left)
    server = OneRequest(body_pieces=[b'{"code": "DL-2", "title": "Gone"}'])
    server.hang_up_after_body = False
    original_receive = server.receive

    async def receive():
        if server.body_pieces:
            return await original_receive()
        await client_left.wait()
        return {"type": "http.disconnect"}

    server.receive = receive
    requesting = asyncio.create_task(
        server(app, "POST", STUDIES, headers={**alice_headers, "content-type": "application/json"})
    )
    await asyncio.wait_for(at_commit.wait(), timeout=5)
    client_left.set()
    await asyncio.wait_for(requesting, timeout=5)

    assert await studies_in_database() == 0


async def test_a_write_within_its_deadline_commits(client, alice_headers):
    response = await client.post(STUDIES, json=STUDY, headers=alice_headers)

    assert response.status_code == 201, response.text
    assert await studies_in_database() == 1


async def test_a_streamed_response_is_not_cut_by_the_deadline_once_it_has_begun(
    client, alice_headers, short_deadline, monkeypatch
):
    created = await client.post(STUDIES, json=STUDY, headers=alice_headers)
    template = f"{STUDIES}/{created.json()['id']}/sample-template"
    from src.sampleFileUpload import exports

    chunks = exports.template_csv

    def slow_chunks(*args, **kwargs):
        for chunk in chunks(*args, **kwargs):
            time.sleep(short_deadline)  # in the streaming thread: the loop stays free
            yield chunk

    monkeypatch.setattr(exports, "template_csv", slow_chunks)

    response = await client.get(template, headers=alice_headers)

    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbfsample_id")


def test_outside_a_request_there_is_no_deadline():
    assert deadlines.current_deadline() is None


async def test_an_upload_is_not_held_to_the_request_deadline(
    client, alice_headers, short_deadline, monkeypatch
):
    from src.sampleFileUpload import importer
    from tests.sampleFileUpload.conftest import sample_csv, upload

    created = await client.post(STUDIES, json=STUDY, headers=alice_headers)
    study = await study_in_database(created.json()["id"])
    take = importer.ImportPass.take

    async def slow_take(step, batch):
        await asyncio.sleep(short_deadline + 0.2)
        await take(step, batch)

    monkeypatch.setattr(importer.ImportPass, "take", slow_take)

    response = await upload(client, study, alice_headers, sample_csv(3))

    # The study has no fields: the import reads every row (slowly), then answers for itself.
    assert_problem(response, 422, "SAMPLE_FILE_REJECTED")


async def study_in_database(study_id: str) -> Study:
    async with SessionFactory() as session:
        return await session.get(Study, uuid.UUID(study_id))
