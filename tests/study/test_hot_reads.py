"""The hot reads: how many statements each sends (a regression here is a round trip more on every
request), and that reading the caller together with the study keeps authorization exact."""

import pytest

from src.auth.constants import Role
from src.database import SessionFactory
from src.study.constants import StudyRole, StudyStatus
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, STUDIES, StatementCounter, study_url
from tests.study.test_authorization import NEEDS, route_request

CALLER_READ = "JOIN auth_sessions ON auth_sessions.user_id = users.id"


@pytest.fixture
async def study(alice, make_study, make_sample):
    study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    for tissue in ("blood", "saliva", "blood"):
        await make_sample(study, values={"tissue": tissue})
    return study


@pytest.mark.parametrize(
    ("path", "statements"),
    [
        ("/api/v1/auth/me", 1),  # the caller
        ("{study}", 1),  # the caller with the study and their role in it
        ("{study}/samples", 2),  # caller and study; the page with its capped count
        ("{study}/samples?field.tissue=blood", 2),  # the page brings the choice's counter along
        (f"{STUDIES}?page_size=20", 2),  # the caller; the page with its capped count
        ("/api/v1/dashboard/studies/{study_id}", 3),  # caller and study; the figures; the uploads
    ],
)
async def test_a_hot_read_sends_no_more_statements_than_it_needs(
    client, alice_headers, study, path, statements
):
    url = path.format(study=study_url(study), study_id=study.id)
    with StatementCounter() as sql:
        response = await client.get(url, headers=alice_headers)

    assert response.status_code == 200, response.text
    assert len(sql.statements) == statements, sql.statements
    assert sum(CALLER_READ in statement for statement in sql.statements) == 1


@pytest.mark.parametrize("kind", list(NEEDS))
async def test_every_study_route_reads_the_caller_once(
    client, alice, make_user, make_sample, add_member, auth_headers, study, kind
):
    """Whichever dependency reads the caller first (the study's, or one that needs only the caller),
    the others of the same request take it from there."""
    sample = await make_sample(study, values={"tissue": "blood"})
    member = await make_user()
    await add_member(study, member, StudyRole.VIEWER)
    method, url, body, success = await route_request(kind, study, sample, member)
    headers = {**await auth_headers(alice), "Idempotency-Key": f"key-{kind}"}

    with StatementCounter() as sql:
        response = await client.request(method, url, json=body, headers=headers)

    assert response.status_code == success, response.text
    assert sum(CALLER_READ in statement for statement in sql.statements) == 1


async def test_a_signed_out_session_is_refused_by_the_next_read_of_a_study(client, alice, login, study):
    tokens = await login(alice)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get(study_url(study), headers=headers)).status_code == 200

    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204

    assert_problem(await client.get(study_url(study), headers=headers), 401, "SESSION_REVOKED")
    assert_problem(await client.get(study_url(study, "samples"), headers=headers), 401, "SESSION_REVOKED")


async def test_a_deactivated_member_is_refused_by_the_next_read_of_a_study(
    client, alice, alice_headers, study
):
    assert (await client.get(study_url(study), headers=alice_headers)).status_code == 200
    async with SessionFactory() as session:
        (await session.get(type(alice), alice.id)).is_active = False
        await session.commit()

    assert_problem(await client.get(study_url(study), headers=alice_headers), 401, "SESSION_REVOKED")


async def test_a_removed_member_no_longer_sees_the_study_on_the_next_read(
    client, alice_headers, make_user, add_member, auth_headers, study
):
    bob = await make_user()
    await add_member(study, bob, StudyRole.EDITOR)
    bob_headers = await auth_headers(bob)
    assert (await client.get(study_url(study), headers=bob_headers)).status_code == 200

    removed = await client.delete(study_url(study, "members", str(bob.id)), headers=alice_headers)

    assert removed.status_code == 204, removed.text
    assert_problem(await client.get(study_url(study), headers=bob_headers), 404, "STUDY_NOT_FOUND")
    assert_problem(await client.get(study_url(study, "samples"), headers=bob_headers), 404, "STUDY_NOT_FOUND")


async def test_a_missing_study_and_an_administrator_read_with_the_caller(
    client, make_user, auth_headers, study
):
    """The study's outer join: no study is 404 for a live caller, and an administrator who is no
    member reads it as owner, both in the one statement."""
    admin_headers = await auth_headers(await make_user(role=Role.ADMIN))
    stranger_headers = await auth_headers(await make_user())

    with StatementCounter() as sql:
        as_admin = await client.get(study_url(study), headers=admin_headers)
    missing = await client.get(f"{STUDIES}/00000000-0000-4000-8000-000000000000", headers=admin_headers)

    assert (as_admin.status_code, as_admin.json()["my_role"], len(sql.statements)) == (200, "owner", 1)
    assert as_admin.headers["ETag"] == f'"{study.version}"'
    assert_problem(missing, 404, "STUDY_NOT_FOUND")
    assert_problem(await client.get(study_url(study), headers=stranger_headers), 404, "STUDY_NOT_FOUND")
