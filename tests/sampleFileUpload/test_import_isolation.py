"""An import in progress and everyone else: what waits, how long, and what answers at once.

An import is paused after its first batch (PausedImports), as a long one would be, while other
requests run: edits of the study's samples go on beside it (PostgreSQL: SQLite lets one writer
into the whole database at a time); changes of the study's fields or status, and a second import
into it, wait at most the lock timeout and answer 409 STUDY_BUSY; a user's imports beyond
IMPORTS_PER_USER answer 429 at once; a worker whose slots stay busy answers 503 after
IMPORT_SLOT_WAIT_SECONDS; an import past IMPORT_MAX_SECONDS stops with 422 and writes nothing.
"""

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, text

from src.config import settings
from src.database import SessionFactory, engine
from src.sampleFileUpload import importer, service
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import IMPORT_BATCH_ROWS
from src.study.constants import StudyRole
from src.study.models import StudyMember
from tests.conftest import TEST_DATABASE_URL, assert_problem
from tests.sampleFileUpload.conftest import (
    HEADER,
    SAMPLE_FILES,
    assert_import_failed,
    files_url,
    good_rows,
    sample_csv,
    stored_files,
    upload,
)
from tests.sampleFileUpload.files import csv_bytes
from tests.sampleFileUpload.test_status_counts import assert_counters_match_recount
from tests.study.conftest import FIELDS, study_url

on_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"),
    reason="SQLite lets one writer into the whole database at a time",
)
LOCK_WAIT = settings.DATABASE_LOCK_TIMEOUT_SECONDS
TWO_BATCHES = 2_500  # IMPORT_BATCH_ROWS is 2,000: the pause falls between the first and the second


class PausedImports:
    """Every import (and dry run) of more than one batch stops after its first until `resume()`;
    a smaller file is never paused."""

    def __init__(self, monkeypatch) -> None:
        self.resumed = asyncio.Event()
        self.waiting = 0
        self.arrived = asyncio.Condition()
        take = importer.ImportPass.take

        async def pausing_take(step: importer.ImportPass, batch: list) -> None:
            await take(step, batch)
            if step.counts.rows == len(batch) == IMPORT_BATCH_ROWS:  # after a first, full batch only
                async with self.arrived:
                    self.waiting += 1
                    self.arrived.notify_all()
                await self.resumed.wait()

        monkeypatch.setattr(importer.ImportPass, "take", pausing_take)

    async def wait_until_paused(self, count: int = 1) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.waiting >= count), timeout=20)

    def resume(self) -> None:
        self.resumed.set()


@pytest.fixture
def paused(monkeypatch) -> Iterator[PausedImports]:
    imports = PausedImports(monkeypatch)
    yield imports
    imports.resume()  # a test that failed half way must not leave an import holding the database


def start_upload(client, study, headers, content: bytes, **options) -> asyncio.Task:
    return asyncio.create_task(upload(client, study, headers, content, **options))


