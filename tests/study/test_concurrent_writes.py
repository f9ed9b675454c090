"""Writes that race a status change, another edit or a delete: the outcome is the one a user expects.

The service-level tests hold a study read before the change (as a request does between its
dependency and its write) and run on both databases; the PostgreSQL ones race real transactions.
"""

import asyncio
from collections.abc import Awaitable

import httpx
import pytest
from sqlalchemy import delete, select, text, update

from src import database
from src.database import SessionFactory
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import StudyStatus
from src.study.exceptions import SampleNotFound, StudyNotDeletable, StudyReadOnly
from src.study.models import Sample, Study
from src.study.schemas import SampleCreate, SampleFieldDefinition, SampleUpdate, StudyUpdate
from tests.conftest import TEST_DATABASE_URL, assert_problem
from tests.study.conftest import sample_url, study_url

FIELDS = [
    {"name": "n", "type": "integer", "required": False},
    {"name": "m", "type": "text", "required": False},
]
on_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"), reason="a race needs concurrent writers (PostgreSQL)"
)


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def _lock(study: Study) -> None:
    async with SessionFactory() as session:
        await session.execute(update(Study).where(Study.id == study.id).values(status=StudyStatus.LOCKED))
        await session.commit()


# A study read while active, written after it was locked: every data write is 409 and changes nothing.


async def test_a_sample_added_to_a_study_locked_since_it_was_read_is_409(alice, study):
    async with SessionFactory() as session:
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        await _lock(study)

        with pytest.raises(StudyReadOnly):
            await study_samples.create_sample(session, access=stale, data=SampleCreate(sample_id="S1"))

    async with SessionFactory() as session:
        assert await session.scalar(select(Study.sample_count).where(Study.id == study.id)) == 0


async def test_details_and_fields_of_a_study_locked_since_it_was_read_are_409(alice, study):
    async with SessionFactory() as session:
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        await session.commit()
        await _lock(study)

        with pytest.raises(StudyReadOnly):
            await study_service.update_study(
                session, access=stale, data=StudyUpdate(title="Changed"), expected_version=None
            )
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        stale.study.status = StudyStatus.ACTIVE  # as read before the lock (not flushed: autoflush off)
        with pytest.raises(StudyReadOnly):
            await study_service.replace_sample_fields(
                session,
                access=stale,
                fields=[SampleFieldDefinition(name="n", type="integer")],
                expected_version=None,
            )

    async with SessionFactory() as session:
        current = await session.get(Study, study.id)
        assert (current.title, current.sample_fields, current.version) == ("A study", FIELDS, 1)


async def test_a_sample_edited_or_deleted_in_a_study_locked_since_it_was_read_is_409(
    alice, study, make_sample
):
    sample = await make_sample(study, sample_id="A", values={"n": 1})
    async with SessionFactory() as session:
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        loaded = await study_samples.get_sample(session, study=stale.study, sample_pk=sample.id)
        await session.commit()
        await _lock(study)

        with pytest.raises(StudyReadOnly):
            await study_samples.update_sample(
                session,
                access=stale,
                sample=loaded,
                data=SampleUpdate(values={"n": 2}),
                expected_version=None,
            )
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        loaded = await study_samples.get_sample(session, study=stale.study, sample_pk=sample.id)
        with pytest.raises(StudyReadOnly):
            await study_samples.delete_sample(session, access=stale, sample=loaded, expected_version=None)

    async with SessionFactory() as session:
        current = await session.get(Sample, sample.id)
        assert (current.values, current.version) == ({"n": 1}, 1)
        assert await session.scalar(select(Study.sample_count).where(Study.id == study.id)) == 1


async def test_a_patch_merges_into_the_values_as_committed_not_as_read(alice, study, make_sample):
    sample = await make_sample(study, sample_id="A", values={"n": 1, "m": "old"})
    async with SessionFactory() as session:
        access = await study_service.get_study_access(session, study_id=study.id, user=alice)
        loaded = await study_samples.get_sample(session, study=access.study, sample_pk=sample.id)
        await session.commit()
        async with SessionFactory() as other:  # another editor's PATCH {"values": {"m": "new"}}
            await other.execute(
                update(Sample)
                .where(Sample.id == sample.id)
                .values(values={"n": 1, "m": "new"}, version=Sample.version + 1)
            )
            await other.commit()

        updated = await study_samples.update_sample(
            session, access=access, sample=loaded, data=SampleUpdate(values={"n": 2}), expected_version=None
        )

    assert (updated.values, updated.version) == ({"n": 2, "m": "new"}, 3)


async def test_a_sample_deleted_since_it_was_read_is_404_to_a_second_delete(alice, study, make_sample):
    sample = await make_sample(study, sample_id="A", values={"n": 1})
    async with SessionFactory() as session:
        access = await study_service.get_study_access(session, study_id=study.id, user=alice)
        loaded = await study_samples.get_sample(session, study=access.study, sample_pk=sample.id)
        await session.commit()
        async with SessionFactory() as other:
            first = await study_service.get_study_access(other, study_id=study.id, user=alice)
            mine = await study_samples.get_sample(other, study=first.study, sample_pk=sample.id)
            await study_samples.delete_sample(other, access=first, sample=mine, expected_version=None)

        with pytest.raises(SampleNotFound):
            await study_samples.delete_sample(session, access=access, sample=loaded, expected_version=1)

    async with SessionFactory() as session:
        assert await session.scalar(select(Study.sample_count).where(Study.id == study.id)) == 0


