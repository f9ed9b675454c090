"""The template and the export: the study's columns out, and an export re-uploaded changes nothing."""

import io

import pytest
from openpyxl import load_workbook

from tests.sampleFileUpload.conftest import HEADER, csv_bytes, good_rows, upload
from tests.study.conftest import study_url

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEMPLATE_HEADERS = [
    "sample_id",
    "status",
    "tissue",
    "volume [mL]",
    "age",
    "label",
    "fasting",
    "collected_on",
    "frozen_at",
]


def csv_lines(response) -> list[str]:
    return response.content.decode("utf-8-sig").splitlines()


async def test_csv_template_has_the_headers_and_a_description_row(client, alice_headers, study):
    response = await client.get(study_url(study, "sample-template"), headers=alice_headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert 'filename="' in response.headers["content-disposition"]
    header, description = csv_lines(response)
    assert header.split(",") == TEMPLATE_HEADERS
    assert description.startswith("# description,")
    assert "choice; required; one of: blood, saliva, tumour" in description


async def test_the_csv_template_filled_in_uploads_with_its_description_row_skipped(
    client, alice_headers, study
):
    template = (await client.get(study_url(study, "sample-template"), headers=alice_headers)).content

    response = await upload(client, study, alice_headers, template + b"S-1,,blood,,,,,,\r\n")

    assert response.status_code == 201, response.text
    assert response.json()["report"]["rows"] == 1


async def test_xlsx_template_has_a_fields_sheet(client, alice_headers, study):
    response = await client.get(
        study_url(study, "sample-template"), params={"format": "xlsx"}, headers=alice_headers
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX_TYPE
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    assert workbook.sheetnames == ["samples", "fields"]
    assert [cell.value for cell in next(workbook["samples"].iter_rows())] == TEMPLATE_HEADERS
    fields = [[cell.value for cell in row] for row in workbook["fields"].iter_rows()]
    assert fields[0] == ["column", "description"]
    assert fields[4][0] == "volume [mL]"


@pytest.mark.parametrize("sheet_format", ["csv", "xlsx"])
async def test_export_then_upsert_of_the_export_reports_every_row_unchanged(
    client, alice_headers, study, sheet_format
):
    rows = good_rows(2_500)  # more than one export page
    rows[0][2:] = ["tumour", "", "", "", ""]
    content = csv_bytes(
        [[*HEADER, "label", "frozen_at"], *([*row, "AB", "2026-11-20T10:00:00+02:00"] for row in rows)]
    )
    assert (await upload(client, study, alice_headers, content)).status_code == 201

    export = await client.get(
        study_url(study, "samples", "export"), params={"format": sheet_format}, headers=alice_headers
    )
    assert export.status_code == 200
    again = await upload(
        client, study, alice_headers, export.content, filename=f"export.{sheet_format}", mode="upsert"
    )

    assert again.status_code == 201, again.text
    report = again.json()["report"]
    assert (report["rows"], report["unchanged"], report["created"], report["updated"]) == (2_500, 2_500, 0, 0)


async def test_csv_export_lists_samples_in_sample_id_order_with_typed_values(client, alice_headers, study):
    content = csv_bytes(
        [
            ["sample_id", "tissue", "volume [mL]", "fasting"],
            ["B", "blood", "1,5", "no"],
            ["A", "saliva", "", ""],
        ]
    )
    await upload(client, study, alice_headers, content)

    export = await client.get(study_url(study, "samples", "export"), headers=alice_headers)

    lines = csv_lines(export)
    assert lines[0].split(",") == TEMPLATE_HEADERS
    assert lines[1:] == ["A,registered,saliva,,,,,,", "B,registered,blood,1.5,,,false,,"]
