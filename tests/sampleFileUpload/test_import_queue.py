"""IMPORT_RUNNER=queue (PostgreSQL): an upload queues an `imports:import_file` job, one import per
study at a time (its lock), a user's later uploads behind everyone's first (its priority); a real
worker (`python main.py worker`) imports it, and one killed mid-import leaves nothing half-written:
the next worker runs the job again from nothing."""

import asyncio
import signal

import procrastinate
import psycopg
import pytest
from sqlalchemy import func, select

from src.database import SessionFactory, engine
from src.job_queue import job_app, libpq_conninfo
from src.sampleFileUpload import jobs
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import IMPORTS_QUEUE, ImportRunner
from src.study.models import Sample, StudyActivity
from tests.conftest import TEST_DATABASE_URL
from tests.sampleFileUpload.conftest import SAMPLE_FILES, sample_csv, upload
from tests.test_job_queue import QUEUE_TABLES, start_worker, stopped, wait_for

ON_POSTGRESQL = engine.dialect.name == "postgresql"
pytestmark = pytest.mark.skipif(not ON_POSTGRESQL, reason="the job queue lives in PostgreSQL")
RESPOND_ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def queued_imports(monkeypatch):
    """The API side with IMPORT_RUNNER=queue, its queue connections open, as its lifespan opens them."""
    monkeypatch.setattr(upload_settings, "IMPORT_RUNNER", ImportRunner.QUEUE)
    async with jobs.imports_running():
        yield
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        connection.execute(f"TRUNCATE {QUEUE_TABLES}")


def import_jobs() -> list[tuple[str, str, str, int, int]]:
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        rows = connection.execute(
            "SELECT queue_name, lock, status::text, priority, attempts FROM procrastinate_jobs "
            "WHERE task_name = 'imports:import_file' ORDER BY id"
        )
        return [tuple(row) for row in rows]


def record_status(file_id: str) -> tuple[str, int, int | None]:
    """The record's status, rows read and rows total, as the database has them."""
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        return connection.execute(
            "SELECT status, rows_read, rows_total FROM sample_files WHERE id = %s", (file_id,)
        ).fetchone()


async def count_of(model) -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_uploads_queue_jobs_locked_by_study_and_a_users_later_uploads_go_further_back(
    queued_imports, client, alice_headers, study, monkeypatch
):
    first = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(3))
    second = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(3, start=10))

    assert (first.status_code, second.status_code) == (202, 202)
    lock = f"study:{study.id}"
    assert import_jobs() == [(IMPORTS_QUEUE, lock, "todo", 0, 0), (IMPORTS_QUEUE, lock, "todo", -1, 0)]
    assert [record_status(answer.json()["id"])[0] for answer in (first, second)] == ["queued", "queued"]
    # Without a worker the upload that waits answers 202 once its wait runs out.
    monkeypatch.setattr(upload_settings, "IMPORT_WAIT_SECONDS", 0.3)
    waited = await upload(client, study, alice_headers, sample_csv(3, start=20))
    assert waited.status_code == 202
    assert waited.json()["status"] == "queued"


async def test_a_worker_imports_the_queued_file_while_the_upload_waits(
    queued_imports, client, alice_headers, study
):
    worker = start_worker()
    try:
        response = await upload(client, study, alice_headers, sample_csv(5))
    finally:
        await asyncio.to_thread(stopped, worker)

    assert response.status_code == 201, response.text
    assert response.json()["report"]["created"] == 5
    assert response.headers["location"] == f"{SAMPLE_FILES}/{response.json()['id']}"
    assert [status for _, _, status, _, _ in import_jobs()] == ["succeeded"]
    assert await count_of(Sample) == 5


ROWS = 150_000


