"""Imports as jobs (IMPORT_RUNNER=process here): 202 and the record's progress, cancel, failure, and
the records an API process that was killed left unfinished."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from src.database import SessionFactory, engine, utcnow
from src.sampleFileUpload import import_runs, importer, jobs, service
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import IMPORT_BATCH_ROWS, ImportRunner
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.storage import get_storage
from src.study.constants import StudyRole
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import SAMPLE_FILES, files_url, sample_csv, upload

RESPOND_ASYNC = {"Prefer": "respond-async"}
THREE_BATCHES = 2 * IMPORT_BATCH_ROWS + 500


async def samples_in_database() -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(Sample))


async def record_until(client, headers, url: str, *, statuses: set[str], seconds: float = 20) -> dict:
    """The record once its status is one of `statuses` (polled as a client would)."""
    for _ in range(int(seconds / 0.05)):
        record = (await client.get(url, headers=headers)).json()
        if record["status"] in statuses:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {record['status']}")


class PausedAtProgress:
    """Each import stops at its first progress point (after its first batch is written and its
    progress is written) until `resume()`."""

    def __init__(self, monkeypatch) -> None:
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        rows_read = jobs.JobProgress.rows_read

        async def pausing(progress: jobs.JobProgress, rows: int) -> None:
            await rows_read(progress, rows)
            if rows == IMPORT_BATCH_ROWS:
                self.paused.set()
                await self.resumed.wait()

        monkeypatch.setattr(jobs.JobProgress, "rows_read", pausing)
        # Progress is written at every batch here (at least every IMPORT_PROGRESS_SECONDS in general).
        monkeypatch.setattr(upload_settings, "IMPORT_PROGRESS_SECONDS", 0.001)

    async def wait_until_paused(self) -> None:
        await asyncio.wait_for(self.paused.wait(), timeout=20)

    def resume(self) -> None:
        self.resumed.set()


@pytest.fixture
def jobs_not_started(monkeypatch) -> None:
    """Uploads are stored and queued, and their jobs wait (a busy queue, or a process killed)."""

    async def not_started(*_args, **_kwargs) -> None:
        return None

    monkeypatch.setattr(jobs, "start_import", not_started)


@pytest.fixture
def paused(monkeypatch) -> Iterator[PausedAtProgress]:
    imports = PausedAtProgress(monkeypatch)
    yield imports
    imports.resume()


async def test_respond_async_answers_202_with_the_queued_record_and_it_is_imported_later(
    client, alice_headers, study
):
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))

    assert response.status_code == 202, response.text
    assert response.headers["preference-applied"] == "respond-async"
    body = response.json()
    assert response.headers["location"] == f"{SAMPLE_FILES}/{body['id']}"
    assert body["status"] in {"queued", "importing"}
    assert (body["report"], body["finished_at"], body["failure"]) == (None, None, None)
    record = await record_until(client, alice_headers, response.headers["location"], statuses={"imported"})
    assert record["report"]["created"] == 5
    assert record["progress"] == {"rows_read": 5, "rows_total": 5}
    assert record["finished_at"] is not None
    assert await samples_in_database() == 5


async def test_an_import_outlasting_the_wait_answers_202_without_preference_applied(
    client, alice_headers, study, paused, monkeypatch
):
    monkeypatch.setattr(upload_settings, "IMPORT_WAIT_SECONDS", 0.2)

    response = await upload(client, study, alice_headers, sample_csv(THREE_BATCHES))

    assert response.status_code == 202, response.text
    assert "preference-applied" not in response.headers
    paused.resume()
    record = await record_until(client, alice_headers, response.headers["location"], statuses={"imported"})
    assert record["report"]["created"] == THREE_BATCHES


async def test_a_running_import_shows_its_progress_on_its_record(client, alice_headers, study, paused):
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(THREE_BATCHES))
    await paused.wait_until_paused()

    running = (await client.get(response.headers["location"], headers=alice_headers)).json()

    assert running["status"] == "importing"
    # The file's rows are known before it is read (its line ends counted), and written with the first batch.
    assert running["progress"] == {"rows_read": IMPORT_BATCH_ROWS, "rows_total": THREE_BATCHES}
    assert running["started_at"] is not None
    # In the listing too; nothing is visible in the study before the import commits.
    [listed] = (await client.get(files_url(study), headers=alice_headers)).json()["items"]
    assert (listed["status"], listed["progress"]["rows_read"]) == ("importing", IMPORT_BATCH_ROWS)
    assert (await client.get(f"/api/v1/studies/{study.id}/samples", headers=alice_headers)).json()[
        "total"
    ] == 0
    paused.resume()
    done = await record_until(client, alice_headers, response.headers["location"], statuses={"imported"})
    assert done["progress"] == {"rows_read": THREE_BATCHES, "rows_total": THREE_BATCHES}


async def test_a_job_that_fails_ends_its_record_failed_with_why_and_the_record_reads_fine(
    client, alice_headers, study, monkeypatch
):
    async def broken_take(step: importer.ImportPass, batch: list) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(importer.ImportPass, "take", broken_take)

    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))

    record = await record_until(client, alice_headers, response.headers["location"], statuses={"failed"})
    assert record["failure"]["code"] == "IMPORT_FAILED"
    assert record["failure"]["status"] == 500
    assert "a bug" not in str(record)
    assert await samples_in_database() == 0
    # Its file is kept, and may be deleted by the owner.
    assert (
        await client.get(f"{response.headers['location']}/content", headers=alice_headers)
    ).status_code == 200
    deleted = await client.delete(response.headers["location"], headers=alice_headers)
    assert deleted.status_code == 204


# Cancel


async def test_a_queued_import_is_cancelled_at_once_and_its_job_then_does_nothing(
    client, alice_headers, study, jobs_not_started
):
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))
    assert response.json()["status"] == "queued"

    cancelled = await client.post(f"{response.headers['location']}/cancel", headers=alice_headers)

    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["cancel_requested"]) == ("cancelled", True)
    progress = jobs.JobProgress(uuid.UUID(response.json()["id"]), live=None, to_database=False)
    ran = await import_runs.import_queued_file(
        uuid.UUID(response.json()["id"]), storage=get_storage(), progress=progress, take_user_slot=True
    )
    assert ran is None
    assert await samples_in_database() == 0


async def test_a_running_import_is_cancelled_at_its_next_progress_point_with_nothing_written(
    client, alice_headers, study, paused
):
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(THREE_BATCHES))
    await paused.wait_until_paused()  # its first batch is written, in its transaction

    cancelling = asyncio.create_task(
        client.post(f"{response.headers['location']}/cancel", headers=alice_headers)
    )
    await asyncio.sleep(0.2)
    paused.resume()
    cancelled = await asyncio.wait_for(cancelling, timeout=20)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await samples_in_database() == 0
    assert (await client.get(f"/api/v1/studies/{study.id}", headers=alice_headers)).json()[
        "sample_count"
    ] == 0
    # The study is free for the next import.
    assert (await upload(client, study, alice_headers, sample_csv(3))).status_code == 201


async def test_a_finished_import_cannot_be_cancelled(client, alice_headers, study):
    imported = await upload(client, study, alice_headers, sample_csv(3))

    response = await client.post(f"{SAMPLE_FILES}/{imported.json()['id']}/cancel", headers=alice_headers)

    assert_problem(response, 409, "IMPORT_FINISHED")
    assert await samples_in_database() == 3


async def test_viewers_may_not_cancel_and_non_members_do_not_learn_the_file_exists(
    client, alice_headers, study, make_user, add_member, auth_headers, jobs_not_started
):
    queued = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(3))
    cancel_url = f"{queued.headers['location']}/cancel"
    viewer, outsider = await make_user(email="vic@example.org"), await make_user(email="olga@example.org")
    await add_member(study, viewer, StudyRole.VIEWER)

    assert_problem(
        await client.post(cancel_url, headers=await auth_headers(viewer)), 403, "STUDY_ROLE_REQUIRED"
    )
    assert_problem(
        await client.post(cancel_url, headers=await auth_headers(outsider)), 404, "SAMPLE_FILE_NOT_FOUND"
    )
    assert_problem(await client.post(cancel_url), 401, "NOT_AUTHENTICATED")
    assert (await client.get(queued.headers["location"], headers=alice_headers)).json()["status"] == "queued"


# One outcome per record: only the run holding the record's current claim writes it


async def queued_record(client, headers, study, *, mode: str = "insert") -> uuid.UUID:
    """An upload stored and queued whose job has not run (jobs_not_started)."""
    response = await upload(client, study, {**headers, **RESPOND_ASYNC}, sample_csv(5), mode=mode)
    assert response.json()["status"] == "queued", response.text
    return uuid.UUID(response.json()["id"])


async def run_job(file_id: uuid.UUID):
    """The record's job run here, as a worker runs it (progress kept in memory: no cancel seen there)."""
    progress = jobs.JobProgress(file_id, live=None, to_database=False)
    return await import_runs.import_queued_file(
        file_id, storage=get_storage(), progress=progress, take_user_slot=False
    )


