"""The template and the export: the study's columns out, and an export re-uploaded changes nothing;
the export streamed as it is read, and stopped when the client goes away."""

import asyncio
import io
import random
import string
import uuid

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert, update

from src.database import SessionFactory, utcnow
from src.sampleFileUpload import exports, writers
from src.study.models import Sample, Study
from src.study.sample_validation import normalize_sample_id
from tests import asgi
from tests.asgi import OneRequest, assert_logged_as_a_hang_up
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import HEADER, csv_bytes, good_rows, upload
from tests.study.conftest import study_url

request_log = asgi.request_log

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


@pytest.mark.parametrize(
    ("sheet_format", "dialect"),
    [
        ("csv", "excel"),
        ("csv", "excel-eu"),
        ("xlsx", None),
    ],
)
async def test_export_then_upsert_of_the_export_reports_every_row_unchanged(
    client, alice_headers, study, sheet_format, dialect
):
    rows = good_rows(2_500)  # more than one export page
    rows[0][2:] = ["tumour", "", "", "", ""]
    rows[1][3] = "1.234"  # in excel-eu 1,234: a decimal comma, not a thousands separator
    content = csv_bytes(
        [[*HEADER, "label", "frozen_at"], *([*row, "AB", "2026-11-20T10:00:00+02:00"] for row in rows)]
    )
    assert (await upload(client, study, alice_headers, content)).status_code == 201

    params = {"format": sheet_format, **({"dialect": dialect} if dialect else {})}
    export = await client.get(study_url(study, "samples", "export"), params=params, headers=alice_headers)
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
            ["B", "blood", "1.5", "no"],
            ["A", "saliva", "", ""],
        ]
    )
    await upload(client, study, alice_headers, content)

    export = await client.get(study_url(study, "samples", "export"), headers=alice_headers)

    lines = csv_lines(export)
    assert lines[0].split(",") == TEMPLATE_HEADERS
    assert lines[1:] == ["A,registered,saliva,,,,,,", "B,registered,blood,1.5,,,false,,"]


async def test_xlsx_export_is_an_attachment_of_the_spreadsheet_type(client, alice_headers, study):
    response = await client.get(
        study_url(study, "samples", "export"), params={"format": "xlsx"}, headers=alice_headers
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX_TYPE
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{study.code}-samples.xlsx"'
    )
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    assert workbook.sheetnames == ["samples"]
    assert [cell.value for cell in next(workbook["samples"].iter_rows())] == TEMPLATE_HEADERS


# ---------------------------------------------------------------------------------------------
# Streamed (issue 16, finding 7): the first bytes before the rows are all read, and a client that
# goes away stops the reading


PAGE_ROWS = 100
SAMPLES = 3_000
# Varied enough that the sheet does not compress into a single chunk.
LABELS = ["".join(random.choices(string.ascii_uppercase, k=10)) for _ in range(500)]


async def seed_samples(study, count: int) -> None:
    """`count` samples straight into the table (an export reads only the table)."""
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "study_id": study.id,
            "sample_id": f"S-{number:06d}",
            "sample_id_normalized": normalize_sample_id(f"S-{number:06d}"),
            "status": "registered",
            "values": {"tissue": "blood", "volume": number % 90 + 0.5, "label": random.choice(LABELS)},
            "created_at": now,
            "updated_at": now,
        }
        for number in range(1, count + 1)
    ]
    async with SessionFactory() as session:
        await session.execute(insert(Sample), rows)
        await session.execute(update(Study).where(Study.id == study.id).values(sample_count=count))
        await session.commit()


@pytest.fixture
def pages_read(monkeypatch) -> list[str | None]:
    """The export's page reads as they start (the sample_id each reads after). Counted where the
    export reads a page, not from SQLAlchemy's statement events: on PostgreSQL a page's query goes
    through the driver's own cursor."""
    started: list[str | None] = []
    read_page = exports._export_page

    async def noted(study_id, after):
        started.append(after)
        return await read_page(study_id, after)

    monkeypatch.setattr(exports, "_export_page", noted)
    return started