async def timed(request) -> tuple[object, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


# While an import runs: changes of the study itself wait a bounded time, then 409 STUDY_BUSY.


async def test_a_schema_change_during_an_import_is_study_busy_within_the_lock_timeout(
    client, alice_headers, study, paused
):
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()

    fields = [*FIELDS, {"name": "note", "type": "text", "required": False}]
    response, seconds = await timed(
        client.put(study_url(study, "sample-fields"), json=fields, headers=alice_headers)
    )

    body = assert_problem(response, 409, "STUDY_BUSY")
    assert response.headers["retry-after"]
    assert "import" in body["detail"]
    assert seconds < LOCK_WAIT + 1
    paused.resume()
    assert (await asyncio.wait_for(importing, timeout=30)).status_code == 201
    # Once the import is done the change goes through.
    retried = await client.put(study_url(study, "sample-fields"), json=fields, headers=alice_headers)
    assert retried.status_code == 200, retried.text


async def test_a_status_change_during_an_import_is_study_busy_and_the_import_completes(
    client, alice_headers, study, paused
):
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()

    response, seconds = await timed(
        client.post(study_url(study, "status"), json={"status": "locked"}, headers=alice_headers)
    )

    assert_problem(response, 409, "STUDY_BUSY")
    assert seconds < LOCK_WAIT + 1
    paused.resume()
    imported = await asyncio.wait_for(importing, timeout=30)
    assert imported.status_code == 201, imported.text
    assert (await client.get(study_url(study), headers=alice_headers)).json()["status"] == "active"


# On SQLite the second upload's record waits for the one writer, the running import (then 503).
@on_postgresql
async def test_a_second_import_into_the_study_is_study_busy_and_writes_nothing(
    client, alice_headers, study, paused
):
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()

    response, seconds = await timed(upload(client, study, alice_headers, sample_csv(5, start=90_001)))

    busy = assert_problem(response, 409, "STUDY_BUSY")
    assert seconds < LOCK_WAIT + 1
    paused.resume()
    assert (await asyncio.wait_for(importing, timeout=30)).status_code == 201
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == TWO_BATCHES
    listed = (await client.get(files_url(study), headers=alice_headers)).json()["items"]
    # The second file's record says it failed, and why; the first is imported.
    assert {(item["id"] == busy["sample_file_id"], item["status"]) for item in listed} == {
        (True, "failed"),
        (False, "imported"),
    }


@on_postgresql
async def test_an_import_into_another_study_runs_beside_it(
    client, alice, alice_headers, study, make_study, paused
):
    other = await make_study(owner=alice, sample_fields=FIELDS)
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()

    # A file of one batch is never paused: it imports while the first one still waits.
    response = await upload(client, other, alice_headers, sample_csv(5))

    assert response.status_code == 201, response.text
    paused.resume()
    assert (await asyncio.wait_for(importing, timeout=30)).status_code == 201


# Sample edits run beside an import (PostgreSQL): the import holds neither the study's row nor
# its counters until its commit.


@on_postgresql
async def test_samples_are_created_edited_and_deleted_while_an_import_runs(
    client, alice_headers, study, make_sample, paused
):
    kept = await make_sample(study, sample_id="K-1", values={"tissue": "blood"})
    gone = await make_sample(study, sample_id="K-2", values={"tissue": "blood"})
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()

    samples = study_url(study, "samples")
    created, created_in = await timed(
        client.post(samples, json={"sample_id": "N-1", "values": {"tissue": "saliva"}}, headers=alice_headers)
    )
    edited = await client.patch(
        f"{samples}/{kept.id}", json={"status": "stored", "values": {"age": 3}}, headers=alice_headers
    )
    deleted = await client.delete(f"{samples}/{gone.id}", headers=alice_headers)

    assert created.status_code == 201, created.text
    assert created_in < LOCK_WAIT  # waited for no lock the import holds
    assert edited.status_code == 200, edited.text
    assert deleted.status_code == 204, deleted.text
    paused.resume()
    assert (await asyncio.wait_for(importing, timeout=30)).status_code == 201
    counts = await assert_counters_match_recount(study)
    assert sum(counts.values()) == TWO_BATCHES + 2


@on_postgresql
async def test_an_edit_of_a_sample_an_upsert_is_updating_is_study_busy_and_nothing_is_lost(
    client, alice_headers, study, make_sample, paused
):
    # The upsert locks the rows it will update as it reads them: an edit of one of them waits at
    # most the lock timeout (409) instead of being overwritten by the import's older copy.
    first = await make_sample(study, sample_id="S-000001", values={"tissue": "saliva"})
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES), mode="upsert")
    await paused.wait_until_paused()

    response, seconds = await timed(
        client.patch(
            study_url(study, "samples", str(first.id)), json={"values": {"age": 77}}, headers=alice_headers
        )
    )

    assert_problem(response, 409, "STUDY_BUSY")
    assert seconds < LOCK_WAIT + 1
    paused.resume()
    imported = await asyncio.wait_for(importing, timeout=30)
    assert imported.status_code == 201, imported.text
    assert imported.json()["report"]["updated"] == 1
    await assert_counters_match_recount(study)


@on_postgresql
async def test_a_sample_id_created_during_an_import_makes_it_study_busy_with_nothing_imported(
    client, alice_headers, study, paused
):
    importing = start_upload(client, study, alice_headers, sample_csv(TWO_BATCHES))
    await paused.wait_until_paused()
    # S-002400 is in the file's second batch, not yet written.
    created = await client.post(
        study_url(study, "samples"),
        json={"sample_id": "S-002400", "values": {"tissue": "blood"}},
        headers=alice_headers,
    )
    assert created.status_code == 201, created.text
    paused.resume()

    refused = await asyncio.wait_for(importing, timeout=30)
    # Its record says it failed, and why (the created sample is the study's one sample).
    assert_problem(refused, 409, "STUDY_BUSY")
    record = (
        await client.get(f"{SAMPLE_FILES}/{refused.json()['sample_file_id']}", headers=alice_headers)
    ).json()
    assert (record["status"], record["failure"]["code"]) == ("failed", "STUDY_BUSY")
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 1
    await assert_counters_match_recount(study)