def once_claimed(monkeypatch, meanwhile) -> None:
    """The first run, once it claimed its record and before it reads the file, waits for `meanwhile()`
    (what happens to the record while that run goes on); later runs go straight on."""
    import_claimed, first = import_runs._import_claimed, []

    async def interrupted(*args, **kwargs):
        if not first:
            first.append(True)
            await meanwhile()
        return await import_claimed(*args, **kwargs)

    monkeypatch.setattr(import_runs, "_import_claimed", interrupted)


async def stored_record(file_id: uuid.UUID) -> SampleFile:
    async with SessionFactory() as session:
        return await session.get(SampleFile, file_id)


@pytest.mark.parametrize("mode", ["insert", "upsert"])
async def test_a_run_whose_record_was_claimed_again_and_imported_writes_nothing(
    client, alice_headers, study, jobs_not_started, monkeypatch, mode
):
    """Its job re-queued while it still ran (a worker taken for dead): the second run imports the
    file; the first, finishing later, neither rejects the record (its samples exist now) nor calls
    it a duplicate of itself."""
    file_id = await queued_record(client, alice_headers, study, mode=mode)
    second: list[object] = []

    async def second_run() -> None:
        second.append(await run_job(file_id))

    once_claimed(monkeypatch, second_run)

    assert await run_job(file_id) is None
    assert second == ["imported"]
    record = await stored_record(file_id)
    assert (record.status, record.duplicate_of, record.same_content_as, record.claim) == (
        "imported",
        None,
        None,
        2,
    )
    assert (record.report["created"], record.errors_key) == (5, None)
    assert await samples_in_database() == 5


