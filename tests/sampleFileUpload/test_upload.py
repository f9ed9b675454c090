"""Uploading a sheet: a clean import, insert and upsert, dry runs, idempotency, all or nothing."""

import asyncio
import csv
import io
import uuid
from unittest.mock import ANY

import jsonschema_rs
import pytest
from sqlalchemy import select

from src.app import create_app
from src.database import SessionFactory
from src.sampleFileUpload import importer
from src.study.constants import StudyStatus
from src.study.models import Sample, StudyActivity
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import (
    HEADER,
    SAMPLE_FILES,
    csv_bytes,
    files_url,
    good_rows,
    sample_csv,
    stored_files,
    upload,
)
from tests.study.conftest import study_url


async def stored_samples(study) -> list[Sample]:
    async with SessionFactory() as session:
        return list(
            await session.scalars(
                select(Sample).where(Sample.study_id == study.id).order_by(Sample.sample_id)
            )
        )


async def test_clean_csv_is_imported_with_201_and_a_report(client, alice, alice_headers, study):
    response = await upload(client, study, alice_headers, sample_csv(3))

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{SAMPLE_FILES}/{body['id']}"
    assert body["status"] == "imported"
    assert body["mode"] == "insert"
    assert body["format"] == "csv"
    assert body["filename"] == "samples.csv"
    assert body["uploaded_by"] == str(alice.id)
    assert body["duplicate_of"] is None
    report = body["report"]
    assert (
        report["rows"],
        report["created"],
        report["updated"],
        report["unchanged"],
        report["rejected"],
    ) == (
        3,
        3,
        0,
        0,
        0,
    )
    assert report["errors"] == []
    assert report["errors_total"] == 0
    assert report["columns"][3] == {"header": "volume [mL]", "field": "volume"}
    samples = await stored_samples(study)
    assert [sample.sample_id for sample in samples] == ["S-000001", "S-000002", "S-000003"]
    assert samples[0].values == {
        "tissue": "blood",
        "volume": 1.5,
        "age": 1,
        "fasting": True,
        "collected_on": "2026-11-20",
    }
    assert str(samples[0].source_file_id) == body["id"]
    assert samples[0].status == "received"
    study_body = (await client.get(study_url(study), headers=alice_headers)).json()
    assert study_body["sample_count"] == 3


# Error codes: each with the smallest file that triggers it.

CELL_CASES = [
    ("age", "4.5", "not_an_integer"),
    ("volume [mL]", "lots", "not_a_number"),
    ("collected_on", "20/11/26", "not_a_date"),
    ("volume [mL]", "-1", "below_min"),
    ("age", "131", "above_max"),
    ("tissue", "plasma", "not_a_choice"),
    ("fasting", "maybe", "not_a_boolean"),
    ("label", "abc", "pattern_mismatch"),
    ("label", "ABCDEFGHIJK", "too_long"),
    ("frozen_at", "yesterday", "not_a_datetime"),
    ("status", "lost", "not_a_choice"),
    ("tissue", "", "required"),
]


@pytest.mark.parametrize(("column", "value", "code"), CELL_CASES)
async def test_each_invalid_cell_is_reported_with_row_column_value_and_code(
    client, alice_headers, study, column, value, code
):
    header = ["sample_id", "tissue", column] if column != "tissue" else ["sample_id", "tissue"]
    cells = ["S-1", "blood", value] if column != "tissue" else ["S-1", value]
    content = csv_bytes(
        [header, ["S-0", "blood", *([] if column == "tissue" else [""])][: len(header)], cells]
    )

    response = await upload(client, study, alice_headers, content)

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    errors = body["report"]["errors"]
    assert errors == [{"row": 3, "column": column, "value": value, "code": code, "message": ANY}]
    assert body["report"]["rejected"] == 1
    assert body["report"]["rows"] == 2
    assert body["sample_file_id"]
    assert await stored_samples(study) == []