async def test_a_worker_killed_mid_import_leaves_nothing_and_the_next_worker_imports_the_file_again(
    queued_imports, client, alice_headers, study
):
    fast_progress = {"IMPORT_PROGRESS_SECONDS": "0.01", "WORKER_STALLED_SECONDS": "1.5"}
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(ROWS))
    file_id = response.json()["id"]
    first = start_worker(**fast_progress)
    try:
        # Killed once it has written rows (its progress says so), before it commits them.
        await asyncio.to_thread(
            wait_for, lambda: record_status(file_id)[1] > 0, seconds=60, what="rows written", worker=first
        )
        first.kill()  # SIGKILL: its transaction dies with its connection
        first.communicate()
    finally:
        await asyncio.to_thread(stopped, first)

    status, rows_read, rows_total = record_status(file_id)
    assert status == "importing"
    assert 0 < rows_read < ROWS
    assert rows_total == ROWS  # counted before reading, written by the worker with its first progress
    assert await count_of(Sample) == 0
    activity_before = await count_of(StudyActivity)

    await asyncio.sleep(2)  # past WORKER_STALLED_SECONDS without a heartbeat
    second = start_worker(**fast_progress)
    try:
        await asyncio.to_thread(
            wait_for,
            lambda: record_status(file_id)[0] == "imported",
            seconds=120,
            what="imported",
            worker=second,
        )
    finally:
        _, stderr = await asyncio.to_thread(stopped, second)

    assert '"msg": "job_recovered"' in stderr
    assert await count_of(Sample) == ROWS
    assert await count_of(StudyActivity) == activity_before + 1  # imported once
    record = (await client.get(f"{SAMPLE_FILES}/{file_id}", headers=alice_headers)).json()
    assert record["progress"] == {"rows_read": ROWS, "rows_total": ROWS}


async def test_a_job_run_more_often_than_its_attempts_allow_ends_its_record_failed(
    queued_imports, client, alice_headers, study
):
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(3))
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:  # as if killed that often
        connection.execute(
            "UPDATE procrastinate_jobs SET attempts = %s WHERE task_name = 'imports:import_file'",
            (upload_settings.IMPORT_MAX_ATTEMPTS,),
        )

    await job_app().run_worker_async(queues=[IMPORTS_QUEUE], wait=False, install_signal_handlers=False)

    record = (await client.get(response.headers["location"], headers=alice_headers)).json()
    assert (record["status"], record["failure"]["code"]) == ("failed", "IMPORT_FAILED")
    assert await count_of(Sample) == 0


async def test_a_worker_stopped_with_sigterm_lets_its_running_import_finish(
    queued_imports, client, alice_headers, study
):
    rows = 40_000  # imported well within the worker's 30 s of grace
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(rows))
    file_id = response.json()["id"]
    worker = start_worker(IMPORT_PROGRESS_SECONDS="0.01")
    try:
        await asyncio.to_thread(
            wait_for, lambda: record_status(file_id)[1] > 0, seconds=60, what="rows written", worker=worker
        )
        worker.send_signal(signal.SIGTERM)  # no new job; the running one may finish
        await asyncio.to_thread(worker.communicate, timeout=60)
    finally:
        await asyncio.to_thread(stopped, worker)

    assert worker.returncode == 0
    assert record_status(file_id) == ("imported", rows, rows)
    assert await count_of(Sample) == rows


async def test_an_upload_whose_job_cannot_be_queued_ends_its_record_failed(
    queued_imports, client, alice_headers, study, monkeypatch
):
    async def refused(*_args, **_kwargs) -> int:
        raise psycopg.OperationalError("the queue is away")

    monkeypatch.setattr(procrastinate.jobs.JobDeferrer, "defer_async", refused)

    response = await upload(client, study, alice_headers, sample_csv(3))

    assert response.status_code == 503, response.text
    [listed] = (await client.get(f"/api/v1/studies/{study.id}/sample-files", headers=alice_headers)).json()[
        "items"
    ]
    assert (listed["status"], listed["failure"]["code"]) == ("failed", "IMPORT_FAILED")
    assert import_jobs() == []
