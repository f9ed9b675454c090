"""Who may do what in a study: owner, editor, viewer, a non-member and an admin, on every route."""

import uuid

import pytest

from src.study.constants import StudyRole, StudyStatus
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, STUDIES, study_url

ROLES = ("owner", "editor", "viewer", "non-member", "admin")
RANK = {"viewer": 1, "editor": 2, "owner": 3, "admin": 3, "non-member": 0}


async def route_request(kind: str, study, sample, member) -> tuple[str, str, dict | list | None, int]:
    """(method, url, body, status on success) of one route, aimed at the given study."""
    samples = study_url(study, "samples")
    one_sample = study_url(study, "samples", str(sample.id))
    one_member = study_url(study, "members", str(member.id))
    return {
        "read_study": ("GET", study_url(study), None, 200),
        "update_study": ("PATCH", study_url(study), {"title": "Renamed"}, 200),
        "delete_study": ("DELETE", study_url(study), None, 409),  # has a sample: allowed, but refused
        "change_status": ("POST", study_url(study, "status"), {"status": "locked"}, 200),
        "replace_fields": ("PUT", study_url(study, "sample-fields"), FIELDS, 200),
        "list_members": ("GET", study_url(study, "members"), None, 200),
        "invite_member": (
            "POST",
            study_url(study, "members"),
            {"email": "new@example.org", "role": "viewer"},
            202,
        ),
        "list_invitations": ("GET", study_url(study, "invitations"), None, 200),
        "change_member": ("PATCH", one_member, {"role": "editor"}, 200),
        "remove_member": ("DELETE", one_member, None, 204),
        "list_samples": ("GET", samples, None, 200),
        "create_sample": ("POST", samples, {"sample_id": "NEW-1", "values": {"tissue": "blood"}}, 201),
        "read_sample": ("GET", one_sample, None, 200),
        "update_sample": ("PATCH", one_sample, {"status": "stored"}, 200),
        "delete_sample": ("DELETE", one_sample, None, 204),
        "activity": ("GET", study_url(study, "activity"), None, 200),
    }[kind]


# The least role each route needs.
NEEDS = {
    "read_study": "viewer",
    "list_members": "viewer",
    "list_samples": "viewer",
    "read_sample": "viewer",
    "activity": "viewer",
    "update_study": "editor",
    "replace_fields": "editor",
    "create_sample": "editor",
    "update_sample": "editor",
    "delete_sample": "editor",
    "delete_study": "owner",
    "change_status": "owner",
    "invite_member": "owner",
    "list_invitations": "owner",
    "change_member": "owner",
    "remove_member": "owner",
}


@pytest.mark.parametrize("kind", list(NEEDS))
@pytest.mark.parametrize("role", ROLES)
async def test_each_route_answers_each_role(
    client, make_user, make_study, make_sample, add_member, auth_headers, role, kind
):
    owner = await make_user()
    study = await make_study(owner=owner, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    sample = await make_sample(study, values={"tissue": "blood"})
    member = await make_user()
    await add_member(study, member, StudyRole.VIEWER)
    caller = {"owner": owner, "admin": await make_user(role="admin")}.get(role) or await make_user()
    if role in ("editor", "viewer"):
        await add_member(study, caller, StudyRole(role))
    method, url, body, success = await route_request(kind, study, sample, member)

    response = await client.request(method, url, json=body, headers=await auth_headers(caller))

    if role == "non-member":
        assert_problem(response, 404, "STUDY_NOT_FOUND")
    elif RANK[role] < RANK[NEEDS[kind]]:
        assert_problem(response, 403, "STUDY_ROLE_REQUIRED")
    else:
        assert response.status_code == success, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/members"),
        ("GET", "/samples"),
        ("GET", "/activity"),
        ("GET", f"/samples/{uuid.uuid4()}"),
    ],
)
async def test_a_study_that_does_not_exist_looks_like_one_you_cannot_see(
    client, alice_headers, make_study, method, path
):
    hidden = await make_study()
    missing = await client.request(method, f"{STUDIES}/{uuid.uuid4()}{path}", json={}, headers=alice_headers)
    not_mine = await client.request(method, f"{study_url(hidden)}{path}", json={}, headers=alice_headers)

    assert (
        assert_problem(missing, 404, "STUDY_NOT_FOUND")["detail"]
        == (assert_problem(not_mine, 404, "STUDY_NOT_FOUND")["detail"])
    )


async def test_study_routes_need_a_token(client, make_study):
    study = await make_study()

    assert_problem(await client.get(study_url(study)), 401, "NOT_AUTHENTICATED")
    assert_problem(await client.get(STUDIES), 401, "NOT_AUTHENTICATED")


async def test_a_viewer_cannot_write_even_in_a_read_only_study_it_is_403_first(
    client, make_user, make_study, add_member, auth_headers
):
    viewer = await make_user()
    study = await make_study(status=StudyStatus.LOCKED)
    await add_member(study, viewer, StudyRole.VIEWER)

    response = await client.patch(study_url(study), json={"title": "x"}, headers=await auth_headers(viewer))

    assert_problem(response, 403, "STUDY_ROLE_REQUIRED")