async def test_duplicate_sample_ids_in_the_file_are_errors_on_every_later_row(client, alice_headers, study):
    content = csv_bytes(
        [["sample_id", "tissue"], ["S-1", "blood"], [" s-1 ", "blood"], ["S-2", "blood"], ["S-1", "blood"]]
    )

    body = assert_problem(await upload(client, study, alice_headers, content), 422, "SAMPLE_FILE_REJECTED")

    assert [(e["row"], e["code"]) for e in body["report"]["errors"]] == [
        (3, "duplicate_in_file"),
        (5, "duplicate_in_file"),
    ]


async def test_a_sample_id_already_in_the_study_is_already_exists_in_insert_mode(
    client, alice_headers, study, make_sample
):
    await make_sample(study, sample_id="S-000002", values={"tissue": "blood"})

    body = assert_problem(
        await upload(client, study, alice_headers, sample_csv(3)), 422, "SAMPLE_FILE_REJECTED"
    )

    assert body["report"]["errors"] == [
        {"row": 3, "column": "sample_id", "value": "S-000002", "code": "already_exists", "message": ANY}
    ]
    assert [sample.sample_id for sample in await stored_samples(study)] == ["S-000002"]


@pytest.mark.parametrize(
    ("header", "code", "column"),
    [
        (["sample_id", "tissue", "colour"], "unknown_column", "colour"),
        (["sample_id", "volume [mL]"], "missing_column", "tissue"),
        (["tissue"], "missing_column", "sample_id"),
        (["sample_id", "tissue", "volume [L]"], "unit_mismatch", "volume [L]"),
        (["sample_id", "tissue", "age [years]"], "unit_mismatch", "age [years]"),
        (["sample_id", "tissue", "Tissue"], "duplicate_column", "Tissue"),
    ],
)
async def test_column_problems_are_reported_once_on_the_header_row(
    client, alice_headers, study, header, code, column
):
    valid = {"tissue": "blood", "Tissue": "blood", "colour": "red", "volume [mL]": "1", "volume [L]": "1"}
    rows = [
        [valid.get(column, f"S-{n}") if column != "age [years]" else "3" for column in header]
        for n in range(3)
    ]

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes([header, *rows])), 422, "SAMPLE_FILE_REJECTED"
    )

    assert [(e["row"], e["column"], e["code"]) for e in body["report"]["errors"]] == [(1, column, code)]


async def test_headers_match_trimmed_case_folded_and_with_the_right_unit(client, alice_headers, study):
    content = csv_bytes([[" Sample_ID ", "TISSUE", "Volume [ mL ]"], ["S-1", "blood ", "2.5"]])

    response = await upload(client, study, alice_headers, content)

    assert response.status_code == 201, response.text
    assert response.json()["report"]["errors"] == []
    (sample,) = await stored_samples(study)
    assert sample.values["volume"] == 2.5


async def test_more_than_a_thousand_errors_are_truncated_in_the_report_and_all_in_errors_csv(
    client, alice_headers, study
):
    rows = [[f"S-{n}", "plasma"] for n in range(1_200)]

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes([["sample_id", "tissue"], *rows])),
        422,
        "SAMPLE_FILE_REJECTED",
    )

    report = body["report"]
    assert len(report["errors"]) == 1_000
    assert (report["errors_total"], report["errors_truncated"], report["rejected"]) == (1_200, True, 1_200)
    errors_csv = await client.get(
        f"{SAMPLE_FILES}/{body['sample_file_id']}/errors.csv", headers=alice_headers
    )
    assert errors_csv.status_code == 200
    assert errors_csv.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(errors_csv.content.decode("utf-8-sig"))))
    assert lines[0] == ["# row", "# errors", "sample_id", "tissue"]
    assert len(lines) == 1 + 1_200
    assert lines[-1] == ["1201", ANY, "S-1199", "plasma"]
    assert lines[-1][1].startswith("tissue: ")
    assert lines[-1][1].endswith("(not_a_choice)")


async def test_the_rejected_record_is_stored_with_its_report(client, alice_headers, study):
    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes([["sample_id", "tissue"], ["S-1", "plasma"]])),
        422,
        "SAMPLE_FILE_REJECTED",
    )

    record = await client.get(f"{SAMPLE_FILES}/{body['sample_file_id']}", headers=alice_headers)

    assert record.status_code == 200
    assert record.json()["status"] == "rejected"
    assert record.json()["report"] == body["report"]