async def test_a_run_whose_record_was_claimed_again_before_its_end_writes_nothing(
    client, alice_headers, study, jobs_not_started, monkeypatch
):
    """Claimed twice: the first claim's run loses its final write and leaves the record to the second."""
    file_id = await queued_record(client, alice_headers, study)

    async def claimed_again() -> None:
        async with SessionFactory() as session:
            assert (await import_runs._claim(session, file_id)).claim == 2

    once_claimed(monkeypatch, claimed_again)

    assert await run_job(file_id) is None
    record = await stored_record(file_id)
    assert (record.status, record.claim, record.finished_at) == ("importing", 2, None)
    assert await samples_in_database() == 0
    # The job run again (the second claim's worker gone too) imports it once.
    assert await run_job(file_id) == "imported"
    assert await samples_in_database() == 5


async def test_an_import_ended_by_the_sweep_while_it_runs_does_not_commit_over_it(
    client, alice_headers, study, jobs_not_started, monkeypatch
):
    """IMPORT_RUNNER=process: a slow import taken for abandoned is ended `failed`; it writes nothing."""
    file_id = await queued_record(client, alice_headers, study)

    async def swept() -> None:
        async with SessionFactory() as session:
            record = await session.get(SampleFile, file_id)
            record.created_at = utcnow() - jobs.abandoned_after() - timedelta(minutes=1)
            await session.commit()
        assert await jobs.fail_abandoned_imports() == 1

    once_claimed(monkeypatch, swept)

    assert await run_job(file_id) is None
    record = await stored_record(file_id)
    assert (record.status, record.failure["code"], record.report) == ("failed", "IMPORT_FAILED", {})
    assert await samples_in_database() == 0


async def test_a_cancel_asked_after_the_last_progress_point_ends_the_import_cancelled(
    client, alice_headers, study, jobs_not_started, monkeypatch
):
    """The flag set while the import runs and no progress point looks at it any more: its final
    write sees it, the import rolls back and its record ends `cancelled`."""
    file_id = await queued_record(client, alice_headers, study)

    async def cancel_asked() -> None:
        async with SessionFactory() as session:
            await import_runs.ask_cancel(session, file_id=file_id)

    once_claimed(monkeypatch, cancel_asked)

    assert await run_job(file_id) == "cancelled"
    record = await stored_record(file_id)
    assert (record.status, record.cancel_requested, record.report) == ("cancelled", True, {})
    assert await samples_in_database() == 0
    assert await run_job(file_id) is None


