"""Issue 16, finding 5: whatever an owner writes, the activity the dashboard and the activity log
answer stays small; one owner's huge values cannot make a member's (or an admin's) summary heavy."""

import json

import pytest

from src.constants import MAX_BODY_BYTES
from src.dashboard.constants import RECENT_ACTIVITY_LIMIT
from src.study.constants import MAX_SCHEMA_JSON, TEXT_MAX_LENGTH_LIMIT
from tests.dashboard.conftest import SUMMARY
from tests.study.conftest import STUDIES, study_url

SUMMARY_MAX_BYTES = 64 * 1024
# The longest text each value may hold, and as many such values as one request body carries.
LONGEST = TEXT_MAX_LENGTH_LIMIT
VALUES_PER_BODY = MAX_BODY_BYTES // (LONGEST + 20)


def widest_schema(description: str) -> list[dict]:
    """Text fields that each take the longest text, described at length: a schema of close to the
    largest JSON a study may store."""
    fields: list[dict] = []
    for number in range(200):
        field = {
            "name": f"f{number:03}",
            "type": "text",
            "required": False,
            "max_length": LONGEST,
            "description": description,
        }
        if len(json.dumps([*fields, field], separators=(",", ":"))) > MAX_SCHEMA_JSON:
            break
        fields.append(field)
    return fields


def longest_values(letter: str) -> dict[str, str]:
    return {f"f{number:03}": letter * LONGEST for number in range(VALUES_PER_BODY)}


@pytest.fixture
async def heavy_study(client, alice, alice_headers, make_user, auth_headers, admin, join_by_invitation):
    """A study whose owner filled the activity log with the largest values each route takes, and a
    viewer the owner added (who did nothing)."""
    created = await client.post(
        STUDIES,
        json={"code": "HEAVY-1", "title": "T" * 200, "sample_fields": widest_schema("a" * 250)},
        headers=alice_headers,
    )
    assert created.status_code == 201, created.text
    study = created.json()["id"]
    victim = await make_user(email="victim@example.org")
    await join_by_invitation(study, alice, victim, "viewer")
    for letter in "bc":
        description = {"description": letter * 10_000, "title": letter.upper() * 200}
        assert (
            await client.patch(study_url(study), json=description, headers=alice_headers)
        ).status_code == 200
    replaced = await client.put(
        study_url(study, "sample-fields"), json=widest_schema("z" * 250), headers=alice_headers
    )
    assert replaced.status_code == 200, replaced.text
    for number in range(RECENT_ACTIVITY_LIMIT // 2):
        sample = await client.post(
            study_url(study, "samples"),
            json={"sample_id": f"{'S' * 90}-{number}", "values": longest_values("x")},
            headers=alice_headers,
        )
        assert sample.status_code == 201, sample.text
        patched = await client.patch(
            study_url(study, "samples", sample.json()["id"]),
            json={"values": longest_values("y")},
            headers=alice_headers,
        )
        assert patched.status_code == 200, patched.text
    return study, await auth_headers(victim)


async def test_the_summary_stays_small_whatever_an_owner_wrote(client, heavy_study, admin, auth_headers):
    _study, victim_headers = heavy_study

    for headers in (victim_headers, await auth_headers(admin)):
        summary = await client.get(SUMMARY, headers=headers)

        assert summary.status_code == 200, summary.text
        assert len(summary.json()["recent_activity"]) == RECENT_ACTIVITY_LIMIT
        assert len(summary.content) < SUMMARY_MAX_BYTES


async def test_the_activity_log_stays_small_whatever_an_owner_wrote(client, heavy_study):
    study, victim_headers = heavy_study

    page = await client.get(study_url(study, "activity"), params={"page_size": 20}, headers=victim_headers)

    assert page.status_code == 200, page.text
    assert len(page.json()["items"]) == 20
    assert len(page.content) < SUMMARY_MAX_BYTES


async def test_a_cut_value_says_it_was_cut_and_keeps_its_beginning(client, heavy_study, alice_headers):
    study, _victim_headers = heavy_study

    page = await client.get(study_url(study, "activity"), params={"page_size": 1}, headers=alice_headers)

    (latest,) = page.json()["items"]
    assert latest["action"] == "sample_updated"
    details = latest["details"]
    assert details["old"]["values"]["f000"] == "x" * 199 + "\u2026"
    assert details["new"]["values"]["f000"] == "y" * 199 + "\u2026"
    assert "/old/values/f000" in details["truncated"]
    assert "/new/values/f000" in details["truncated"]
