"""The activity log: one entry per change, newest first, with who did it and what changed."""

import pytest

from src.database import SessionFactory
from src.study import activity as study_activity
from src.study.constants import ActivityAction, StudyRole
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, STUDIES, StatementCounter, study_url


async def entries(client, study, headers, **params) -> list[dict]:
    response = await client.get(study_url(study, "activity"), params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_every_change_is_logged_newest_first_with_its_actor(
    client, alice, alice_headers, make_user, join_by_invitation
):
    grace = await make_user(email="grace@example.org")
    created = await client.post(
        STUDIES, json={"code": "LOG-1", "title": "Old", "sample_fields": FIELDS}, headers=alice_headers
    )
    study = created.json()["id"]
    await client.patch(study_url(study), json={"title": "New"}, headers=alice_headers)
    await join_by_invitation(study, alice, grace, "viewer")
    await client.patch(
        study_url(study, "members", str(grace.id)), json={"role": "editor"}, headers=alice_headers
    )
    await client.delete(study_url(study, "members", str(grace.id)), headers=alice_headers)
    await client.put(study_url(study, "sample-fields"), json=FIELDS[:1], headers=alice_headers)
    await client.post(study_url(study, "status"), json={"status": "active"}, headers=alice_headers)
    sample = (
        await client.post(
            study_url(study, "samples"),
            json={"sample_id": "S1", "values": {"tissue": "blood"}},
            headers=alice_headers,
        )
    ).json()
    await client.patch(
        study_url(study, "samples", sample["id"]),
        json={"values": {"tissue": "saliva"}},
        headers=alice_headers,
    )
    await client.delete(study_url(study, "samples", sample["id"]), headers=alice_headers)

    log = await entries(client, study, alice_headers, page_size=100)

    assert [entry["action"] for entry in log] == [
        "sample_deleted",
        "sample_updated",
        "sample_created",
        "status_changed",
        "sample_fields_changed",
        "member_removed",
        "member_changed",
        "invitation_accepted",
        "member_invited",
        "study_updated",
        "study_created",
    ]
    actors = {entry["action"]: entry["actor"]["email"] for entry in log}
    assert actors.pop("invitation_accepted") == "grace@example.org"
    assert set(actors.values()) == {"alice@example.org"}
    assert {entry["actor"]["id"] for entry in log if entry["action"] != "invitation_accepted"} == {
        str(alice.id)
    }
    details = {entry["action"]: entry["details"] for entry in log}
    assert details["study_updated"] == {"old": {"title": "Old"}, "new": {"title": "New"}}
    assert details["status_changed"] == {"old": "draft", "new": "active"}
    assert details["member_changed"] == {
        "user_id": str(grace.id),
        "email": grace.email,
        "old_role": "viewer",
        "new_role": "editor",
    }
    assert (details["member_invited"]["email"], details["member_invited"]["role"]) == (grace.email, "viewer")
    assert details["invitation_accepted"]["user_id"] == str(grace.id)
    assert details["sample_fields_changed"] == {"old": FIELDS, "new": FIELDS[:1]}
    assert details["sample_created"] == {
        "sample_id": "S1",
        "status": "registered",
        "values": {"tissue": "blood"},
    }
    assert details["sample_updated"] == {
        "sample_id": "S1",
        "old": {"values": {"tissue": "blood"}},
        "new": {"values": {"tissue": "saliva"}},
    }
    assert details["sample_deleted"]["values"] == {"tissue": "saliva"}


async def test_an_edit_logs_only_what_changed(client, alice, alice_headers, make_study, make_sample):
    study = await make_study(owner=alice, sample_fields=FIELDS)
    sample = await make_sample(study, values={"tissue": "blood", "age": 3, "volume": 2.0})

    await client.patch(
        study_url(study, "samples", str(sample.id)),
        json={"status": "stored", "values": {"age": 4, "volume": None, "tissue": "blood"}},
        headers=alice_headers,
    )

    latest = (await entries(client, study, alice_headers))[0]
    assert latest["details"]["old"] == {"status": "registered", "values": {"age": 3, "volume": 2.0}}
    assert latest["details"]["new"] == {"status": "stored", "values": {"age": 4, "volume": None}}


async def test_a_refused_change_logs_nothing(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    await client.post(study_url(study, "status"), json={"status": "archived"}, headers=alice_headers)
    await client.patch(study_url(study), json={"title": "x"}, headers={**alice_headers, "If-Match": '"5"'})

    assert [entry["action"] for entry in await entries(client, study, alice_headers)] == ["study_created"]


async def test_a_change_that_changes_nothing_logs_nothing(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, title="Same")

    await client.patch(study_url(study), json={"title": "Same"}, headers=alice_headers)

    assert len(await entries(client, study, alice_headers)) == 1


async def test_other_modules_record_activity_in_their_own_transaction(
    alice, make_study, client, alice_headers
):
    study = await make_study(owner=alice)
    async with SessionFactory() as session:
        study_activity.record_activity(
            session,
            study_id=study.id,
            actor=alice,
            action=ActivityAction.STUDY_UPDATED,
            details={"why": "rolled back"},
        )
        await session.rollback()
        study_activity.record_activity(
            session,
            study_id=study.id,
            actor=None,
            action=ActivityAction.STUDY_UPDATED,
            details={"why": "kept"},
        )
        await session.commit()

    log = await entries(client, study, alice_headers)

    assert [(entry["details"], entry["actor"]) for entry in log[:-1]] == [({"why": "kept"}, None)]


async def test_viewers_read_the_log_and_non_members_do_not(
    client, make_user, make_study, add_member, auth_headers
):
    study = await make_study()
    viewer = await make_user()
    await add_member(study, viewer, StudyRole.VIEWER)

    assert len(await entries(client, study, await auth_headers(viewer))) == 1
    response = await client.get(study_url(study, "activity"), headers=await auth_headers(await make_user()))
    assert_problem(response, 404, "STUDY_NOT_FOUND")


@pytest.mark.parametrize("page_size", [1, 2])
async def test_the_log_pages_and_costs_the_same_statements_whatever_the_page_size(
    client, alice, alice_headers, make_study, page_size
):
    study = await make_study(owner=alice)
    for title in ("one", "two", "three"):
        await client.patch(study_url(study), json={"title": title}, headers=alice_headers)

    with StatementCounter() as sql:
        response = await client.get(
            study_url(study, "activity"), params={"page_size": page_size}, headers=alice_headers
        )

    assert len(response.json()["items"]) == page_size
    assert (response.json()["total"], response.json()["total_is_exact"]) == (4, True)
    assert len(sql.statements) == 3  # caller with study and role, count, the page joined with the actors
    assert response.json()["items"][0]["details"]["new"] == {"title": "three"}