async def _claimed_again(file_id: uuid.UUID) -> None:
    async with SessionFactory() as session:
        await import_runs._claim(session, file_id)


async def _cancel_asked(file_id: uuid.UUID) -> None:
    async with SessionFactory() as session:
        await import_runs.ask_cancel(session, file_id=file_id)


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="SQLite's one writer is the import")
@pytest.mark.parametrize(
    ("meanwhile", "ends"),
    [
        (_claimed_again, ("importing", None)),
        (_cancel_asked, ("cancelled", "cancelled")),
        (lambda file_id: jobs._end_unfinished(SampleFile.id == file_id), ("failed", None)),
    ],
    ids=["claimed_again", "cancel_asked", "swept"],
)
async def test_what_another_session_commits_just_before_the_final_write_wins(
    client, alice_headers, study, jobs_not_started, monkeypatch, meanwhile, ends
):
    """Its samples written in its transaction, the import is about to write its outcome when another
    session re-claims, cancels or sweeps the record: it rolls back, and the record stays theirs."""
    file_id = await queued_record(client, alice_headers, study)
    hold_claim = import_runs._hold_claim

    async def interfered(*args, **kwargs) -> None:
        await meanwhile(file_id)
        await hold_claim(*args, **kwargs)

    monkeypatch.setattr(import_runs, "_hold_claim", interfered)

    ran = await run_job(file_id)
    record = await stored_record(file_id)
    assert (record.status, ran, record.report) == (*ends, {})
    assert await samples_in_database() == 0


# Records an API process that was killed left unfinished (IMPORT_RUNNER=process)


async def test_records_left_unfinished_past_any_imports_bounds_are_failed_and_recent_ones_kept(
    client, alice_headers, study, jobs_not_started
):
    old = (await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(3))).json()
    recent = (await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(4))).json()
    async with SessionFactory() as session:
        record = await session.get(SampleFile, uuid.UUID(old["id"]))
        record.created_at = utcnow() - jobs.abandoned_after() - timedelta(minutes=1)
        await session.commit()

    assert await jobs.fail_abandoned_imports() == 1

    ended = (await client.get(f"{SAMPLE_FILES}/{old['id']}", headers=alice_headers)).json()
    assert (ended["status"], ended["failure"]["code"]) == ("failed", "IMPORT_FAILED")
    assert (await client.get(f"{SAMPLE_FILES}/{recent['id']}", headers=alice_headers)).json()[
        "status"
    ] == "queued"


@pytest.mark.skipif(engine.dialect.name == "postgresql", reason="SQLite has no job queue")
async def test_imports_by_the_queue_on_sqlite_is_a_start_up_error_that_says_why(monkeypatch):
    monkeypatch.setattr(upload_settings, "IMPORT_RUNNER", ImportRunner.QUEUE)

    with pytest.raises(RuntimeError, match="IMPORT_RUNNER=queue needs the job queue, which needs PostgreSQL"):
        async with jobs.imports_running():
            pass


# A run that lost its record writes no progress either; a cancel answers within its request's
# deadline; a cancel told only to this process (SQLite) is caught at the final write; an import
# waiting for a slot keeps no copy of its file.


class PausedInSlot:
    """Each import stops once it holds its worker slot and its copy of the file, before it reads or
    writes anything (so that, on SQLite too, other requests can write meanwhile), until `resume()`."""

    def __init__(self, monkeypatch) -> None:
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        uploader_access = import_runs._uploader_access

        async def pausing(*args):
            self.paused.set()
            await self.resumed.wait()
            return await uploader_access(*args)

        monkeypatch.setattr(import_runs, "_uploader_access", pausing)

    async def wait_until_paused(self) -> None:
        await asyncio.wait_for(self.paused.wait(), timeout=20)

    def resume(self) -> None:
        self.resumed.set()


@pytest.fixture
def paused_in_slot(monkeypatch) -> Iterator[PausedInSlot]:
    imports = PausedInSlot(monkeypatch)
    yield imports
    imports.resume()


