"""A sample's own activity log, and the names an entry carries (the actor's full name)."""

import uuid

import pytest
from sqlalchemy import text

from src.database import SessionFactory
from src.study import activity as study_activity
from src.study.constants import StudyRole, StudyStatus
from src.study.models import Sample, StudyActivity
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, StatementCounter, study_url


def activity_url(study, sample_pk) -> str:
    return study_url(study, "samples", str(sample_pk), "activity")


async def post_sample(client, study, headers, sample_id: str) -> dict:
    response = await client.post(
        study_url(study, "samples"),
        json={"sample_id": sample_id, "values": {"tissue": "blood"}},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def edit(client, study, sample: dict, headers, **body) -> dict:
    response = await client.patch(study_url(study, "samples", sample["id"]), json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def test_a_samples_log_holds_its_own_entries_newest_first_by_full_name(
    client, study, alice, alice_headers, make_user, add_member, auth_headers
):
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")
    await add_member(study, grace, StudyRole.EDITOR)
    grace_headers = await auth_headers(grace)
    one = await post_sample(client, study, alice_headers, "S-0001")
    two = await post_sample(client, study, alice_headers, "S-0002")
    await edit(client, study, one, grace_headers, values={"tissue": "saliva"})
    await edit(client, study, two, grace_headers, values={"tissue": "tumour"})

    response = await client.get(activity_url(study, one["id"]), headers=alice_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["total_is_exact"]) == (2, True)
    assert [(entry["action"], entry["actor"]["full_name"]) for entry in body["items"]] == [
        ("sample_updated", "Grace Hopper"),
        ("sample_created", alice.full_name),
    ]
    assert body["items"][0]["actor"]["email"] == "grace@example.org"
    assert {entry["sample_pk"] for entry in body["items"]} == {one["id"]}
    assert body["items"][0]["details"]["new"] == {"values": {"tissue": "saliva"}}
    # The study's log has both samples' entries, each naming its sample.
    study_log = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]
    assert {entry["sample_pk"] for entry in study_log if entry["action"].startswith("sample_")} == {
        one["id"],
        two["id"],
    }


async def test_a_renamed_sample_keeps_its_history(client, study, alice_headers):
    sample = await post_sample(client, study, alice_headers, "S-0001")
    await edit(client, study, sample, alice_headers, sample_id="S-0001-B")
    await edit(client, study, sample, alice_headers, status="received")

    log = (await client.get(activity_url(study, sample["id"]), headers=alice_headers)).json()["items"]

    assert [entry["action"] for entry in log] == ["sample_updated", "sample_updated", "sample_created"]


async def test_any_member_reads_it_others_get_404_and_another_studys_sample_is_not_found(
    client, study, alice, alice_headers, make_user, add_member, auth_headers, make_study
):
    sample = await post_sample(client, study, alice_headers, "S-0001")
    viewer = await make_user()
    await add_member(study, viewer, StudyRole.VIEWER)
    other_study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    elsewhere = await post_sample(client, other_study, alice_headers, "S-0001")

    assert (
        len(
            (await client.get(activity_url(study, sample["id"]), headers=await auth_headers(viewer))).json()[
                "items"
            ]
        )
        == 1
    )
    stranger = await auth_headers(await make_user())
    assert_problem(
        await client.get(activity_url(study, sample["id"]), headers=stranger), 404, "STUDY_NOT_FOUND"
    )
    # The other study's sample through this study's URL: its owner is a member of both, still nothing.
    assert_problem(
        await client.get(activity_url(study, elsewhere["id"]), headers=alice_headers), 404, "SAMPLE_NOT_FOUND"
    )


@pytest.mark.parametrize("edits", [1, 5])
async def test_a_samples_log_costs_the_same_statements_whatever_its_length(
    client, study, alice_headers, edits
):
    sample = await post_sample(client, study, alice_headers, "S-0001")
    for volume in range(edits):
        await edit(client, study, sample, alice_headers, values={"volume": volume + 1})

    with StatementCounter() as sql:
        response = await client.get(
            activity_url(study, sample["id"]), params={"page_size": 3}, headers=alice_headers
        )

    assert len(response.json()["items"]) == min(3, edits + 1)
    assert response.json()["total"] == edits + 1
    assert len(sql.statements) == 4  # caller with study and role, sample, count, the page with what it names


async def test_the_sample_filter_reads_its_index(client, study, alice_headers):
    """The filter is one index read of (study_id, sample_pk, at, id), not the study's whole log."""
    sample = await post_sample(client, study, alice_headers, "S-0001")
    async with SessionFactory() as session:
        row = await session.get(Sample, uuid.UUID(sample["id"]))
        query = (
            study_activity.activity_query()
            .where(StudyActivity.study_id == study.id, StudyActivity.sample_pk == row.id)
            .order_by(*study_activity.ACTIVITY_NEWEST_FIRST)
            .limit(20)
        )
        dialect = session.get_bind().dialect
        compiled = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "postgresql":
            await session.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table is read whole
            plan = "\n".join((await session.execute(text(f"EXPLAIN {compiled}"))).scalars())
        else:
            plan = "\n".join(
                str(row[-1]) for row in await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            )

    assert "ix_study_activity_study_id_sample_pk_at_id" in plan, plan
