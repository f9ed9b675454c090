"""The dashboard's time windows (UTC days, whole weeks) and its bounded lists (the newest 20
activity entries, the 5 studies with most samples, the last 10 uploads), each past its bound and
scoped to the caller's studies."""

from datetime import UTC, datetime, time, timedelta

import pytest

from src.dashboard.utils import monday_of
from src.database import utcnow
from src.study import samples as study_samples
from src.study.constants import StudyStatus
from tests.dashboard.conftest import SUMMARY, study_dashboard_url
from tests.dashboard.test_dashboard import post_sample
from tests.sampleFileUpload.conftest import HEADER, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
from tests.study.conftest import FIELDS, study_url


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, code="WIN-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def post_sample_at(client, study, headers, sample_id, at: datetime, monkeypatch) -> None:
    monkeypatch.setattr(study_samples, "utcnow", lambda: at)
    await post_sample(client, study, headers, sample_id)
    monkeypatch.undo()


async def test_days_are_utc_days(client, study, alice_headers, monkeypatch):
    midnight = datetime.combine(utcnow().date(), time(), tzinfo=UTC)
    await post_sample_at(
        client, study, alice_headers, "LATE-1", midnight - timedelta(microseconds=1), monkeypatch
    )
    await post_sample_at(client, study, alice_headers, "EARLY-1", midnight, monkeypatch)
    await post_sample_at(
        client, study, alice_headers, "EARLY-2", midnight + timedelta(minutes=1), monkeypatch
    )

    series = (await client.get(SUMMARY, headers=alice_headers)).json()["samples_created"]

    assert series[-1] == {"date": midnight.date().isoformat(), "count": 2}
    assert series[-2] == {"date": (midnight.date() - timedelta(days=1)).isoformat(), "count": 1}
    dates = [datetime.fromisoformat(day["date"]).date() for day in series]
    assert dates == [midnight.date() - timedelta(days=29 - offset) for offset in range(30)]


async def test_a_study_series_is_whole_weeks_ending_with_this_one(client, study, alice_headers, monkeypatch):
    now = utcnow()
    this_monday = monday_of(now.date())
    at_monday = datetime.combine(this_monday, time(12), tzinfo=UTC)
    await post_sample_at(client, study, alice_headers, "W-0", now, monkeypatch)
    await post_sample_at(client, study, alice_headers, "W-1", at_monday - timedelta(days=1), monkeypatch)
    await post_sample_at(client, study, alice_headers, "W-11", at_monday - timedelta(weeks=11), monkeypatch)
    await post_sample_at(client, study, alice_headers, "W-12", at_monday - timedelta(weeks=12), monkeypatch)

    weeks = (await client.get(study_dashboard_url(study), headers=alice_headers)).json()["samples_created"]
    one_week = (
        await client.get(study_dashboard_url(study), params={"days": 7}, headers=alice_headers)
    ).json()
    eight_days = (
        await client.get(study_dashboard_url(study), params={"days": 8}, headers=alice_headers)
    ).json()

    assert [week["week_start"] for week in weeks] == [
        (this_monday - timedelta(weeks=11 - offset)).isoformat() for offset in range(12)
    ]
    assert [week["count"] for week in weeks] == [1] + [0] * 9 + [1, 1]  # W-12 is before the 12 weeks
    assert one_week["samples_created"] == [{"week_start": this_monday.isoformat(), "count": 1}]
    assert [week["count"] for week in eight_days["samples_created"]] == [1, 1]