@pytest.fixture
async def big_study(study, monkeypatch):
    """A study of SAMPLES samples whose export reads pages of PAGE_ROWS, sent in small chunks."""
    monkeypatch.setattr(exports, "EXPORT_PAGE_ROWS", PAGE_ROWS)
    monkeypatch.setattr(writers, "CSV_CHUNK_CHARS", 4096)
    monkeypatch.setattr(writers, "XLSX_CHUNK_BYTES", 4096)
    await seed_samples(study, SAMPLES)
    return study


def export_path(study) -> str:
    return study_url(study, "samples", "export")


async def test_xlsx_export_sends_its_first_bytes_before_it_reads_the_samples(
    app, alice_headers, big_study, pages_read, monkeypatch
):
    pages_at_chunk: list[int] = []

    sent = await OneRequest(on_chunk=lambda _number: pages_at_chunk.append(len(pages_read)))(
        app, "GET", export_path(big_study), headers=alice_headers, query="format=xlsx"
    )

    assert sent.status == 200
    assert pages_at_chunk[0] == 0
    # Chunk after chunk as the pages are read, never the whole workbook at once.
    assert pages_at_chunk[1] < SAMPLES // PAGE_ROWS
    assert len(set(pages_at_chunk)) >= 3
    assert len(pages_read) == SAMPLES // PAGE_ROWS + 1  # the last page is the empty one
    workbook = load_workbook(io.BytesIO(sent.body), read_only=True)
    rows = list(workbook["samples"].iter_rows(values_only=True))
    assert len(rows) == SAMPLES + 1
    assert rows[1][:4] == ("S-000001", "registered", "blood", 1.5)


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
@pytest.mark.parametrize("sheet_format", ["csv", "xlsx"])
async def test_a_client_gone_mid_export_stops_the_reading_and_is_no_error(
    app, alice_headers, big_study, pages_read, request_log, sheet_format, spec_version
):
    pages_when_told: list[int] = []
    request = OneRequest(
        hang_up_after_chunks=2,
        spec_version=spec_version,
        on_hang_up_told=lambda: pages_when_told.append(len(pages_read)),
    )
    headers = {**alice_headers, "X-Request-ID": "export-left"}

    await request(app, "GET", export_path(big_study), headers=headers, query=f"format={sheet_format}")
    await asyncio.sleep(0.2)  # a page being read when the app was told has landed

    assert request.status == 200
    assert pages_when_told[0] < SAMPLES // PAGE_ROWS
    # The server tells the app when it reads (ASGI 2.3) or sends (2.4) next; after that, at most the
    # page already being read.
    assert len(pages_read) <= pages_when_told[0] + 1
    assert assert_logged_as_a_hang_up(request_log, "export-left")["response_status"] == 200


async def test_an_xlsx_export_of_more_samples_than_a_worksheet_holds_is_refused_before_it_starts(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(writers, "MAX_XLSX_ROWS", 3)
    await seed_samples(study, 3)

    refused = await client.get(export_path(study), params={"format": "xlsx"}, headers=alice_headers)
    as_csv = await client.get(export_path(study), params={"format": "csv"}, headers=alice_headers)

    body = assert_problem(refused, 422, "EXPORT_TOO_LARGE")
    assert "at most 2 samples" in body["detail"]
    assert "CSV" in body["detail"]
    assert len(csv_lines(as_csv)) == 4


async def test_an_xlsx_export_of_as_many_samples_as_a_worksheet_holds_is_sent(
    client, alice_headers, study, monkeypatch
):
    monkeypatch.setattr(writers, "MAX_XLSX_ROWS", 3)
    await seed_samples(study, 2)

    response = await client.get(export_path(study), params={"format": "xlsx"}, headers=alice_headers)

    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    assert len(list(workbook["samples"].iter_rows())) == 3