async def test_a_run_that_lost_its_claim_writes_no_progress_and_stops(
    client, alice_headers, study, jobs_not_started
):
    file_id = await queued_record(client, alice_headers, study)
    async with SessionFactory() as session:
        first = (await import_runs._claim(session, file_id)).claim
        await import_runs._claim(session, file_id)  # its job run again meanwhile (a worker taken for dead)
    old_run = jobs.JobProgress(file_id, live=None, to_database=True)
    old_run.claimed(first)
    new_run = jobs.JobProgress(file_id, live=None, to_database=True)
    new_run.claimed(first + 1)

    with pytest.raises(import_runs.ClaimLost):
        await old_run.rows_read(IMPORT_BATCH_ROWS)
    assert (await stored_record(file_id)).rows_read == 0
    await new_run.rows_read(3)
    assert (await stored_record(file_id)).rows_read == 3


def request_deadline(app, monkeypatch, seconds: float) -> None:
    """The app's request deadline (REQUEST_TIMEOUT_SECONDS) set to `seconds` for the test."""
    middleware = next(m for m in app.user_middleware if m.cls.__name__ == "RequestMiddleware")
    monkeypatch.setitem(middleware.kwargs, "deadline_seconds", seconds)
    monkeypatch.setattr(app, "middleware_stack", None)  # rebuilt with the new value on the next request


async def test_a_cancel_answers_202_before_its_request_deadline_however_long_progress_points_take(
    app, client, alice_headers, study, paused_in_slot, monkeypatch
):
    monkeypatch.setattr(upload_settings, "IMPORT_PROGRESS_SECONDS", 60.0)  # the longest allowed
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))
    await paused_in_slot.wait_until_paused()
    request_deadline(app, monkeypatch, 2.5)

    started = time.monotonic()
    cancelled = await client.post(f"{response.headers['location']}/cancel", headers=alice_headers)

    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "importing"
    assert time.monotonic() - started < 2.5
    paused_in_slot.resume()
    record = await record_until(client, alice_headers, response.headers["location"], statuses={"cancelled"})
    assert (record["cancel_requested"], record["report"]) == (True, None)
    assert await samples_in_database() == 0


async def test_a_cancel_after_the_last_progress_point_is_caught_at_the_final_write(
    client, alice_headers, study, monkeypatch
):
    """On SQLite the cancel is told to the running import in memory only (it holds the one writer):
    asked after its last progress point, its final write sees it, as PostgreSQL's sees the flag."""
    before_final_write, go_on = asyncio.Event(), asyncio.Event()
    hold_claim = import_runs._hold_claim

    async def paused(*args, **kwargs) -> None:
        before_final_write.set()
        await go_on.wait()
        await hold_claim(*args, **kwargs)

    monkeypatch.setattr(import_runs, "_hold_claim", paused)
    response = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))
    await asyncio.wait_for(before_final_write.wait(), timeout=20)  # its samples written, uncommitted

    cancelling = asyncio.create_task(
        client.post(f"{response.headers['location']}/cancel", headers=alice_headers)
    )
    await asyncio.sleep(0.2)
    go_on.set()
    cancelled = await asyncio.wait_for(cancelling, timeout=20)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await samples_in_database() == 0


async def test_an_import_waiting_for_a_worker_slot_keeps_no_copy_of_its_file(
    client, alice_headers, study, paused_in_slot, monkeypatch
):
    """Many async uploads at once: each is stored once; the copy an import reads is made only once
    it has a slot, so those waiting for one fill no disk with copies."""
    monkeypatch.setitem(service._IMPORT_SLOTS, asyncio.get_running_loop(), asyncio.Semaphore(1))
    temp_dir = get_storage().temp_dir
    first = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5))
    await paused_in_slot.wait_until_paused()  # holds the one slot, with its copy and errors file

    second = await upload(client, study, {**alice_headers, **RESPOND_ASYNC}, sample_csv(5, start=6))
    await record_until(client, alice_headers, second.headers["location"], statuses={"importing"})
    await asyncio.sleep(0.3)  # claimed, and waiting for the slot

    assert len(list(temp_dir.glob("*.part"))) == 2
    paused_in_slot.resume()
    for response in (first, second):
        await record_until(client, alice_headers, response.headers["location"], statuses={"imported"})
    assert await samples_in_database() == 10
    assert list(temp_dir.glob("*.part")) == []
