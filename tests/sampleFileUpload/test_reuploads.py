"""The same content uploaded again (issue 18): a duplicate only if importing it again would change
nothing; after an edit, a deletion or a later file it imports like any other file, its record naming
the earlier import in `same_content_as`; two identical uploads at once still import once."""

import asyncio

from sqlalchemy import select

from src.database import SessionFactory
from src.sampleFileUpload.models import SampleFile
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import SAMPLE_FILES, files_url, sample_csv, upload
from tests.study.conftest import study_url


async def samples_by_id(study) -> dict[str, Sample]:
    async with SessionFactory() as session:
        samples = await session.scalars(select(Sample).where(Sample.study_id == study.id))
        return {sample.sample_id: sample for sample in samples}


async def records(study) -> list[SampleFile]:
    async with SessionFactory() as session:
        return list(
            await session.scalars(
                select(SampleFile).where(SampleFile.study_id == study.id).order_by(SampleFile.created_at)
            )
        )


async def edit_volume(client, headers, study, sample_id: str, volume: float) -> None:
    sample = (await samples_by_id(study))[sample_id]
    response = await client.patch(
        study_url(study, "samples", str(sample.id)), json={"values": {"volume": volume}}, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_the_same_content_after_an_edit_is_imported_again_and_its_report_counts_the_change(
    client, alice_headers, study
):
    first = (await upload(client, study, alice_headers, sample_csv(3), mode="upsert")).json()
    await edit_volume(client, alice_headers, study, "S-000002", 9.75)

    again = await upload(client, study, alice_headers, sample_csv(3), mode="upsert")

    assert again.status_code == 201, again.text
    body = again.json()
    assert body["id"] != first["id"]
    assert (body["same_content_as"], body["duplicate_of"]) == (first["id"], None)
    report = body["report"]
    assert (report["rows"], report["created"], report["updated"], report["unchanged"]) == (3, 0, 1, 2)
    assert (await samples_by_id(study))["S-000002"].values["volume"] == 2.5  # as the file has it
    assert [str(record.same_content_as) for record in await records(study)] == ["None", first["id"]]


async def test_the_same_content_again_with_nothing_changed_since_is_still_a_duplicate(
    client, alice_headers, study
):
    await upload(client, study, alice_headers, sample_csv(3), mode="upsert")
    await edit_volume(client, alice_headers, study, "S-000002", 9.75)
    reimported = (await upload(client, study, alice_headers, sample_csv(3), mode="upsert")).json()

    third = await upload(client, study, alice_headers, sample_csv(3), mode="upsert")

    assert third.status_code == 200, third.text
    assert (third.json()["id"], third.json()["duplicate_of"]) == (reimported["id"], reimported["id"])
    # The third upload's own record says which import it repeats; it imported nothing.
    [repeat] = [record for record in await records(study) if record.duplicate_of is not None]
    assert (str(repeat.duplicate_of), repeat.status) == (reimported["id"], "imported")
    assert repeat.report == reimported["report"]


async def test_the_same_content_after_its_samples_were_deleted_creates_them_again(
    client, alice_headers, study
):
    first = (await upload(client, study, alice_headers, sample_csv(2))).json()
    for sample in (await samples_by_id(study)).values():
        deleted = await client.delete(study_url(study, "samples", str(sample.id)), headers=alice_headers)
        assert deleted.status_code == 204

    again = await upload(client, study, alice_headers, sample_csv(2))

    assert again.status_code == 201, again.text
    assert again.json()["same_content_as"] == first["id"]
    assert again.json()["report"]["created"] == 2
    assert sorted(await samples_by_id(study)) == ["S-000001", "S-000002"]


async def test_inserting_the_same_content_again_after_one_deletion_is_refused_like_any_other_file(
    client, alice_headers, study
):
    first = (await upload(client, study, alice_headers, sample_csv(3))).json()
    sample = (await samples_by_id(study))["S-000001"]
    await client.delete(study_url(study, "samples", str(sample.id)), headers=alice_headers)

    response = await upload(client, study, alice_headers, sample_csv(3))

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    assert [(e["row"], e["code"]) for e in body["report"]["errors"]] == [
        (3, "already_exists"),
        (4, "already_exists"),
    ]
    rejected = (await client.get(f"{SAMPLE_FILES}/{body['sample_file_id']}", headers=alice_headers)).json()
    assert (rejected["status"], rejected["same_content_as"]) == ("rejected", first["id"])


async def test_inserting_the_same_content_after_an_edit_would_change_nothing_so_it_is_a_duplicate(
    client, alice_headers, study
):
    """Every sample of the file is in the study: inserting them again would only be refused."""
    first = (await upload(client, study, alice_headers, sample_csv(3))).json()
    await edit_volume(client, alice_headers, study, "S-000002", 9.75)

    again = await upload(client, study, alice_headers, sample_csv(3))

    assert again.status_code == 200, again.text
    assert again.json()["duplicate_of"] == first["id"]
    assert (await samples_by_id(study))["S-000002"].values["volume"] == 9.75


async def test_a_dry_run_of_the_same_content_after_an_edit_reports_what_it_would_change(
    client, alice_headers, study
):
    first = (await upload(client, study, alice_headers, sample_csv(3), mode="upsert")).json()
    await edit_volume(client, alice_headers, study, "S-000003", 9.75)

    dry_run = await upload(client, study, alice_headers, sample_csv(3), mode="upsert", dry_run=True)

    assert dry_run.status_code == 200, dry_run.text
    body = dry_run.json()
    assert (body["duplicate_of"], body["same_content_as"]) == (None, first["id"])
    assert (body["report"]["updated"], body["report"]["unchanged"]) == (1, 2)
    assert (await samples_by_id(study))["S-000003"].values["volume"] == 9.75


async def test_two_identical_uploads_at_once_after_an_edit_import_once(client, alice_headers, study):
    content = sample_csv(2_500)
    await upload(client, study, alice_headers, content, mode="upsert")
    await edit_volume(client, alice_headers, study, "S-000002", 9.75)

    responses = await asyncio.gather(
        *(upload(client, study, alice_headers, content, mode="upsert") for _ in range(2))
    )

    assert sorted(response.status_code for response in responses) == [200, 201], [r.text for r in responses]
    created = next(response.json() for response in responses if response.status_code == 201)
    duplicate = next(response.json() for response in responses if response.status_code == 200)
    assert created["report"]["updated"] == 1
    assert duplicate["duplicate_of"] == created["id"]
    # The first upload, the one imported again, and the repeat's own record (which imported nothing).
    repeats = sorted(str(record.duplicate_of) for record in await records(study))
    assert repeats == sorted([created["id"], "None", "None"])
    assert (await client.get(files_url(study), headers=alice_headers)).json()["total"] == 3