async def test_a_sample_deleted_since_it_was_read_is_404_to_a_patch(alice, study, make_sample):
    sample = await make_sample(study, sample_id="A", values={"n": 1})
    async with SessionFactory() as session:
        access = await study_service.get_study_access(session, study_id=study.id, user=alice)
        loaded = await study_samples.get_sample(session, study=access.study, sample_pk=sample.id)
        await session.commit()
        async with SessionFactory() as other:
            await other.execute(delete(Sample).where(Sample.id == sample.id))
            await other.commit()

        with pytest.raises(SampleNotFound):
            await study_samples.update_sample(
                session,
                access=access,
                sample=loaded,
                data=SampleUpdate(values={"n": 2}),
                expected_version=None,
            )


async def test_a_study_given_a_sample_since_it_was_read_is_not_deletable_409(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, sample_fields=FIELDS)
    async with SessionFactory() as session:
        access = await study_service.get_study_access(session, study_id=study.id, user=alice)
        await session.commit()
        async with SessionFactory() as other:
            await other.execute(update(Study).where(Study.id == study.id).values(sample_count=1))
            await other.commit()

        with pytest.raises(StudyNotDeletable):
            await study_service.delete_study(session, study=access.study, expected_version=None)


# PostgreSQL: a transaction holds the study row (as a status change does until its commit) while
# the request is sent; the request must wait for it and then see the study as committed.


async def _sent_while_held(
    statement: str, params: dict, request: Awaitable[httpx.Response]
) -> httpx.Response:
    async with database.engine.connect() as held:
        await held.execute(text(statement), params)
        task = asyncio.ensure_future(request)
        await asyncio.sleep(0.5)
        await held.commit()
    return await task


LOCK_STUDY = "UPDATE studies SET status = 'locked', version = version + 1 WHERE id = :id"


@on_postgresql
@pytest.mark.parametrize(
    "write", ["create sample", "patch study", "put fields", "patch sample", "delete sample"]
)
async def test_a_write_racing_a_lock_is_409_and_changes_nothing(
    client, alice_headers, study, make_sample, write
):
    sample = await make_sample(study, sample_id="A", values={"n": 1})
    requests = {
        "create sample": lambda: client.post(
            study_url(study, "samples"), json={"sample_id": "B"}, headers=alice_headers
        ),
        "patch study": lambda: client.patch(
            study_url(study), json={"title": "Changed"}, headers=alice_headers
        ),
        "put fields": lambda: client.put(
            study_url(study, "sample-fields"),
            json=[*FIELDS, {"name": "x", "type": "text"}],
            headers=alice_headers,
        ),
        "patch sample": lambda: client.patch(
            sample_url(sample), json={"values": {"n": 2}}, headers=alice_headers
        ),
        "delete sample": lambda: client.delete(sample_url(sample), headers=alice_headers),
    }

    response = await _sent_while_held(LOCK_STUDY, {"id": study.id}, requests[write]())

    assert_problem(response, 409, "STUDY_READ_ONLY")
    current = (await client.get(study_url(study), headers=alice_headers)).json()
    assert (current["title"], current["sample_fields"], current["sample_count"]) == ("A study", FIELDS, 1)
    assert (await client.get(sample_url(sample), headers=alice_headers)).json()["values"] == {"n": 1}


@on_postgresql
async def test_a_patch_racing_another_edit_keeps_the_other_key(client, alice_headers, study, make_sample):
    sample = await make_sample(study, sample_id="A", values={"n": 1, "m": "old"})

    response = await _sent_while_held(
        'UPDATE samples SET "values" = \'{"n": 1, "m": "new"}\', version = version + 1 WHERE id = :id',
        {"id": sample.id},
        client.patch(sample_url(sample), json={"values": {"n": 2}}, headers=alice_headers),
    )

    assert response.status_code == 200
    assert (response.json()["values"], response.json()["version"]) == ({"n": 2, "m": "new"}, 3)


@on_postgresql
async def test_a_second_delete_racing_the_first_is_404(client, alice_headers, study, make_sample):
    sample = await make_sample(study, sample_id="A", values={"n": 1})

    async def first_delete(held) -> None:
        await held.execute(
            text("UPDATE studies SET sample_count = sample_count - 1 WHERE id = :id"), {"id": study.id}
        )
        await held.execute(text("DELETE FROM samples WHERE id = :id"), {"id": sample.id})

    async with database.engine.connect() as held:
        await first_delete(held)
        task = asyncio.ensure_future(client.delete(sample_url(sample), headers=alice_headers))
        await asyncio.sleep(0.5)
        await held.commit()
    response = await task

    assert_problem(response, 404, "SAMPLE_NOT_FOUND")
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 0


@on_postgresql
async def test_a_study_delete_racing_a_sample_insert_is_409_not_deletable(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, sample_fields=FIELDS)

    response = await _sent_while_held(
        "UPDATE studies SET sample_count = sample_count + 1 WHERE id = :id",
        {"id": study.id},
        client.delete(study_url(study), headers=alice_headers),
    )

    assert_problem(response, 409, "STUDY_NOT_DELETABLE")
