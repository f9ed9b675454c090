"""Members and roles: list, add, change, remove, and the last-owner rule."""

import pytest

from src.study.constants import StudyRole
from tests.conftest import assert_problem
from tests.study.conftest import StatementCounter, study_url


def member_url(study, user) -> str:
    return study_url(study, "members", str(user.id))


async def test_list_members_shows_each_with_email_name_and_role(
    client, alice, alice_headers, make_study, make_user, add_member
):
    study = await make_study(owner=alice)
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")
    await add_member(study, grace, StudyRole.EDITOR)

    response = await client.get(study_url(study, "members"), headers=alice_headers)

    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["total_is_exact"]) == (2, True)
    assert [(m["email"], m["role"]) for m in body["items"]] == [
        ("alice@example.org", "owner"),
        ("grace@example.org", "editor"),
    ]
    assert body["items"][1]["full_name"] == "Grace Hopper"
    assert body["items"][1]["user_id"] == str(grace.id)


async def test_a_member_who_joined_by_invitation_can_be_read_by_any_member(
    client, alice, make_study, make_user, add_member, auth_headers, join_by_invitation
):
    study = await make_study(owner=alice)
    viewer = await make_user(email="viewer@example.org")
    await add_member(study, viewer, StudyRole.VIEWER)
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")
    await join_by_invitation(study, alice, grace, "editor")

    response = await client.get(member_url(study, grace), headers=await auth_headers(viewer))

    assert response.status_code == 200
    assert {key: response.json()[key] for key in ("user_id", "email", "full_name", "role")} == {
        "user_id": str(grace.id),
        "email": "grace@example.org",
        "full_name": "Grace Hopper",
        "role": "editor",
    }


async def test_reading_a_user_who_is_not_a_member_is_404(client, alice, alice_headers, make_study, make_user):
    study = await make_study(owner=alice)
    stranger = await make_user(email="stranger@example.org")

    response = await client.get(member_url(study, stranger), headers=alice_headers)

    assert_problem(response, 404, "MEMBER_NOT_FOUND")


async def test_list_members_costs_the_same_statements_whatever_the_page_size(
    client, alice, alice_headers, make_study, make_user, add_member
):
    study = await make_study(owner=alice)
    for _ in range(4):
        await add_member(study, await make_user(), StudyRole.VIEWER)

    with StatementCounter() as small:
        await client.get(study_url(study, "members"), params={"page_size": 1}, headers=alice_headers)
    with StatementCounter() as large:
        await client.get(study_url(study, "members"), params={"page_size": 50}, headers=alice_headers)

    assert len(small.statements) == len(large.statements) == 3  # caller with study and role, count, page


async def test_a_member_who_joined_reads_the_study_with_their_role(
    client, alice, make_study, make_user, auth_headers, join_by_invitation
):
    study = await make_study(owner=alice)
    grace = await make_user()
    await join_by_invitation(study, alice, grace, "viewer")

    response = await client.get(study_url(study), headers=await auth_headers(grace))

    assert response.json()["my_role"] == "viewer"


@pytest.mark.parametrize(
    "body",
    [
        {"role": "viewer"},
        {"email": "a@example.org"},
        {"user_id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90", "role": "viewer"},
        {"email": "a@example.org", "user_id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90", "role": "viewer"},
        {"email": "a@example.org", "role": "boss"},
        {"email": "not an address", "role": "viewer"},
    ],
)
async def test_an_invitation_needs_one_address_and_a_role(client, alice, alice_headers, make_study, body):
    study = await make_study(owner=alice)

    assert_problem(
        await client.post(study_url(study, "members"), json=body, headers=alice_headers),
        422,
        "VALIDATION_ERROR",
    )


async def test_inviting_a_member_is_409_whatever_the_spelling_of_the_address(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice)

    response = await client.post(
        study_url(study, "members"),
        json={"email": " ALICE@example.org", "role": "viewer"},
        headers=alice_headers,
    )

    assert_problem(response, 409, "ALREADY_A_MEMBER")


async def test_change_member_role(client, alice, alice_headers, make_study, make_user, add_member):
    study = await make_study(owner=alice)
    grace = await make_user()
    await add_member(study, grace, StudyRole.VIEWER)

    response = await client.patch(member_url(study, grace), json={"role": "owner"}, headers=alice_headers)

    assert response.status_code == 200
    assert response.json()["role"] == "owner"


async def test_change_role_of_a_non_member_is_404(client, alice, alice_headers, make_study, make_user):
    study = await make_study(owner=alice)
    stranger = await make_user()

    response = await client.patch(member_url(study, stranger), json={"role": "owner"}, headers=alice_headers)

    assert_problem(response, 404, "MEMBER_NOT_FOUND")


async def test_the_last_owner_cannot_be_demoted_or_removed(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    demoted = await client.patch(member_url(study, alice), json={"role": "editor"}, headers=alice_headers)
    removed = await client.delete(member_url(study, alice), headers=alice_headers)

    assert_problem(demoted, 409, "LAST_OWNER")
    assert_problem(removed, 409, "LAST_OWNER")
    assert (await client.get(study_url(study), headers=alice_headers)).json()["my_role"] == "owner"


async def test_an_owner_may_step_down_when_another_owner_remains(
    client, alice, alice_headers, make_study, make_user, add_member
):
    study = await make_study(owner=alice)
    await add_member(study, await make_user(), StudyRole.OWNER)

    response = await client.patch(member_url(study, alice), json={"role": "viewer"}, headers=alice_headers)

    assert response.json()["role"] == "viewer"
    assert_problem(
        await client.patch(member_url(study, alice), json={"role": "owner"}, headers=alice_headers),
        403,
        "STUDY_ROLE_REQUIRED",
    )


async def test_an_admin_who_is_not_a_member_counts_as_no_owner(
    client, alice, admin, auth_headers, make_study
):
    study = await make_study(owner=alice)

    response = await client.delete(member_url(study, alice), headers=await auth_headers(admin))

    assert_problem(response, 409, "LAST_OWNER")


async def test_remove_member_ends_their_access(
    client, alice, alice_headers, make_study, make_user, add_member, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    await add_member(study, grace, StudyRole.EDITOR)

    response = await client.delete(member_url(study, grace), headers=alice_headers)

    assert response.status_code == 204
    assert_problem(
        await client.get(study_url(study), headers=await auth_headers(grace)), 404, "STUDY_NOT_FOUND"
    )
    assert_problem(
        await client.delete(member_url(study, grace), headers=alice_headers), 404, "MEMBER_NOT_FOUND"
    )


async def test_change_to_the_same_role_changes_nothing(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.patch(member_url(study, alice), json={"role": "owner"}, headers=alice_headers)

    assert response.json()["role"] == "owner"
    assert len((await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]) == 1