# All or nothing


async def test_one_bad_row_among_thousands_writes_nothing(client, alice_headers, study):
    rows = good_rows(5_000)
    rows[4_321][4] = "many"  # past the first batches, which were already written when it is read

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes([HEADER, *rows])), 422, "SAMPLE_FILE_REJECTED"
    )

    assert body["report"]["errors"] == [
        {"row": 4_323, "column": "age", "value": "many", "code": "not_an_integer", "message": ANY}
    ]
    assert (body["report"]["rows"], body["report"]["created"]) == (5_000, 0)
    assert await stored_samples(study) == []
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 0


# Insert, upsert, dry run


async def test_upsert_updates_changed_samples_counts_unchanged_and_creates_new_ones(
    client, alice_headers, study, make_sample
):
    await make_sample(study, sample_id="A", values={"tissue": "blood", "age": 40, "volume": 1.0})
    await make_sample(study, sample_id="B", values={"tissue": "saliva", "age": 50})
    content = csv_bytes(
        [
            ["sample_id", "status", "tissue", "age", "volume [mL]"],
            ["a", "", "", "41", ""],
            ["B", "", "saliva", "50", ""],
            ["C", "stored", "tumour", "", ""],
        ]
    )

    response = await upload(client, study, alice_headers, content, mode="upsert")

    assert response.status_code == 201, response.text
    report = response.json()["report"]
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 1, 1)
    a, b, c = await stored_samples(study)
    # Empty cells leave the stored values alone.
    assert (a.values, a.version, a.status) == ({"tissue": "blood", "age": 41, "volume": 1.0}, 2, "registered")
    assert (b.version, b.source_file_id) == (1, None)
    assert (c.values, c.status) == ({"tissue": "tumour"}, "stored")
    # The file is the last to have changed A (its log shows the import); B, unchanged, and C, which it
    # created, are not marked as updated by it.
    file_id = uuid.UUID(response.json()["id"])
    assert (a.updated_by_file_id, b.updated_by_file_id, c.updated_by_file_id) == (file_id, None, None)
    assert c.source_file_id == file_id


async def test_upsert_of_a_new_sample_still_needs_its_required_fields(client, alice_headers, study):
    content = csv_bytes([["sample_id", "tissue", "age"], ["NEW", "", "3"]])

    body = assert_problem(
        await upload(client, study, alice_headers, content, mode="upsert"), 422, "SAMPLE_FILE_REJECTED"
    )

    assert [(e["row"], e["column"], e["code"]) for e in body["report"]["errors"]] == [
        (2, "tissue", "required")
    ]


async def test_upsert_of_a_new_sample_names_the_missing_field_by_its_header_in_the_file(
    client, alice_headers, study
):
    # `column` is the header text as in the file, also for this error found after the row check.
    content = csv_bytes([["Sample_ID", " Tissue ", "Volume [mL]"], ["NEW", "", "2"]])

    body = assert_problem(
        await upload(client, study, alice_headers, content, mode="upsert"), 422, "SAMPLE_FILE_REJECTED"
    )

    assert [(e["column"], e["code"]) for e in body["report"]["errors"]] == [("Tissue", "required")]


async def test_dry_run_reports_and_writes_and_stores_nothing(client, alice_headers, study, make_sample):
    await make_sample(study, sample_id="S-000001", values={"tissue": "blood"})

    response = await upload(client, study, alice_headers, sample_csv(3), mode="upsert", dry_run=True)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    assert (body["report"]["created"], body["report"]["updated"]) == (2, 1)
    assert [sample.sample_id for sample in await stored_samples(study)] == ["S-000001"]
    listing = await client.get(files_url(study), headers=alice_headers)
    assert listing.json()["total"] == 0
    assert stored_files() == []


async def test_dry_run_of_an_invalid_file_answers_200_with_the_errors(client, alice_headers, study):
    content = csv_bytes([["sample_id", "tissue"], ["S-1", "plasma"]])

    response = await upload(client, study, alice_headers, content, dry_run=True)

    assert response.status_code == 200, response.text
    assert response.json()["report"]["errors"][0]["code"] == "not_a_choice"
    assert stored_files() == []


