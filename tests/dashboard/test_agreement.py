"""After every kind of write, the summary and the study figures agree with what the study, sample
and sample-file routes list: statuses, totals, per-day counts, the top studies and the files."""

from src.study.constants import StudyStatus
from tests.dashboard.conftest import SUMMARY, study_dashboard_url
from tests.dashboard.test_field_counts import listed_samples, make_every_kind_of_sample_write
from tests.study.conftest import FIELDS, study_url


async def assert_figures_agree_with_the_routes(client, studies, headers) -> None:
    summary = (await client.get(SUMMARY, headers=headers)).json()
    by_status: dict[str, int] = dict.fromkeys(summary["samples"]["by_status"], 0)
    files, sizes, rejected, imported = 0, 0, 0, 0
    for study in studies:
        samples = await listed_samples(client, study, headers)
        study_by_status = dict.fromkeys(by_status, 0)
        for sample in samples:
            study_by_status[sample["status"]] += 1
        figures = (await client.get(study_dashboard_url(study), headers=headers)).json()
        assert figures["samples"] == {"total": len(samples), "by_status": study_by_status}
        assert sum(week["count"] for week in figures["samples_created"]) == len(samples)
        listed_files = (await client.get(study_url(study, "sample-files"), headers=headers)).json()["items"]
        assert [item["id"] for item in figures["uploads"]["recent"]] == [item["id"] for item in listed_files]
        study_rejected = sum(item["status"] == "rejected" for item in listed_files)
        assert figures["uploads"]["rejected"] == study_rejected
        assert figures["uploads"]["imported"] == len(listed_files) - study_rejected
        assert (await client.get(study_url(study), headers=headers)).json()["sample_count"] == len(samples)
        for status, count in study_by_status.items():
            by_status[status] += count
        files += len(listed_files)
        sizes += sum(item["size_bytes"] for item in listed_files)
        rejected += study_rejected
        imported += len(listed_files) - study_rejected
    total = sum(by_status.values())
    assert summary["samples"] == {"total": total, "by_status": by_status}
    assert sum(day["count"] for day in summary["samples_created"]) == total
    assert summary["sample_files"] == {
        "total": files,
        "imported": imported,
        "rejected": rejected,
        "total_bytes": sizes,
    }
    listed = []
    for status in ("draft", "active"):
        page = await client.get("/api/v1/studies", params={"status": status}, headers=headers)
        listed += page.json()["items"]
    expected_top = sorted(listed, key=lambda study: (-study["sample_count"], study["code"].lower()))
    assert [(top["code"], top["sample_count"]) for top in summary["top_studies"]] == [
        (study["code"], study["sample_count"]) for study in expected_top
    ]


async def test_the_figures_agree_with_the_routes_after_every_kind_of_write(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, code="AGREE-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    other = await make_study(owner=alice, code="AGREE-2", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    await assert_figures_agree_with_the_routes(client, [study, other], alice_headers)

    await make_every_kind_of_sample_write(client, study, alice_headers)
    await make_every_kind_of_sample_write(client, other, alice_headers)
    await assert_figures_agree_with_the_routes(client, [study, other], alice_headers)

    # Deleting the rejected files, then an imported file once its samples are gone.
    for item in (await client.get(study_url(study, "sample-files"), headers=alice_headers)).json()["items"]:
        if item["status"] == "rejected":
            deleted = await client.delete(f"/api/v1/sample-files/{item['id']}", headers=alice_headers)
            assert deleted.status_code == 204, deleted.text
    await assert_figures_agree_with_the_routes(client, [study, other], alice_headers)
    for sample in await listed_samples(client, other, alice_headers):
        await client.delete(study_url(other, "samples", sample["id"]), headers=alice_headers)
    for item in (await client.get(study_url(other, "sample-files"), headers=alice_headers)).json()["items"]:
        deleted = await client.delete(f"/api/v1/sample-files/{item['id']}", headers=alice_headers)
        assert deleted.status_code == 204, deleted.text
    await assert_figures_agree_with_the_routes(client, [study, other], alice_headers)
