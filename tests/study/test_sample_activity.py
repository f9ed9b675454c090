"""A sample's own activity log, and the names an entry carries (the actor's full name)."""

import uuid

import pytest
from sqlalchemy import text, update

from src.database import SessionFactory
from src.study import activity as study_activity
from src.study.constants import StudyRole, StudyStatus
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import HEADER, good_rows, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
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


async def imported_sample(client, study, headers, sample_id: str, *, filename: str, count: int, start: int):
    """Uploads `count` new samples from `filename` and returns the one named `sample_id`."""
    response = await upload(client, study, headers, sample_csv(count, start=start), filename=filename)
    assert response.status_code == 201, response.text
    found = await client.get(study_url(study, "samples"), params={"q": sample_id}, headers=headers)
    (sample,) = found.json()["items"]
    return sample


async def test_a_sample_an_upload_created_lists_that_files_import_by_name(
    client, study, alice, alice_headers, make_user, add_member, auth_headers
):
    """Imports are logged once per file: a sample's log shows the entry of the file that created it
    (the file and the uploader by full name), and no other file's."""
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")
    await add_member(study, grace, StudyRole.EDITOR)
    grace_headers = await auth_headers(grace)
    mine = await imported_sample(
        client, study, grace_headers, "S-000002", filename="week47.csv", count=3, start=1
    )
    other = await imported_sample(
        client, study, alice_headers, "S-000004", filename="week48.csv", count=1, start=4
    )
    await edit(client, study, mine, alice_headers, values={"tissue": "saliva"})

    body = (await client.get(activity_url(study, mine["id"]), headers=alice_headers)).json()

    assert (body["total"], body["total_is_exact"]) == (2, True)
    edited, imported = body["items"]
    assert (edited["action"], edited["actor"]["full_name"]) == ("sample_updated", alice.full_name)
    assert (imported["action"], imported["actor"]["full_name"]) == ("sample_file_imported", "Grace Hopper")
    assert imported["file"] == {"id": mine["source_file_id"], "filename": "week47.csv", "deleted": False}
    assert imported["details"]["created"] == 3
    theirs = (await client.get(activity_url(study, other["id"]), headers=alice_headers)).json()["items"]
    assert [(entry["action"], entry["file"]["filename"]) for entry in theirs] == [
        ("sample_file_imported", "week48.csv")
    ]
    # Entered directly: its own entries only, none of the files'.
    typed = await post_sample(client, study, alice_headers, "S-0001")
    log = (await client.get(activity_url(study, typed["id"]), headers=alice_headers)).json()["items"]
    assert [entry["action"] for entry in log] == ["sample_created"]


@pytest.mark.parametrize("updated_by_an_import", [False, True])
async def test_a_sample_an_upload_created_costs_no_more_statements(
    client, study, alice_headers, updated_by_an_import
):
    sample = await imported_sample(
        client, study, alice_headers, "S-000001", filename="a.csv", count=2, start=1
    )
    await edit(client, study, sample, alice_headers, values={"volume": 3})
    imports = ["sample_file_imported"]
    if updated_by_an_import:
        await upsert(client, study, alice_headers, changed_csv("saliva"), "b.csv")
        imports.append("sample_file_imported")

    with StatementCounter() as sql:
        response = await client.get(activity_url(study, sample["id"]), headers=alice_headers)

    assert sorted(entry["action"] for entry in response.json()["items"]) == sorted(
        ["sample_updated", *imports]
    )
    assert len(sql.statements) == 4  # as for a sample entered directly: the file's entry rides along


def changed_csv(*tissues: str) -> bytes:
    """Samples S-000001, S-000002, ... as sample_csv makes them, but of these tissues."""
    rows = good_rows(len(tissues))
    for row, tissue in zip(rows, tissues, strict=True):
        row[HEADER.index("tissue")] = tissue
    return csv_bytes([HEADER, *rows])


async def upsert(client, study, headers, content: bytes, filename: str) -> dict:
    response = await upload(client, study, headers, content, filename=filename, mode="upsert")
    assert response.status_code == 201, response.text
    return response.json()


def imports_in(log: list[dict]) -> list[tuple[str, str | None]]:
    return [(entry["action"], entry["file"] and entry["file"]["filename"]) for entry in log]