async def test_dry_run_of_a_file_already_imported_says_so_as_the_upload_would(client, alice_headers, study):
    content = sample_csv(3)
    first = await upload(client, study, alice_headers, content)
    assert first.status_code == 201, first.text

    response = await upload(client, study, alice_headers, content, dry_run=True)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dry_run"], body["duplicate_of"]) == (True, first.json()["id"])
    assert body["report"] == first.json()["report"]  # not `already_exists` on every row
    assert (await client.get(files_url(study), headers=alice_headers)).json()["total"] == 1


@pytest.mark.parametrize(("field", "value"), [("mode", "replace"), ("dry_run", "perhaps")])
async def test_an_unknown_mode_or_dry_run_value_is_422(client, alice_headers, study, field, value):
    response = await client.post(
        files_url(study), files={"file": ("a.csv", sample_csv(1))}, data={field: value}, headers=alice_headers
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", field]


async def test_a_body_without_a_file_is_422_and_not_multipart_is_400(client, alice_headers, study):
    no_file = await client.post(files_url(study), files={"mode": (None, b"insert")}, headers=alice_headers)
    not_multipart = await client.post(
        files_url(study), content=b"sample_id\nS-1\n", headers={**alice_headers, "Content-Type": "text/csv"}
    )

    assert assert_problem(no_file, 422, "VALIDATION_ERROR")["errors"][0]["loc"] == ["body", "file"]
    assert_problem(not_multipart, 400, "MALFORMED_UPLOAD")


async def test_a_part_other_than_file_mode_and_dry_run_is_400_and_imports_nothing(
    client, alice_headers, study
):
    misspelt = await client.post(
        files_url(study),
        files={"file": ("s.csv", sample_csv(2), "text/csv")},
        data={"dry-run": "true"},
        headers=alice_headers,
    )

    assert "`dry-run`" in assert_problem(misspelt, 400, "MALFORMED_UPLOAD")["detail"]
    assert await stored_samples(study) == []


async def test_a_field_sent_twice_is_400_and_imports_nothing(client, alice_headers, study):
    # `dry_run` true and then false: the last one must not silently win and import for real.
    twice = await client.post(
        files_url(study),
        files=[
            ("file", ("s.csv", sample_csv(2), "text/csv")),
            ("dry_run", (None, b"true")),
            ("dry_run", (None, b"false")),
        ],
        headers=alice_headers,
    )

    assert "`dry_run` at most once" in assert_problem(twice, 400, "MALFORMED_UPLOAD")["detail"]
    assert await stored_samples(study) == []
    assert stored_files() == []


# Idempotency


async def test_the_same_content_again_answers_200_with_the_earlier_record(client, alice_headers, study):
    first = await upload(client, study, alice_headers, sample_csv(3))

    again = await upload(client, study, alice_headers, sample_csv(3), filename="copy.csv")

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate_of"] == first.json()["id"]
    assert len(await stored_samples(study)) == 3
    # The repeat has a record of its own (an upload answered 202 finds out there), naming the first.
    listed = (await client.get(files_url(study), headers=alice_headers)).json()["items"]
    assert [item["duplicate_of"] for item in listed] == [first.json()["id"], None]


async def test_two_identical_uploads_at_once_import_once(client, alice_headers, study):
    content = sample_csv(2_500)

    responses = await asyncio.gather(*(upload(client, study, alice_headers, content) for _ in range(2)))

    assert sorted(response.status_code for response in responses) == [200, 201], [r.text for r in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(await stored_samples(study)) == 2_500
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 2_500


async def test_the_same_content_after_a_rejection_is_checked_again(client, alice_headers, study, make_sample):
    await make_sample(study, sample_id="S-000001", values={"tissue": "blood"})
    assert_problem(await upload(client, study, alice_headers, sample_csv(2)), 422, "SAMPLE_FILE_REJECTED")

    response = await upload(client, study, alice_headers, sample_csv(2), mode="upsert")

    assert response.status_code == 201, response.text


# Activity


async def test_imports_rejections_and_deletions_are_in_the_activity_log(client, alice_headers, study):
    imported = (await upload(client, study, alice_headers, sample_csv(2))).json()
    rejected = (
        await upload(client, study, alice_headers, csv_bytes([["sample_id", "tissue"], ["X", "no"]]))
    ).json()
    await client.delete(f"{SAMPLE_FILES}/{rejected['sample_file_id']}", headers=alice_headers)

    async with SessionFactory() as session:
        entries = list(
            await session.scalars(
                select(StudyActivity).where(StudyActivity.study_id == study.id).order_by(StudyActivity.at)
            )
        )

    actions = [(entry.action, entry.details) for entry in entries if entry.action.startswith("sample_file")]
    assert actions == [
        (
            "sample_file_imported",
            {
                "sample_file_id": imported["id"],
                "filename": "samples.csv",
                "rows": 2,
                "created": 2,
                "updated": 0,
                "unchanged": 0,
            },
        ),
        (
            "sample_file_rejected",
            {
                "sample_file_id": rejected["sample_file_id"],
                "filename": "samples.csv",
                "rows": 1,
                "rejected": 1,
                "errors_total": 1,
            },
        ),
        (
            "sample_file_deleted",
            {"sample_file_id": rejected["sample_file_id"], "filename": "samples.csv", "status": "rejected"},
        ),
    ]


@pytest.mark.parametrize("mode", ["insert", "upsert"])
async def test_a_large_study_is_looked_up_in_the_database_batch_by_batch(
    client, alice_headers, study, make_sample, monkeypatch, mode
):
    monkeypatch.setattr(importer.ImportPass, "ids_in_memory_up_to", 0)  # as if the study were large
    await make_sample(study, sample_id="S-000002", values={"tissue": "saliva"})

    response = await upload(client, study, alice_headers, sample_csv(3), mode=mode)

    if mode == "insert":
        body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
        assert [(e["row"], e["code"]) for e in body["report"]["errors"]] == [(3, "already_exists")]
    else:
        assert response.status_code == 201, response.text
        report = response.json()["report"]
        assert (report["created"], report["updated"]) == (2, 1)


@pytest.mark.parametrize(
    ("sample_id", "code"),
    [("S" * 101, "too_long"), ("S-\u202e1", "invalid_text"), ("", "required")],
)
async def test_sample_ids_are_one_line_of_at_most_100_characters(
    client, alice_headers, study, sample_id, code
):
    content = csv_bytes([["sample_id", "tissue"], [sample_id, "blood"]])

    body = assert_problem(await upload(client, study, alice_headers, content), 422, "SAMPLE_FILE_REJECTED")

    assert [(e["row"], e["column"], e["code"]) for e in body["report"]["errors"]] == [(2, "sample_id", code)]


async def test_a_value_in_a_column_without_a_header_is_an_error_of_that_column(client, alice_headers, study):
    # Reported once for the column, on the header row, naming the row of its first value (issue 16).
    content = csv_bytes([["sample_id", "tissue"], ["S-1", "blood", "stray"], ["S-2", "blood", "again"]])

    body = assert_problem(await upload(client, study, alice_headers, content), 422, "SAMPLE_FILE_REJECTED")

    assert [
        (e["row"], e["column"], e["value"], e["code"], e["message"]) for e in body["report"]["errors"]
    ] == [(1, None, "stray", "unknown_column", "column 3 has values but no header (first on row 2)")]


async def test_an_empty_header_over_values_is_an_unknown_column(client, alice_headers, study):
    content = csv_bytes([["sample_id", "", "tissue"], ["S-1", "x", "blood"]])

    body = assert_problem(await upload(client, study, alice_headers, content), 422, "SAMPLE_FILE_REJECTED")

    assert [(e["row"], e["code"]) for e in body["report"]["errors"]] == [(1, "unknown_column")]


async def test_status_is_matched_case_insensitively(client, alice_headers, study):
    content = csv_bytes([["sample_id", "Status", "tissue"], ["S-1", "STORED", "blood"]])

    response = await upload(client, study, alice_headers, content)

    assert response.status_code == 201, response.text
    assert [sample.status for sample in await stored_samples(study)] == ["stored"]


MULTIPART = "multipart/form-data; boundary=b0undary"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--b0undary\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + b"--b0undary--\r\n"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (multipart(("file", "a.csv", sample_csv(1)), ("file", "b.csv", sample_csv(1))), "exactly one"),
        (multipart(("mode", None, b"x" * 200), ("file", "a.csv", sample_csv(1))), "too long"),
        (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="' + b"a" * 5_000,
            "multipart",
        ),
        (b"no multipart here", "multipart"),
    ],
)
async def test_malformed_multipart_bodies_are_400_and_leave_no_file(
    client, alice_headers, study, body, detail
):
    response = await client.post(
        files_url(study), content=body, headers={**alice_headers, "Content-Type": MULTIPART}
    )

    assert detail in assert_problem(response, 400, "MALFORMED_UPLOAD")["detail"]
    assert stored_files() == []


