"""The study dashboard's per-choice counts and completeness come from maintained counters: every
sample write keeps them, and they agree exactly with a recount of what the sample routes answer."""

import asyncio
import uuid
from collections import Counter
from importlib import util
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text

from src.database import SessionFactory
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import FIELD_FILLED, StudyStatus
from src.study.models import StudyFieldValueCount
from src.study.utils import field_value_deltas
from tests.conftest import TEST_DATABASE_URL, assert_problem
from tests.dashboard.conftest import study_dashboard_url
from tests.dashboard.test_dashboard import post_sample
from tests.sampleFileUpload.conftest import HEADER, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
from tests.study.conftest import FIELDS, study_url

MIGRATIONS = Path(__file__).parents[2] / "src" / "migrations" / "versions"


def test_field_value_deltas_count_present_values_and_choices_and_net_old_against_new():
    changes = [
        (None, {"tissue": "blood", "volume": 1.5, "label": None}),  # created; a null is no value
        ({"tissue": "blood", "volume": 2.0}, {"tissue": "saliva", "volume": 2.0, "age": 4}),  # edited
        ({"tissue": "tumour", "age": 9}, None),  # deleted
    ]

    deltas = field_value_deltas(FIELDS, changes)

    # tissue: +1 created, the edit keeps a value, -1 deleted; blood +1 created, -1 edited away;
    # age: +1 edited in, -1 deleted; label's null is no value.
    assert {key: delta for key, delta in deltas.items() if delta} == {
        ("tissue", "saliva"): 1,
        ("tissue", "tumour"): -1,
        ("volume", FIELD_FILLED): 1,
    }
    assert ("volume", "1.5") not in deltas  # not a choice field: no per-value counter


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, code="COUNT-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def listed_samples(client, study, headers) -> list[dict]:
    samples, page = [], 1
    while True:
        body = (
            await client.get(
                study_url(study, "samples"), params={"page": page, "page_size": 100}, headers=headers
            )
        ).json()
        samples += body["items"]
        if len(samples) >= body["total"]:
            return samples
        page += 1


async def recount(client, study, headers) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """The choice counts and filled counts the dashboard should show, counted from the sample routes."""
    fields = (await client.get(study_url(study), headers=headers)).json()["sample_fields"]
    samples = await listed_samples(client, study, headers)
    filled = Counter(
        name for sample in samples for name, value in sample["values"].items() if value is not None
    )
    choices = {
        field["name"]: {
            choice: sum(1 for sample in samples if sample["values"].get(field["name"]) == choice)
            for choice in field["choices"]
        }
        for field in fields
        if field["type"] == "choice"
    }
    return choices, {field["name"]: filled[field["name"]] for field in fields}


async def assert_figures_match_a_recount(client, study, headers) -> dict:
    body = (await client.get(study_dashboard_url(study), headers=headers)).json()
    choices, filled = await recount(client, study, headers)
    assert {entry["field"]: entry["counts"] for entry in body["choices"]} == choices
    assert {entry["field"]: entry["filled"] for entry in body["completeness"]} == filled
    total = body["samples"]["total"]
    assert {entry["field"]: entry["share"] for entry in body["completeness"]} == {
        name: count / total if total else 0.0 for name, count in filled.items()
    }
    return body


async def stored_counters(study) -> dict[tuple[str, str], int]:
    """The study's counter rows, without the zeros a count back to nothing leaves."""
    async with SessionFactory() as session:
        rows = await session.execute(
            select(StudyFieldValueCount.field, StudyFieldValueCount.value, StudyFieldValueCount.count).where(
                StudyFieldValueCount.study_id == study.id
            )
        )
        return {(field, value): count for field, value, count in rows if count}