# Fairness: a user's imports beyond IMPORTS_PER_USER are refused at once; others are not delayed.


async def test_a_users_imports_beyond_their_limit_are_429_and_another_user_imports_meanwhile(
    client, alice, alice_headers, make_study, make_user, auth_headers, paused, monkeypatch
):
    monkeypatch.setattr(upload_settings, "IMPORTS_PER_USER", 2)
    studies = [await make_study(owner=alice, sample_fields=FIELDS) for _ in range(3)]
    # Dry runs write nothing: on SQLite too the two hold their slots without the database's write lock.
    running = [
        start_upload(client, s, alice_headers, sample_csv(TWO_BATCHES), dry_run=True) for s in studies[:2]
    ]
    await paused.wait_until_paused(2)

    third, seconds = await timed(upload(client, studies[2], alice_headers, sample_csv(3), dry_run=True))

    body = assert_problem(third, 429, "TOO_MANY_IMPORTS")
    assert int(third.headers["retry-after"]) >= 1
    assert "IMPORTS_PER_USER" in body["detail"]
    assert seconds < LOCK_WAIT  # refused at once, not after waiting for a slot or a lock
    bob = await make_user(email="bob@example.org")
    bobs = await make_study(owner=bob, sample_fields=FIELDS)
    response, seconds = await timed(upload(client, bobs, await auth_headers(bob), sample_csv(3)))
    assert response.status_code == 201, response.text
    assert seconds < 2
    paused.resume()
    assert [(await asyncio.wait_for(task, timeout=30)).status_code for task in running] == [200, 200]
    # The slots are free again.
    assert (await upload(client, studies[2], alice_headers, sample_csv(3))).status_code == 201