async def test_the_form_fields_may_come_after_the_file(client, alice_headers, study):
    body = multipart(("file", "a.csv", sample_csv(2)), ("mode", None, b"upsert"), ("dry_run", None, b"1"))

    response = await client.post(
        files_url(study), content=body, headers={**alice_headers, "Content-Type": MULTIPART}
    )

    assert response.status_code == 200, response.text
    assert (response.json()["dry_run"], response.json()["mode"]) == (True, "upsert")


async def test_backslashes_quotes_and_unicode_are_stored_exactly_as_sent(
    client, alice, alice_headers, make_study
):
    # PostgreSQL's COPY text format reads `\t`, `\N` and `\\` as a tab, NULL and one backslash:
    # each batch is escaped before it is sent, so these arrive as typed.
    study = await make_study(
        owner=alice, sample_fields=[{"name": "notes", "type": "text"}], status=StudyStatus.ACTIVE
    )
    notes = ['C:\\temp\\new "x" é ✓', "\\N", "back\\\\slash\\t"]
    content = csv_bytes([["sample_id", "notes"], ["A\\t1", notes[0]], ["\\N", notes[1]], ["B\\", notes[2]]])

    response = await upload(client, study, alice_headers, content)

    assert response.status_code == 201, response.text
    stored = {sample.sample_id: sample.values for sample in await stored_samples(study)}
    assert stored == {"A\\t1": {"notes": notes[0]}, "\\N": {"notes": notes[1]}, "B\\": {"notes": notes[2]}}


