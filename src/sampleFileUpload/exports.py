"""Sheets out of a study: its template and its samples, as CSV or XLSX, streamed as they are written.

An export reads the study's samples a page of EXPORT_PAGE_ROWS at a time, each page in a short
session of its own, while the sheet is being sent: the first bytes leave before the first page is
read, memory holds one page and one chunk however large the study, and no connection is held
between pages. The chunks are pulled by the response (Starlette runs a sync iterator in a worker
thread, chunk by chunk): a client that goes away is asked for nothing more, so no more pages are read.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
from sqlalchemy import select

from src.database import SessionFactory
from src.sampleFileUpload import writers
from src.sampleFileUpload.constants import (
    EXPORT_PAGE_ROWS,
    SAMPLE_ID_COLUMN,
    SAMPLES_SHEET,
    STATUS_COLUMN,
    TEMPLATE_DESCRIPTION_MARKER,
    TEMPLATE_FIELDS_SHEET,
)
from src.sampleFileUpload.exceptions import ExportTooLarge
from src.study.constants import SampleStatus
from src.study.models import Sample, Study
from src.study.sample_validation import SampleField, SampleValidator

# ---------------------------------------------------------------------------------------------
# The template


def header_of(definition: SampleField) -> str:
    return f"{definition.name} [{definition.unit}]" if definition.unit else definition.name


def headers_of(validator: SampleValidator) -> list[str]:
    return [SAMPLE_ID_COLUMN, STATUS_COLUMN, *(header_of(definition) for definition in validator.fields)]


def describe_field(definition: SampleField) -> str:
    """One line a researcher reads in the template: type, whether required, constraints, description."""
    parts = [str(definition.type), "required" if definition.required else "optional"]
    if definition.min is not None:
        parts.append(f"min {definition.min}")
    if definition.max is not None:
        parts.append(f"max {definition.max}")
    if definition.max_length is not None:
        parts.append(f"at most {definition.max_length} characters")
    if definition.pattern is not None:
        parts.append(f"pattern {definition.pattern}")
    if definition.choices is not None:
        parts.append("one of: " + ", ".join(definition.choices))
    if definition.unit:
        parts.append(f"in {definition.unit}")
    if definition.description:
        parts.append(definition.description)
    return "; ".join(parts)


_SAMPLE_ID_DESCRIPTION = "text, required; unique in the study (compared trimmed and case-insensitively)"
_STATUS_DESCRIPTION = "optional; one of: " + ", ".join(SampleStatus) + " (registered when left empty)"


def template_rows(validator: SampleValidator, *, with_description_row: bool) -> list[list[object]]:
    headers = headers_of(validator)
    if not with_description_row:
        return [headers]
    descriptions = [TEMPLATE_DESCRIPTION_MARKER, _STATUS_DESCRIPTION, *map(describe_field, validator.fields)]
    return [headers, descriptions]


def field_rows(validator: SampleValidator) -> list[list[object]]:
    """The XLSX template's second sheet: one row per column."""
    return [
        ["column", "description"],
        [SAMPLE_ID_COLUMN, _SAMPLE_ID_DESCRIPTION],
        [STATUS_COLUMN, _STATUS_DESCRIPTION],
        *([header_of(definition), describe_field(definition)] for definition in validator.fields),
    ]


def template_csv(validator: SampleValidator) -> Iterator[bytes]:
    return writers.csv_chunks(template_rows(validator, with_description_row=True))


def template_xlsx(validator: SampleValidator) -> Iterator[bytes]:
    return writers.xlsx_chunks(
        [
            (SAMPLES_SHEET, template_rows(validator, with_description_row=False)),
            (TEMPLATE_FIELDS_SHEET, field_rows(validator)),
        ]
    )


# ---------------------------------------------------------------------------------------------
# The export


async def _export_page(study_id: uuid.UUID, after: str | None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One page of a study's samples in sample_id order, read in a short session of its own."""
    query = select(Sample.sample_id_normalized, Sample.sample_id, Sample.status, Sample.values).where(
        Sample.study_id == study_id
    )
    if after is not None:
        query = query.where(Sample.sample_id_normalized > after)
    async with SessionFactory() as session:
        rows = await session.execute(query.order_by(Sample.sample_id_normalized).limit(EXPORT_PAGE_ROWS))
        return [tuple(row) for row in rows]


def export_rows(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[list[object]]:
    """Header then every sample, a page at a time. Runs in a worker thread: each page is read on the
    event loop (anyio.from_thread), only when the rows before it have been taken."""
    names = validator.field_names
    yield headers_of(validator)
    after: str | None = None
    while True:
        page = anyio.from_thread.run(_export_page, study_id, after)
        for _normalized, sample_id, status, values in page:
            yield [sample_id, status, *(values.get(name) for name in names)]
        if len(page) < EXPORT_PAGE_ROWS:
            return
        after = page[-1][0]


def export_csv(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[bytes]:
    return writers.csv_chunks(export_rows(study_id, validator))


def check_fits_a_worksheet(study: Study) -> None:
    """An XLSX export of more samples than a worksheet has rows is refused before it starts, not cut
    short halfway through (the count is the study's maintained counter)."""
    if study.sample_count + 1 > writers.MAX_XLSX_ROWS:  # the header is a row too
        raise ExportTooLarge(
            f"An XLSX worksheet holds at most {writers.MAX_XLSX_ROWS - 1:,} samples and this study has "
            f"{study.sample_count:,}: export it as CSV."
        )


def export_xlsx(study_id: uuid.UUID, validator: SampleValidator) -> Iterator[bytes]:
    return writers.xlsx_chunks([(SAMPLES_SHEET, export_rows(study_id, validator))])