async def test_a_samples_log_shows_the_import_that_last_changed_it(
    client, study, alice_headers, make_user, add_member, auth_headers
):
    """Besides the file that created it, the last file whose import changed the sample: only the last
    (the study's log keeps them all); an import that left its values as they were did not change it;
    a manual edit does not take the file's place."""
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")
    await add_member(study, grace, StudyRole.EDITOR)
    grace_headers = await auth_headers(grace)
    changed = await imported_sample(
        client, study, alice_headers, "S-000001", filename="week47.csv", count=2, start=1
    )
    unchanged = (
        await client.get(study_url(study, "samples"), params={"q": "S-000002"}, headers=alice_headers)
    ).json()["items"][0]

    week48 = await upsert(client, study, grace_headers, changed_csv("saliva", "blood"), "week48.csv")

    assert (week48["report"]["updated"], week48["report"]["unchanged"]) == (1, 1)
    body = (await client.get(activity_url(study, changed["id"]), headers=alice_headers)).json()
    assert (body["total"], body["total_is_exact"]) == (2, True)
    updated_it = body["items"][0]
    assert (updated_it["actor"]["full_name"], updated_it["details"]["updated"]) == ("Grace Hopper", 1)
    assert updated_it["file"] == {"id": week48["id"], "filename": "week48.csv", "deleted": False}
    assert imports_in(body["items"]) == [
        ("sample_file_imported", "week48.csv"),
        ("sample_file_imported", "week47.csv"),
    ]
    log = (await client.get(activity_url(study, unchanged["id"]), headers=alice_headers)).json()["items"]
    assert imports_in(log) == [("sample_file_imported", "week47.csv")]

    await edit(client, study, changed, alice_headers, values={"volume": 3})
    log = (await client.get(activity_url(study, changed["id"]), headers=alice_headers)).json()["items"]
    assert imports_in(log) == [
        ("sample_updated", None),
        ("sample_file_imported", "week48.csv"),
        ("sample_file_imported", "week47.csv"),
    ]
    await upsert(client, study, alice_headers, changed_csv("tumour"), "week49.csv")

    log = (await client.get(activity_url(study, changed["id"]), headers=alice_headers)).json()["items"]
    assert imports_in(log) == [
        ("sample_file_imported", "week49.csv"),
        ("sample_updated", None),
        ("sample_file_imported", "week47.csv"),
    ]
    study_log = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]
    assert [
        entry["file"]["filename"] for entry in study_log if entry["action"] == "sample_file_imported"
    ] == [
        "week49.csv",
        "week48.csv",
        "week47.csv",
    ]


async def test_deleting_the_file_that_last_changed_a_sample_takes_its_import_out_of_the_log(
    client, study, alice_headers
):
    """The file created no sample, so it may be deleted: the sample's reference to it is set to NULL
    (by its foreign key), the deletion succeeds, and the sample's log is back to its own entries."""
    sample = await imported_sample(
        client, study, alice_headers, "S-000001", filename="week47.csv", count=1, start=1
    )
    week48 = await upsert(client, study, alice_headers, changed_csv("saliva"), "week48.csv")

    response = await client.delete(f"/api/v1/sample-files/{week48['id']}", headers=alice_headers)

    assert response.status_code == 204, response.text
    log = (await client.get(activity_url(study, sample["id"]), headers=alice_headers)).json()["items"]
    assert imports_in(log) == [("sample_file_imported", "week47.csv")]
    async with SessionFactory() as session:
        row = await session.get(Sample, uuid.UUID(sample["id"]))
    assert (row.updated_by_file_id, row.values["tissue"]) == (None, "saliva")


async def plan_of(session, statement) -> str:
    """The backend's plan of `statement` (PostgreSQL's with sequential scans off: a tiny table is
    otherwise read whole)."""
    dialect = session.get_bind().dialect
    compiled = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "postgresql":
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        return "\n".join((await session.execute(text(f"EXPLAIN {compiled}"))).scalars())
    return "\n".join(str(row[-1]) for row in await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


async def test_the_sample_filter_reads_its_indexes(client, study, alice_headers):
    """The filter is index reads of (study_id, sample_pk, at, id) and, for a sample an upload created
    and another updated, of (study_id, sample_file_id): not the study's whole log."""
    sample = await imported_sample(
        client, study, alice_headers, "S-000001", filename="a.csv", count=1, start=1
    )
    await upsert(client, study, alice_headers, changed_csv("saliva"), "b.csv")
    async with SessionFactory() as session:
        row = await session.get(Sample, uuid.UUID(sample["id"]))
        assert row.updated_by_file_id is not None
        plan = await plan_of(
            session,
            study_activity.activity_query()
            .where(study_activity.sample_entries(study, row))
            .order_by(*study_activity.ACTIVITY_NEWEST_FIRST)
            .limit(20),
        )

    assert "ix_study_activity_study_id_sample_pk_at_id" in plan, plan
    assert "ix_study_activity_study_id_sample_file_id" in plan, plan


async def test_deleting_a_file_finds_the_samples_it_updated_by_their_index(db):
    """The foreign key's ON DELETE SET NULL looks up the samples naming the file: by the partial index
    of the samples that name one, not a scan of every sample."""
    the_file = uuid.uuid4()
    async with SessionFactory() as session:
        plan = await plan_of(
            session,
            update(Sample).where(Sample.updated_by_file_id == the_file).values(updated_by_file_id=None),
        )

    assert "ix_samples_updated_by_file_id" in plan, plan
