"""The maintained sample counters (studies.sample_count, study_sample_counts per status,
study_daily_sample_counts per creation day) agree with a recount after every kind of sample
write: create, status change, delete, file import and upsert."""

from sqlalchemy import func, select

from src.database import SessionFactory
from src.study.models import Sample, Study, StudyDailySampleCount, StudySampleCount
from tests.sampleFileUpload.conftest import HEADER, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
from tests.study.conftest import study_url


async def assert_counters_match_recount(study) -> dict[str, int]:
    async with SessionFactory() as session:
        recount = dict(
            (
                await session.execute(
                    select(Sample.status, func.count())
                    .where(Sample.study_id == study.id)
                    .group_by(Sample.status)
                )
            ).all()
        )
        counters = dict(
            (
                await session.execute(
                    select(StudySampleCount.status, StudySampleCount.count).where(
                        StudySampleCount.study_id == study.id
                    )
                )
            ).all()
        )
        daily = dict(
            (
                await session.execute(
                    select(StudyDailySampleCount.day, StudyDailySampleCount.count).where(
                        StudyDailySampleCount.study_id == study.id
                    )
                )
            ).all()
        )
        sample_count = await session.scalar(select(Study.sample_count).where(Study.id == study.id))
        created_at = await session.scalars(select(Sample.created_at).where(Sample.study_id == study.id))
        created_on = [moment.date() for moment in created_at]
    assert {status: n for status, n in counters.items() if n} == recount
    per_day = {day: created_on.count(day) for day in set(created_on)}
    assert {day: n for day, n in daily.items() if n} == per_day
    assert sample_count == sum(recount.values())
    return {str(status): n for status, n in recount.items()}


async def test_counters_follow_api_writes_and_imports(client, study, alice_headers):
    samples = study_url(study, "samples")
    created = await client.post(
        samples, json={"sample_id": "A-1", "values": {"tissue": "blood"}}, headers=alice_headers
    )
    assert created.status_code == 201
    second = await client.post(
        samples,
        json={"sample_id": "A-2", "status": "stored", "values": {"tissue": "blood"}},
        headers=alice_headers,
    )
    assert await assert_counters_match_recount(study) == {"registered": 1, "stored": 1}

    sample_url = f"{samples}/{created.json()['id']}"
    moved = await client.patch(sample_url, json={"status": "consumed"}, headers=alice_headers)
    assert moved.status_code == 200
    assert await assert_counters_match_recount(study) == {"consumed": 1, "stored": 1}

    gone = await client.delete(f"{samples}/{second.json()['id']}", headers=alice_headers)
    assert gone.status_code == 204
    assert await assert_counters_match_recount(study) == {"consumed": 1}

    imported = await upload(client, study, alice_headers, sample_csv(3))
    assert imported.status_code == 201, imported.text
    assert await assert_counters_match_recount(study) == {"consumed": 1, "received": 3}

    # Upsert: S-000001 moves received -> stored, S-000004 is new (registered), A-1 stays consumed.
    sheet = csv_bytes(
        [
            HEADER,
            ["S-000001", "stored", "blood", "", "", "", ""],
            ["S-000004", "", "blood", "", "", "", ""],
        ]
    )
    upserted = await upload(client, study, alice_headers, sheet, mode="upsert")
    assert upserted.status_code == 201, upserted.text
    assert await assert_counters_match_recount(study) == {
        "consumed": 1,
        "received": 2,
        "stored": 1,
        "registered": 1,
    }


async def test_rejected_and_dry_run_imports_leave_counters_alone(client, study, alice_headers):
    await upload(client, study, alice_headers, sample_csv(2))
    bad = csv_bytes([HEADER, ["S-000009", "received", "bone", "", "", "", ""]])
    assert (await upload(client, study, alice_headers, bad)).status_code == 422
    assert (
        await upload(client, study, alice_headers, sample_csv(2, start=5), dry_run=True)
    ).status_code == 200
    assert await assert_counters_match_recount(study) == {"received": 2}