async def test_recent_activity_is_the_newest_20_across_the_callers_studies_only(
    client, study, alice, alice_headers, make_study, make_user, auth_headers
):
    other = await make_study(owner=alice, code="WIN-2", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    bob = await make_user(email="bob@example.org")
    bob_headers = await auth_headers(bob)
    bobs = await make_study(owner=bob, code="BOB-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    for number in range(14):
        await post_sample(client, study, alice_headers, f"A-{number}")
        await post_sample(client, other, alice_headers, f"O-{number}")
    for number in range(5):  # the newest entries of all, in a study Alice is not in
        await post_sample(client, bobs, bob_headers, f"B-{number}")

    body = (await client.get(SUMMARY, headers=alice_headers)).json()

    entries = []
    for each in (study, other):
        entries += (await client.get(study_url(each, "activity"), headers=alice_headers)).json()["items"]
    newest = sorted(entries, key=lambda entry: (entry["at"], entry["id"]), reverse=True)[:20]
    assert [entry["id"] for entry in body["recent_activity"]] == [entry["id"] for entry in newest]
    assert {entry["details"]["sample_id"][0] for entry in body["recent_activity"]} == {"A", "O"}


async def test_top_studies_are_the_5_with_most_samples_of_the_callers(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    studies = [
        await make_study(owner=alice, code=f"TOP-{number}", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
        for number in range(7)
    ]
    for study, count in zip(studies, (0, 3, 1, 2, 2, 4, 1), strict=True):
        for number in range(count):
            await post_sample(client, study, alice_headers, f"S-{number}")
    bob = await make_user(email="bob@example.org")
    bobs = await make_study(owner=bob, code="BOB-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    for number in range(9):
        await post_sample(client, bobs, await auth_headers(bob), f"B-{number}")

    top = (await client.get(SUMMARY, headers=alice_headers)).json()["top_studies"]

    # Most samples first; a tie in code order.
    assert [(entry["code"], entry["sample_count"]) for entry in top] == [
        ("TOP-5", 4),
        ("TOP-1", 3),
        ("TOP-3", 2),
        ("TOP-4", 2),
        ("TOP-2", 1),
    ]
    for entry in top:
        listed = await client.get(study_url(entry["id"], "samples"), headers=alice_headers)
        assert listed.json()["total"] == entry["sample_count"]


async def test_uploads_are_counted_and_the_last_10_listed_with_their_counts(client, study, alice_headers):
    for number in range(8):
        assert (
            await upload(client, study, alice_headers, sample_csv(2, start=10 * number + 1))
        ).status_code == 201
    bad = csv_bytes([HEADER, ["S-900000", "received", "bone", "", "", "", ""]])
    for _ in range(4):
        assert (await upload(client, study, alice_headers, bad)).status_code == 422

    uploads = (await client.get(study_dashboard_url(study), headers=alice_headers)).json()["uploads"]

    files = (await client.get(study_url(study, "sample-files"), headers=alice_headers)).json()
    assert files["total"] == 12
    assert (uploads["imported"], uploads["rejected"]) == (8, 4)
    assert [item["id"] for item in uploads["recent"]] == [item["id"] for item in files["items"]][:10]
    assert [item["status"] for item in uploads["recent"]] == ["rejected"] * 4 + ["imported"] * 6
    assert {(item["rows"], item["created"], item["rejected"]) for item in uploads["recent"][:4]} == {
        (1, 0, 1)
    }
    assert {(item["rows"], item["created"], item["rejected"]) for item in uploads["recent"][4:]} == {
        (2, 2, 0)
    }


async def test_an_administrator_reads_every_study_its_newest_activity_and_figures(
    client, study, alice, alice_headers, admin, auth_headers, make_user, make_study
):
    bob = await make_user(email="bob@example.org")
    bobs = await make_study(owner=bob, code="BOB-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    await post_sample(client, study, alice_headers, "A-1")
    await post_sample(client, bobs, await auth_headers(bob), "B-1", tissue="saliva")
    admin_headers = await auth_headers(admin)

    body = (await client.get(SUMMARY, headers=admin_headers)).json()
    figures = (await client.get(study_dashboard_url(bobs), headers=admin_headers)).json()

    assert body["samples"]["total"] == 2
    assert [entry["code"] for entry in body["top_studies"]] == ["BOB-1", "WIN-1"]
    entries = []
    for each in (study, bobs):
        entries += (await client.get(study_url(each, "activity"), headers=admin_headers)).json()["items"]
    newest = sorted(entries, key=lambda entry: (entry["at"], entry["id"]), reverse=True)[:20]
    assert [entry["id"] for entry in body["recent_activity"]] == [entry["id"] for entry in newest]
    assert figures["choices"] == [{"field": "tissue", "counts": {"blood": 0, "saliva": 1, "tumour": 0}}]