UPLOAD_ANSWERS = create_app().openapi()
UPLOAD_200 = UPLOAD_ANSWERS["paths"]["/api/v1/studies/{study_id}/sample-files"]["post"]["responses"]["200"]


def documented_200_shapes_matching(body: dict) -> list[str]:
    """The 200 answer's documented shapes (`oneOf`) that the body matches."""
    schemas = {"components": UPLOAD_ANSWERS["components"]}
    shapes = UPLOAD_200["content"]["application/json"]["schema"]["oneOf"]
    return [
        shape["$ref"].rsplit("/", 1)[1]
        for shape in shapes
        if jsonschema_rs.validator_for({**shape, **schemas}).is_valid(body)
    ]


async def test_a_dry_run_and_a_duplicate_each_match_one_documented_shape_of_the_200_answer(
    client, alice_headers, study
):
    """Issue 17: a generated client tells the two 200 answers apart (`oneOf`, `dry_run` required in
    the dry run's shape); a duplicate's file record used to match the dry run's shape too."""
    content = sample_csv(2)
    assert (await upload(client, study, alice_headers, content)).status_code == 201
    dry_run = await upload(client, study, alice_headers, sample_csv(2, start=5), dry_run=True)
    duplicate = await upload(client, study, alice_headers, content)

    assert dry_run.status_code == duplicate.status_code == 200
    assert documented_200_shapes_matching(dry_run.json()) == ["DryRunRead"]
    assert documented_200_shapes_matching(duplicate.json()) == ["SampleFileRead"]