async def test_an_upload_waiting_too_long_for_a_worker_slot_is_503_with_retry_after(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(upload_settings, "IMPORT_SLOT_WAIT_SECONDS", 0.2)
    slots = service.import_slots()
    taken = 0
    while not slots.locked():
        await slots.acquire()
        taken += 1
    try:
        response = await upload(client, study, alice_headers, sample_csv(3))
    finally:
        for _ in range(taken):
            slots.release()

    await assert_import_failed(client, alice_headers, response, 503, "IMPORTS_BUSY")
    assert response.headers["retry-after"]


# The deadline: an import stops for real, and nothing of it stays.


@pytest.mark.parametrize("dry_run", [False, True])
async def test_an_import_past_its_deadline_is_422_and_leaves_nothing(
    client, alice_headers, study, monkeypatch, dry_run
):
    monkeypatch.setattr(upload_settings, "IMPORT_MAX_SECONDS", 0.3)
    take = importer.ImportPass.take

    async def slow_take(step: importer.ImportPass, batch: list) -> None:
        await take(step, batch)
        await asyncio.sleep(0.2)  # a busy database

    monkeypatch.setattr(importer.ImportPass, "take", slow_take)
    content = csv_bytes([HEADER, *good_rows(5 * 2_000)])

    response, seconds = await timed(upload(client, study, alice_headers, content, dry_run=dry_run))

    body = assert_problem(response, 422, "IMPORT_TIMED_OUT")
    assert "IMPORT_MAX_SECONDS" in body["detail"]
    assert seconds < 3
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 0
    if dry_run:
        assert (await client.get(files_url(study), headers=alice_headers)).json()["total"] == 0
        assert stored_files() == []
    else:  # the import job's record says it failed, and why
        await assert_import_failed(client, alice_headers, response, 422, "IMPORT_TIMED_OUT")
    await assert_counters_match_recount(study)
    # The study is free again.
    assert (await upload(client, study, alice_headers, sample_csv(3))).status_code == 201


# Timeouts on every request's connection (PostgreSQL); the migrations run without them.


@on_postgresql
async def test_request_connections_have_the_lock_and_statement_timeouts():
    seconds_of = "SELECT EXTRACT(EPOCH FROM current_setting(:name)::interval)"
    async with SessionFactory() as session:
        lock_timeout = await session.scalar(text(seconds_of), {"name": "lock_timeout"})
        statement_timeout = await session.scalar(text(seconds_of), {"name": "statement_timeout"})
    assert float(lock_timeout) == settings.DATABASE_LOCK_TIMEOUT_SECONDS
    assert float(statement_timeout) == settings.DATABASE_STATEMENT_TIMEOUT_SECONDS


@on_postgresql
async def test_the_migrations_run_without_the_request_timeouts():
    from src.database import create_engine_for

    unbounded = create_engine_for(TEST_DATABASE_URL, request_timeouts=False)
    try:
        async with unbounded.connect() as connection:
            assert await connection.scalar(text("SHOW statement_timeout")) == "0"
            assert await connection.scalar(text("SHOW lock_timeout")) == "0"
    finally:
        await unbounded.dispose()


@on_postgresql
async def test_a_row_held_past_the_lock_timeout_answers_409_not_a_hang(
    client, alice_headers, study, make_sample
):
    sample = await make_sample(study, values={"tissue": "blood"})
    async with engine.connect() as holder:
        await holder.execute(text("SELECT 1 FROM samples WHERE id = :id FOR UPDATE"), {"id": sample.id})

        response, seconds = await timed(
            client.patch(
                study_url(study, "samples", str(sample.id)),
                json={"values": {"age": 5}},
                headers=alice_headers,
            )
        )
        await holder.rollback()

    assert_problem(response, 409, "STUDY_BUSY")
    assert response.headers["retry-after"]
    assert LOCK_WAIT - 0.2 < seconds < LOCK_WAIT + 1


# The role is checked again once the body has arrived, for a dry run too.


async def test_a_dry_run_by_an_editor_removed_while_the_body_arrives_reveals_nothing(
    client, study, make_user, add_member, auth_headers, make_sample, monkeypatch
):
    await make_sample(study, sample_id="S-000001", values={"tissue": "blood"})
    erin = await make_user(email="erin@example.org")
    await add_member(study, erin, StudyRole.EDITOR)
    erin_headers = await auth_headers(erin)
    check_role = service.confirm_still_editor

    async def removed_just_before(session, access) -> None:
        # The body has arrived; the owner removes Erin just before the dry run checks her role again.
        async with SessionFactory() as other:
            await other.execute(
                delete(StudyMember).where(StudyMember.study_id == study.id, StudyMember.user_id == erin.id)
            )
            await other.commit()
        await check_role(session, access)

    monkeypatch.setattr(service, "confirm_still_editor", removed_just_before)

    response = await upload(client, study, erin_headers, sample_csv(3), dry_run=True)

    body = assert_problem(response, 404, "STUDY_NOT_FOUND")
    assert "report" not in body


async def test_a_deadline_met_in_the_reading_thread_is_422_too(client, alice_headers, study, monkeypatch):
    monkeypatch.setattr(upload_settings, "IMPORT_MAX_SECONDS", 1e-6)  # passed before the sheet is opened

    response = await upload(client, study, alice_headers, sample_csv(3))

    assert_problem(response, 422, "IMPORT_TIMED_OUT")
    assert stored_files() == []


async def test_an_import_stopped_by_its_deadline_logs_one_error_saying_what_was_undone(
    client, alice_headers, study, monkeypatch
):
    # The deadline counts from the job's start, which fetches the stored file and opens it first:
    # room for one batch to be written on a busy machine, not for five.
    monkeypatch.setattr(upload_settings, "IMPORT_MAX_SECONDS", 1.0)
    take = importer.ImportPass.take

    async def slow_take(step: importer.ImportPass, batch: list) -> None:
        await take(step, batch)
        await asyncio.sleep(0.4)

    monkeypatch.setattr(importer.ImportPass, "take", slow_take)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logging.getLogger("studybase.imports").addHandler(handler)
    try:
        response = await upload(client, study, alice_headers, csv_bytes([HEADER, *good_rows(5 * 2_000)]))
    finally:
        logging.getLogger("studybase.imports").removeHandler(handler)

    assert_problem(response, 422, "IMPORT_TIMED_OUT")
    (line,) = [record for record in seen if record.getMessage() == "import_stopped"]
    assert line.levelname == "ERROR"
    assert line.why == "deadline"
    assert line.rows_read >= 2_000
    assert line.rolled_back["created"] >= 2_000
    assert line.study_id == str(study.id)
