"""rows_total while an import runs: an XLSX sheet's `<dimension>` (a claim of the file: clamped,
for display only) and a CSV or TSV file's records counted in a quick pass over its bytes."""

import io
from collections.abc import Iterator

import pytest

from src.sampleFileUpload import readers
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import IMPORT_BATCH_ROWS
from tests.sampleFileUpload.conftest import HEADER, good_rows, upload
from tests.sampleFileUpload.files import csv_bytes, with_sheet_xml, xlsx_bytes
from tests.sampleFileUpload.test_import_jobs import (
    RESPOND_ASYNC,
    THREE_BATCHES,
    PausedAtProgress,
    record_until,
)


@pytest.fixture
def paused(monkeypatch) -> Iterator[PausedAtProgress]:
    imports = PausedAtProgress(monkeypatch)
    yield imports
    imports.resume()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(rows: int, *, dimension: bytes | None) -> bytes:
    """A workbook of `rows` samples whose sheet's `<dimension>` says `dimension` (None: has none)."""
    written = xlsx_bytes([HEADER, *good_rows(rows)])

    def edit(xml: bytes) -> bytes:
        start = xml.index(b"<dimension ")
        end = xml.index(b"/>", start) + 2
        return (
            xml[:start] + (b'<dimension ref="%s"/>' % dimension if dimension is not None else b"") + xml[end:]
        )

    return with_sheet_xml(written, edit)


async def progress_while_running(
    client, headers, study, paused, content: bytes, ending: str = "imported", **kwargs
) -> tuple[dict, dict]:
    """The record's progress at the import's first batch, then once it is finished."""
    response = await upload(client, study, {**headers, **RESPOND_ASYNC}, content, **kwargs)
    assert response.status_code == 202, response.text
    await paused.wait_until_paused()
    running = (await client.get(response.headers["location"], headers=headers)).json()
    assert running["status"] == "importing"
    paused.resume()
    done = await record_until(client, headers, response.headers["location"], statuses={ending})
    return running["progress"], done["progress"]


@pytest.mark.parametrize(
    ("dimension", "while_running"),
    [
        (b"A1:G%d" % (THREE_BATCHES + 1), THREE_BATCHES),  # the header row, then the data rows
        (None, None),  # no dimension: not known until the end
        (b"A1:G5", 4),  # a lying claim is shown as it is (for display only), the import unchanged
        (b"A1:G9999999999", "max"),  # past MAX_UPLOAD_ROWS: at most that
        (b"nonsense", None),
    ],
)
async def test_an_xlsx_import_shows_the_rows_its_dimension_claims(
    client,
    alice_headers,
    study,
    paused,
    monkeypatch,
    dimension,
    while_running,
):
    monkeypatch.setattr(upload_settings, "MAX_UPLOAD_ROWS", 100_000)
    expected = upload_settings.MAX_UPLOAD_ROWS if while_running == "max" else while_running
    content = workbook(THREE_BATCHES, dimension=dimension)

    running, done = await progress_while_running(
        client, alice_headers, study, paused, content, filename="s.xlsx", content_type=XLSX
    )

    assert running == {"rows_read": IMPORT_BATCH_ROWS, "rows_total": expected}
    assert done == {"rows_read": THREE_BATCHES, "rows_total": THREE_BATCHES}


def csv_with_line_breaks_in_cells() -> bytes:
    rows = good_rows(THREE_BATCHES)
    for row in rows[::100]:
        row[2] = "blood\nsecond line\r\nthird"  # no tissue's name: the file is rejected, after a full read
    return csv_bytes([HEADER, *rows], newline="\n")


@pytest.mark.parametrize(
    ("content", "ending", "while_running"),
    [
        # Records counted, not the line ends in quoted cells.
        (csv_with_line_breaks_in_cells(), "rejected", THREE_BATCHES),
        # UTF-16 line ends are not single bytes: not counted, known at the end.
        (csv_bytes([HEADER, *good_rows(THREE_BATCHES)], encoding="utf-16"), "imported", None),
    ],
    ids=["line-breaks-in-cells", "utf-16"],
)
async def test_a_csv_import_shows_its_records_counted_before_reading(
    client, alice_headers, study, paused, content, ending, while_running
):
    running, done = await progress_while_running(client, alice_headers, study, paused, content, ending=ending)

    assert running == {"rows_read": IMPORT_BATCH_ROWS, "rows_total": while_running}
    assert done == {"rows_read": THREE_BATCHES, "rows_total": THREE_BATCHES}


@pytest.mark.parametrize(
    ("content", "records"),
    [
        (b"a,b\r\n1,2\r\n", 2),
        (b"a,b\n1,2", 2),  # no line end after the last
        (b"a\r1\r2\r", 3),  # lone CRs, as the CSV reader takes them
        (b'a,b\n"x\r\ny,""z""",2\n3,4\n', 3),  # a cell's line end and doubled quotes
        (b"\n\na\n1\n", 4),  # blank lines count (as rows do)
        (b'a\n"unclosed\n1\n', None),  # quotes that do not pair up: unknown
        (b"", 0),
    ],
)
def test_count_records(content, records):
    assert readers.count_records(io.BytesIO(content)) == records


def test_count_records_keeps_a_crlf_split_between_chunks_one_line_end(monkeypatch):
    monkeypatch.setattr(readers, "SCAN_CHUNK_BYTES", 4)
    assert readers.count_records(io.BytesIO(b'a,b\r\n"c\r\nd"\r\n1,2\r\n')) == 3
