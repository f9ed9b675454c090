"""The dashboard's figures, checked against data made through the API and against the study and
sample routes; scoping, the empty state, ETag/304, the days bounds and the fixed query count."""

from datetime import timedelta

import pytest

from src.dashboard.schemas import DashboardSummary, StudyDashboard
from src.database import utcnow
from src.study import samples as study_samples
from src.study.constants import StudyRole, StudyStatus
from tests.conftest import assert_problem
from tests.dashboard.conftest import SUMMARY, study_dashboard_url
from tests.sampleFileUpload.conftest import HEADER, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
from tests.study.conftest import FIELDS, StatementCounter, study_url

ZERO_SAMPLES = {"registered": 0, "received": 0, "stored": 0, "consumed": 0, "discarded": 0}


async def post_sample(client, study, headers, sample_id, *, status="registered", **values):
    response = await client.post(
        study_url(study, "samples"),
        json={"sample_id": sample_id, "status": status, "values": {"tissue": "blood", **values}},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, code="DASH-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def test_a_new_user_sees_zeros(client, alice_headers):
    response = await client.get(SUMMARY, headers=alice_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["studies"] == {
        "total": 0,
        "by_status": {"draft": 0, "active": 0, "locked": 0, "archived": 0},
    }
    assert body["samples"] == {"total": 0, "by_status": ZERO_SAMPLES}
    assert body["sample_files"] == {"total": 0, "imported": 0, "rejected": 0, "total_bytes": 0}
    assert len(body["samples_created"]) == 30
    assert {day["count"] for day in body["samples_created"]} == {0}
    assert body["samples_created"][-1]["date"] == utcnow().date().isoformat()
    assert body["recent_activity"] == []
    assert body["top_studies"] == []
    assert "users" not in body
    assert response.headers["Cache-Control"] == "no-store"


async def test_summary_figures_agree_with_the_study_and_sample_routes(
    client, study, alice, alice_headers, make_study
):
    draft = await make_study(owner=alice, code="DASH-2")
    await post_sample(client, study, alice_headers, "A-1")
    await post_sample(client, study, alice_headers, "A-2", status="stored")
    content = sample_csv(3)
    assert (await upload(client, study, alice_headers, content)).status_code == 201
    bad = csv_bytes([HEADER, ["S-000009", "received", "bone", "", "", "", ""]])
    assert (await upload(client, study, alice_headers, bad)).status_code == 422

    body = (await client.get(SUMMARY, headers=alice_headers)).json()

    listed = (await client.get(study_url(study, "samples"), headers=alice_headers)).json()
    assert body["samples"]["total"] == listed["total"] == 5
    for status, count in body["samples"]["by_status"].items():
        filtered = await client.get(
            study_url(study, "samples"), params={"status": status}, headers=alice_headers
        )
        assert filtered.json()["total"] == count
    assert body["samples"]["by_status"] == {**ZERO_SAMPLES, "registered": 1, "stored": 1, "received": 3}
    assert body["studies"] == {"total": 2, "by_status": {"draft": 1, "active": 1, "locked": 0, "archived": 0}}
    files = (await client.get(study_url(study, "sample-files"), headers=alice_headers)).json()
    assert body["sample_files"]["total"] == files["total"] == 2
    assert body["sample_files"]["imported"] == 1
    assert body["sample_files"]["rejected"] == 1
    assert body["sample_files"]["total_bytes"] == sum(item["size_bytes"] for item in files["items"])
    assert body["samples_created"][-1]["count"] == 5
    assert sum(day["count"] for day in body["samples_created"]) == 5
    activity = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]
    draft_activity = (await client.get(study_url(draft, "activity"), headers=alice_headers)).json()["items"]
    newest = sorted(activity + draft_activity, key=lambda entry: entry["at"], reverse=True)
    assert [entry["id"] for entry in body["recent_activity"]] == [entry["id"] for entry in newest][:20]
    assert body["top_studies"] == [
        {"id": str(study.id), "code": "DASH-1", "title": study.title, "sample_count": 5},
        {"id": str(draft.id), "code": "DASH-2", "title": draft.title, "sample_count": 0},
    ]


async def test_samples_created_counts_per_utc_day_within_the_window(
    client, study, alice_headers, monkeypatch
):
    now = utcnow()
    for days_ago, sample_id in ((40, "OLD-1"), (2, "E-1")):
        monkeypatch.setattr(study_samples, "utcnow", lambda days_ago=days_ago: now - timedelta(days=days_ago))
        await post_sample(client, study, alice_headers, sample_id)
    monkeypatch.undo()
    await post_sample(client, study, alice_headers, "N-1")

    month = (await client.get(SUMMARY, headers=alice_headers)).json()["samples_created"]
    week = (await client.get(SUMMARY, params={"days": 7}, headers=alice_headers)).json()["samples_created"]
    year = (await client.get(SUMMARY, params={"days": 365}, headers=alice_headers)).json()["samples_created"]

    assert [day["count"] for day in month[-3:]] == [1, 0, 1]
    assert sum(day["count"] for day in month) == 2
    assert len(week) == 7
    assert sum(day["count"] for day in week) == 2
    assert len(year) == 365
    assert sum(day["count"] for day in year) == 3
    assert year[-41]["count"] == 1
    weeks = (await client.get(study_dashboard_url(study), params={"days": 365}, headers=alice_headers)).json()
    assert sum(week["count"] for week in weeks["samples_created"]) == 3

    old = (await client.get(study_url(study, "samples"), params={"q": "OLD-1"}, headers=alice_headers)).json()
    await client.delete(study_url(study, "samples", old["items"][0]["id"]), headers=alice_headers)
    year = (await client.get(SUMMARY, params={"days": 365}, headers=alice_headers)).json()["samples_created"]
    assert year[-41]["count"] == 0


@pytest.mark.parametrize("days", [0, 366, -1])
async def test_days_out_of_bounds_is_422(client, study, alice_headers, days):
    assert_problem(
        await client.get(SUMMARY, params={"days": days}, headers=alice_headers), 422, "VALIDATION_ERROR"
    )
    assert_problem(
        await client.get(study_dashboard_url(study), params={"days": days}, headers=alice_headers),
        422,
        "VALIDATION_ERROR",
    )


async def test_a_user_never_sees_figures_of_studies_they_are_not_in(
    client, study, alice, alice_headers, make_user, make_study, auth_headers, add_member
):
    bob = await make_user(email="bob@example.org")
    bob_headers = await auth_headers(bob)
    bobs = await make_study(owner=bob, code="BOB-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    await post_sample(client, bobs, bob_headers, "B-1")
    assert (await upload(client, bobs, bob_headers, sample_csv(2))).status_code == 201
    await post_sample(client, study, alice_headers, "A-1")

    alices = (await client.get(SUMMARY, headers=alice_headers)).json()
    assert alices["samples"]["total"] == 1
    assert alices["studies"]["total"] == 1
    assert alices["sample_files"]["total"] == 0
    assert sum(day["count"] for day in alices["samples_created"]) == 1
    assert {entry["details"].get("code") for entry in alices["recent_activity"]} <= {"DASH-1", None}
    assert [top["code"] for top in alices["top_studies"]] == ["DASH-1"]
    assert_problem(await client.get(study_dashboard_url(bobs), headers=alice_headers), 404, "STUDY_NOT_FOUND")

    # A viewer of Bob's study sees it too.
    await add_member(bobs, alice, StudyRole.VIEWER)
    shared = (await client.get(SUMMARY, headers=alice_headers)).json()
    assert shared["samples"]["total"] == 4
    assert (await client.get(study_dashboard_url(bobs), headers=alice_headers)).status_code == 200


async def test_a_removed_member_no_longer_sees_the_studys_figures(
    client, study, alice_headers, make_user, auth_headers, add_member
):
    bob = await make_user(email="bob@example.org")
    bob_headers = await auth_headers(bob)
    await add_member(study, bob, StudyRole.EDITOR)
    await post_sample(client, study, bob_headers, "B-1")
    seen = await client.get(SUMMARY, headers=bob_headers)
    assert seen.json()["samples"]["total"] == 1

    removed = await client.delete(study_url(study, "members", str(bob.id)), headers=alice_headers)
    assert removed.status_code == 204, removed.text

    after = await client.get(SUMMARY, headers={**bob_headers, "If-None-Match": seen.headers["ETag"]})
    assert after.status_code == 200
    body = after.json()
    assert (body["studies"]["total"], body["samples"]["total"]) == (0, 0)
    assert sum(day["count"] for day in body["samples_created"]) == 0
    assert (body["recent_activity"], body["top_studies"]) == ([], [])
    assert_problem(await client.get(study_dashboard_url(study), headers=bob_headers), 404, "STUDY_NOT_FOUND")


async def test_admins_see_every_study_and_user_figures(
    client, study, alice_headers, admin, auth_headers, make_user
):
    await make_user(email="gone@example.org", is_active=False)
    await post_sample(client, study, alice_headers, "A-1")
    admin_headers = await auth_headers(admin)

    body = (await client.get(SUMMARY, headers=admin_headers)).json()

    assert body["samples"]["total"] == 1
    assert body["studies"]["total"] == 1
    assert body["users"] == {
        "total": 3,
        "active": 2,
        "by_role": {"admin": 1, "researcher": 2, "viewer": 0},
    }


async def test_an_unchanged_summary_answers_304_and_a_change_a_new_tag(client, study, alice_headers):
    first = await client.get(SUMMARY, headers=alice_headers)
    tag = first.headers["ETag"]

    again = await client.get(SUMMARY, headers={**alice_headers, "If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == tag
    weak = await client.get(SUMMARY, headers={**alice_headers, "If-None-Match": f'"other", W/{tag}'})
    assert weak.status_code == 304
    other_window = await client.get(
        SUMMARY, params={"days": 7}, headers={**alice_headers, "If-None-Match": tag}
    )
    assert other_window.status_code == 200

    await post_sample(client, study, alice_headers, "A-1")
    changed = await client.get(SUMMARY, headers={**alice_headers, "If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag


async def test_a_change_by_another_member_in_another_study_changes_the_summary_tag(
    client, study, alice, alice_headers, make_user, make_study, auth_headers, add_member
):
    """The page's studies table follows the summary's tag: a renamed study (no count moves) must
    change it too, whoever renamed it."""
    bob = await make_user(email="bob@example.org")
    bob_headers = await auth_headers(bob)
    bobs = await make_study(owner=bob, code="BOB-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    await add_member(bobs, alice, StudyRole.VIEWER)
    tag = (await client.get(SUMMARY, headers=alice_headers)).headers["ETag"]

    renamed = await client.patch(study_url(bobs), json={"title": "Renamed by Bob"}, headers=bob_headers)
    assert renamed.status_code == 200, renamed.text

    after = await client.get(SUMMARY, headers={**alice_headers, "If-None-Match": tag})
    assert after.status_code == 200
    assert after.headers["ETag"] != tag


async def test_an_unchanged_study_answers_304(client, study, alice_headers):
    url = study_dashboard_url(study)
    tag = (await client.get(url, headers=alice_headers)).headers["ETag"]
    assert (await client.get(url, headers={**alice_headers, "If-None-Match": tag})).status_code == 304
    await post_sample(client, study, alice_headers, "A-1")
    assert (await client.get(url, headers={**alice_headers, "If-None-Match": tag})).status_code == 200


async def test_study_figures_agree_with_its_samples_and_files(client, study, alice_headers):
    await post_sample(client, study, alice_headers, "A-1", volume=2.5)
    await post_sample(client, study, alice_headers, "A-2", status="stored", tissue="saliva")
    assert (await upload(client, study, alice_headers, sample_csv(3))).status_code == 201
    bad = csv_bytes([HEADER, ["S-000009", "received", "bone", "", "", "", ""]])
    assert (await upload(client, study, alice_headers, bad)).status_code == 422

    body = (await client.get(study_dashboard_url(study), headers=alice_headers)).json()

    assert body["samples"] == {
        "total": 5,
        "by_status": {**ZERO_SAMPLES, "registered": 1, "stored": 1, "received": 3},
    }
    weeks = body["samples_created"]
    assert len(weeks) in (12, 13)  # 84 days from a Monday or not
    assert weeks[-1]["count"] == 5
    assert sum(week["count"] for week in weeks) == 5
    files = (await client.get(study_url(study, "sample-files"), headers=alice_headers)).json()["items"]
    assert body["uploads"]["imported"] == 1
    assert body["uploads"]["rejected"] == 1
    assert [upload["id"] for upload in body["uploads"]["recent"]] == [item["id"] for item in files]
    imported = next(item for item in body["uploads"]["recent"] if item["status"] == "imported")
    assert (imported["rows"], imported["created"], imported["rejected"]) == (3, 3, 0)
    assert body["choices"] == [{"field": "tissue", "counts": {"blood": 4, "saliva": 1, "tumour": 0}}]
    completeness = {entry["field"]: (entry["filled"], entry["share"]) for entry in body["completeness"]}
    assert [entry["field"] for entry in body["completeness"]] == [field["name"] for field in FIELDS]
    assert completeness["tissue"] == (5, 1.0)
    assert completeness["volume"] == (4, 0.8)  # A-1 and the three imported rows
    assert completeness["label"] == (0, 0.0)
    for choice, count in body["choices"][0]["counts"].items():
        listed = await client.get(
            study_url(study, "samples"), params={"field.tissue": choice}, headers=alice_headers
        )
        assert listed.json()["total"] == count


async def test_an_empty_study_has_zeros(client, study, alice_headers):
    body = (await client.get(study_dashboard_url(study), params={"days": 1}, headers=alice_headers)).json()
    assert body["samples"] == {"total": 0, "by_status": ZERO_SAMPLES}
    assert body["samples_created"] == [{"week_start": body["samples_created"][0]["week_start"], "count": 0}]
    assert body["uploads"] == {"imported": 0, "rejected": 0, "recent": []}
    assert body["choices"] == [{"field": "tissue", "counts": {"blood": 0, "saliva": 0, "tumour": 0}}]
    assert {entry["share"] for entry in body["completeness"]} == {0.0}


async def test_the_summary_query_count_does_not_grow_with_studies(
    client, alice, alice_headers, make_study, admin, auth_headers
):
    await make_study(owner=alice, code="ONE-1")
    with StatementCounter() as one:
        assert (await client.get(SUMMARY, headers=alice_headers)).status_code == 200
    for number in range(6):
        await make_study(owner=alice, code=f"MANY-{number}")
    with StatementCounter() as many:
        assert (await client.get(SUMMARY, headers=alice_headers)).status_code == 200
    assert len(many.statements) == len(one.statements)
    admin_headers = await auth_headers(admin)
    with StatementCounter() as as_admin:
        assert (await client.get(SUMMARY, headers=admin_headers)).status_code == 200
    assert len(as_admin.statements) == len(one.statements)  # the user figures ride in the counts query


async def test_the_study_query_count_does_not_grow_with_fields(client, alice, alice_headers, make_study):
    few = await make_study(owner=alice, code="FEW-1", sample_fields=FIELDS[:1])
    more = await make_study(owner=alice, code="MORE-1", sample_fields=FIELDS)
    with StatementCounter() as one_field:
        assert (await client.get(study_dashboard_url(few), headers=alice_headers)).status_code == 200
    with StatementCounter() as seven_fields:
        assert (await client.get(study_dashboard_url(more), headers=alice_headers)).status_code == 200
    assert len(seven_fields.statements) == len(one_field.statements)


async def test_the_dashboard_needs_a_token(client, study):
    assert (await client.get(SUMMARY)).status_code == 401
    assert (await client.get(study_dashboard_url(study))).status_code == 401


@pytest.mark.parametrize("model", [DashboardSummary, StudyDashboard])
async def test_the_openapi_document_shows_a_valid_example_of_each_answer(client, model):
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"][model.__name__]

    example = schema["example"]
    assert set(example) == set(model.model_fields)
    model.model_validate(example)
