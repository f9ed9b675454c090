"""What an activity entry names: the actor by full name, the sample file, and on the dashboard the
study, all in the one statement of the list (no statement per entry)."""

from src.study.constants import StudyStatus
from tests.dashboard.conftest import SUMMARY
from tests.sampleFileUpload.conftest import sample_csv, upload
from tests.study.conftest import FIELDS, StatementCounter, study_url


async def test_recent_activity_names_the_actor_the_study_and_the_file(
    client, alice, alice_headers, make_study
):
    study = await make_study(
        owner=alice, code="NAMES-1", title="Named things", sample_fields=FIELDS, status=StudyStatus.ACTIVE
    )
    uploaded = await upload(client, study, alice_headers, sample_csv(2), filename="week47.csv")
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]

    (newest, *_rest) = (await client.get(SUMMARY, headers=alice_headers)).json()["recent_activity"]

    assert newest["action"] == "sample_file_imported"
    assert newest["actor"] == {"id": str(alice.id), "email": alice.email, "full_name": alice.full_name}
    assert newest["study"] == {"id": str(study.id), "code": "NAMES-1", "title": "Named things"}
    assert newest["file"] == {"id": file_id, "filename": "week47.csv", "deleted": False}
    # The study's own log names the file too, and no study (it is the one asked for).
    (in_study, *_rest) = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()[
        "items"
    ]
    assert (in_study["file"], in_study["study"]) == (newest["file"], None)


async def test_a_deleted_file_is_still_named_and_said_to_be_gone(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    bad = b"sample_id,status,tissue\nS-1,received,bone\n"
    rejected = await upload(client, study, alice_headers, bad, filename="broken.csv")
    assert rejected.status_code == 422, rejected.text
    file_id = rejected.json()["sample_file_id"]
    deleted = await client.delete(f"/api/v1/sample-files/{file_id}", headers=alice_headers)
    assert deleted.status_code == 204, deleted.text

    log = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]

    assert [(entry["action"], entry["file"]) for entry in log[:2]] == [
        ("sample_file_deleted", {"id": file_id, "filename": "broken.csv", "deleted": True}),
        ("sample_file_rejected", {"id": file_id, "filename": "broken.csv", "deleted": True}),
    ]
    assert log[-1]["file"] is None  # study_created names no file


async def test_the_summary_names_everything_in_the_same_statements_whatever_the_entries(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    with StatementCounter() as few:
        assert (await client.get(SUMMARY, headers=alice_headers)).status_code == 200
    for number in range(3):
        response = await upload(
            client, study, alice_headers, sample_csv(1, start=number + 1), filename=f"{number}.csv"
        )
        assert response.status_code == 201, response.text
    with StatementCounter() as many:
        body = (await client.get(SUMMARY, headers=alice_headers)).json()

    assert len(many.statements) == len(few.statements)
    assert [entry["file"]["filename"] for entry in body["recent_activity"][:3]] == ["2.csv", "1.csv", "0.csv"]