async def make_every_kind_of_sample_write(client, study, headers) -> None:
    """Create, PATCH (change, clear, add a value, status only), delete, import insert and upsert."""
    first = await post_sample(client, study, headers, "A-1", volume=2.5, label="AB")
    second = await post_sample(client, study, headers, "A-2", tissue="saliva", age=40)
    await post_sample(client, study, headers, "A-3", tissue="tumour", fasting=True)
    patched = await client.patch(
        study_url(study, "samples", first["id"]),
        json={"values": {"tissue": "saliva", "volume": None, "age": 7}},
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    status_only = await client.patch(
        study_url(study, "samples", second["id"]), json={"status": "stored"}, headers=headers
    )
    assert status_only.status_code == 200, status_only.text
    unchanged = await client.patch(
        study_url(study, "samples", second["id"]), json={"values": {"tissue": "saliva"}}, headers=headers
    )
    assert unchanged.status_code == 200, unchanged.text
    deleted = await client.delete(study_url(study, "samples", second["id"]), headers=headers)
    assert deleted.status_code == 204, deleted.text
    assert (await upload(client, study, headers, sample_csv(4))).status_code == 201
    # Upsert: S-000001 changes tissue and keeps the rest (empty cells), S-000002 gains a value where
    # it had none, A-3 is left as it is, S-000050 is new; a rejected file changes nothing.
    upsert = csv_bytes(
        [
            HEADER,
            ["S-000001", "", "tumour", "", "", "", ""],
            ["S-000002", "stored", "", "", "", "no", "2026-11-21"],
            ["A-3", "", "tumour", "", "", "", ""],
            ["S-000050", "received", "saliva", "", "3", "", ""],
        ]
    )
    assert (await upload(client, study, headers, upsert, mode="upsert")).status_code == 201, "upsert"
    bad = csv_bytes([HEADER, ["S-000003", "received", "bone", "", "", "", ""]])
    assert (await upload(client, study, headers, bad, mode="upsert")).status_code == 422


async def test_every_sample_write_keeps_the_counts_equal_to_a_recount(client, study, alice_headers):
    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["choices"] == [{"field": "tissue", "counts": {"blood": 0, "saliva": 0, "tumour": 0}}]

    await make_every_kind_of_sample_write(client, study, alice_headers)

    body = await assert_figures_match_a_recount(client, study, alice_headers)
    # Worked out by hand, so a recount that agreed with a wrong counter would still fail here:
    # A-1 saliva (age), A-3 tumour, S-000001 tumour, S-000002..4 blood, S-000050 saliva.
    assert body["samples"]["total"] == 7
    assert body["choices"] == [{"field": "tissue", "counts": {"blood": 3, "saliva": 2, "tumour": 2}}]
    filled = {entry["field"]: entry["filled"] for entry in body["completeness"]}
    assert filled == {
        "tissue": 7,
        "volume": 4,  # A-1's cleared; the four imported rows
        "age": 6,  # A-1's 7, the four imported rows, S-000050
        "label": 1,
        "fasting": 5,
        "collected_on": 4,
        "frozen_at": 0,
    }
    for choice, count in body["choices"][0]["counts"].items():
        listed = await client.get(
            study_url(study, "samples"), params={"field.tissue": choice}, headers=alice_headers
        )
        assert listed.json()["total"] == count


async def test_deleting_every_sample_counts_back_to_zero(client, study, alice_headers):
    await make_every_kind_of_sample_write(client, study, alice_headers)

    for sample in await listed_samples(client, study, alice_headers):
        assert (
            await client.delete(study_url(study, "samples", sample["id"]), headers=alice_headers)
        ).status_code == 204

    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["choices"] == [{"field": "tissue", "counts": {"blood": 0, "saliva": 0, "tumour": 0}}]
    assert {entry["filled"] for entry in body["completeness"]} == {0}
    assert await stored_counters(study) == {}


async def test_a_field_cannot_be_removed_or_renamed_while_samples_have_it(client, study, alice_headers):
    """Why a schema change never recounts: with samples, a field keeps its name and type and its
    choices (they can only be added to), so every counter stays true; a new choice starts at 0."""
    await make_every_kind_of_sample_write(client, study, alice_headers)
    before = await stored_counters(study)
    url = study_url(study, "sample-fields")

    removed = await client.put(url, json=FIELDS[1:], headers=alice_headers)
    renamed = await client.put(
        url, json=[{**FIELDS[0], "name": "Tissue"}, *FIELDS[1:]], headers=alice_headers
    )
    assert_problem(removed, 409, "INCOMPATIBLE_SAMPLE_FIELDS")
    assert_problem(renamed, 409, "INCOMPATIBLE_SAMPLE_FIELDS")
    more_choices = [{**FIELDS[0], "choices": ["blood", "saliva", "tumour", "urine"]}, *FIELDS[1:]]
    assert (await client.put(url, json=more_choices, headers=alice_headers)).status_code == 200

    assert await stored_counters(study) == before
    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["choices"] == [
        {"field": "tissue", "counts": {"blood": 3, "saliva": 2, "tumour": 2, "urine": 0}}
    ]
    await post_sample(client, study, alice_headers, "U-1", tissue="urine")
    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["choices"][0]["counts"]["urine"] == 1


async def test_an_emptied_study_may_change_its_fields_and_counts_from_zero(client, study, alice_headers):
    await make_every_kind_of_sample_write(client, study, alice_headers)
    for sample in await listed_samples(client, study, alice_headers):
        await client.delete(study_url(study, "samples", sample["id"]), headers=alice_headers)
    # Empty again: anything goes. `volume` removed, `tissue` a text field, a choice field `kind`
    # whose choices include a former tissue value.
    fields = [
        {"name": "tissue", "type": "text", "required": True},
        {"name": "kind", "type": "choice", "required": False, "choices": ["saliva", "other"]},
    ]
    assert (
        await client.put(study_url(study, "sample-fields"), json=fields, headers=alice_headers)
    ).status_code == 200
    await post_sample(client, study, alice_headers, "N-1", tissue="saliva", kind="saliva")
    await post_sample(client, study, alice_headers, "N-2", tissue="saliva")

    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["choices"] == [{"field": "kind", "counts": {"saliva": 1, "other": 0}}]
    assert [(entry["field"], entry["filled"]) for entry in body["completeness"]] == [
        ("tissue", 2),
        ("kind", 1),
    ]
    assert await stored_counters(study) == {
        ("tissue", FIELD_FILLED): 2,
        ("kind", FIELD_FILLED): 1,
        ("kind", "saliva"): 1,
    }


async def test_a_delete_counts_off_what_the_sample_held_when_deleted(client, study, alice, alice_headers):
    """A request reads the sample, another edits it, the first deletes it: the counters lose the
    edited values and status (what the row held), not the ones read before the edit."""
    created = await post_sample(client, study, alice_headers, "R-1", volume=1.0)
    async with SessionFactory() as session:
        access = await study_service.get_study_access(session, study_id=study.id, user=alice)
        stale = await study_samples.get_sample(
            session, study=access.study, sample_pk=uuid.UUID(created["id"])
        )
        await session.commit()  # the read is over; the sample object keeps what it read
        patched = await client.patch(
            study_url(study, "samples", created["id"]),
            json={"status": "stored", "values": {"tissue": "saliva", "volume": None, "age": 3}},
            headers=alice_headers,
        )
        assert patched.status_code == 200, patched.text
        await study_samples.delete_sample(session, access=access, sample=stale, expected_version=None)

    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["samples"]["total"] == 0
    assert set(body["samples"]["by_status"].values()) == {0}
    assert await stored_counters(study) == {}


@pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"), reason="a race needs concurrent writers (PostgreSQL)"
)
async def test_concurrent_edits_that_each_need_a_new_counter_row_all_succeed(client, study, alice_headers):
    """Sample edits only share-lock the study, so several may create the same missing counter row
    at once; the upsert makes that one row, where an update-then-insert failed all but one."""
    samples = [await post_sample(client, study, alice_headers, f"C-{number}") for number in range(8)]

    answers = await asyncio.gather(
        *(
            client.patch(
                study_url(study, "samples", sample["id"]),
                json={"status": "consumed", "values": {"tissue": "tumour"}},
                headers=alice_headers,
            )
            for sample in samples
        )
    )

    assert [answer.status_code for answer in answers] == [200] * 8
    body = await assert_figures_match_a_recount(client, study, alice_headers)
    assert body["samples"]["by_status"]["consumed"] == 8
    assert body["choices"][0]["counts"] == {"blood": 0, "saliva": 0, "tumour": 8}


def _backfill_sql(dialect: str) -> str:
    """The field counters' backfill of its migration (found by topic: the lead may renumber it)."""
    (path,) = MIGRATIONS.glob("*_dashboard_field_counts.py")
    spec = util.spec_from_file_location("dashboard_field_counts", path)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._POSTGRESQL_BACKFILL if dialect == "postgresql" else module._SQLITE_BACKFILL


async def test_the_migration_backfill_counts_what_the_writes_maintained(
    client, study, alice_headers, make_study, alice
):
    other = await make_study(owner=alice, code="COUNT-2", sample_fields=FIELDS[:2], status=StudyStatus.ACTIVE)
    await post_sample(client, other, alice_headers, "O-1", volume=1.0)
    await make_every_kind_of_sample_write(client, study, alice_headers)
    maintained = {study.id: await stored_counters(study), other.id: await stored_counters(other)}

    async with SessionFactory() as session:
        await session.execute(delete(StudyFieldValueCount))
        await session.execute(text(_backfill_sql(session.get_bind().dialect.name)))
        await session.commit()

    assert {study.id: await stored_counters(study), other.id: await stored_counters(other)} == maintained
    assert maintained[other.id] == {
        ("tissue", FIELD_FILLED): 1,
        ("tissue", "blood"): 1,
        ("volume", FIELD_FILLED): 1,
    }
