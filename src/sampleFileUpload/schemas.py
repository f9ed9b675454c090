"""The JSON contract of sample files: the record and its import report."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from src.sampleFileUpload.constants import (
    ERRORS_FILE_UPLOAD_MULTIPLE,
    MAX_REPORT_ERRORS,
    MAX_REPORT_TEXT,
    DateOrder,
    DecimalMark,
    ImportMode,
    SampleFileStatus,
    SheetFormat,
)

REPORT_EXAMPLE = {
    "rows": 3,
    "created": 0,
    "updated": 0,
    "unchanged": 0,
    "rejected": 1,
    "columns": [
        {"header": "sample_id", "field": "sample_id"},
        {"header": "volume [mL]", "field": "volume"},
    ],
    "errors": [
        {
            "row": 3,
            "column": "volume [mL]",
            "value": "-1",
            "code": "below_min",
            "message": "must be at least 0",
        }
    ],
    "errors_total": 1,
    "column_errors": 0,
    "errors_truncated": False,
    "errors_file_truncated": False,
    "dialect": {"delimiter": ";", "decimal_mark": ",", "date_order": "dmy", "na_values": ["N/A", "NA"]},
}


class ReportColumn(BaseModel):
    header: str = Field(description="the header as written in the file")
    field: str | None = Field(
        description="the field it was matched to (`sample_id`, `status` or a field name)"
    )


class ReportError(BaseModel):
    row: int = Field(
        description="the row as your spreadsheet numbers it: the header is row 1, unless blank lines "
        "come before it"
    )
    column: str | None = Field(description="the header of the column, as written in the file")
    value: Any = Field(description="the cell's value as read")
    code: str = Field(description="a stable code, such as `required`, `below_min`, `duplicate_in_file`")
    message: str


class ReportDialect(BaseModel):
    """How the file's cells were read (and how its errors.csv is written back)."""

    delimiter: str | None = Field(description="a CSV or TSV file's delimiter; null for a workbook")
    decimal_mark: DecimalMark = Field(
        description="the upload's `decimal_mark`; else `,` for a file separated by semicolons, `.` otherwise"
    )
    date_order: DateOrder | None = Field(
        description="the upload's `date_order`; else the order the file's dates were read in when they "
        "agree (dotted dates are day-first), null when none needed one or they differ by column"
    )
    na_values: list[str] = Field(description="the cells read as empty (the upload's `na_values`)")


class ImportReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": REPORT_EXAMPLE})

    rows: int = Field(description="data rows read (blank rows are skipped)")
    created: int
    updated: int
    unchanged: int
    rejected: int = Field(description="rows with at least one error")
    columns: list[ReportColumn]
    errors: list[ReportError] = Field(
        description=f"the first {MAX_REPORT_ERRORS}, each cell value and header cut to {MAX_REPORT_TEXT} "
        "characters (the last one `…`); errors.csv has them all, as read"
    )
    errors_total: int = Field(description="every error, of rows and of columns")
    column_errors: int = Field(
        default=0,
        description="of `errors_total`, the errors of whole columns (a missing, unknown or duplicated "
        "column, an `ambiguous_date` column, values without a header), reported on the header row and "
        "counted apart from the rows' errors: a file may be refused for its columns alone",
    )
    errors_truncated: bool = Field(description="more errors than `errors` lists")
    errors_file_truncated: bool = Field(
        default=False,
        description="errors.csv stops before the last errors: it keeps at most "
        f"{ERRORS_FILE_UPLOAD_MULTIPLE} times the upload's size (plus 1 MB), and this file had more",
    )
    dialect: ReportDialect | None = Field(default=None, description="null in reports made before it was kept")


class ReportCounts(BaseModel):
    """A report's counts, as a listing of files gives them (the file's own record has the report)."""

    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors_total: int
    column_errors: int = 0


class ImportProgress(BaseModel):
    rows_read: int = Field(
        description="data rows read so far (written at least every IMPORT_PROGRESS_SECONDS)"
    )
    rows_total: int | None = Field(
        description="for display only: while importing, the file's rows after its header (blank ones too) "
        "as far as known before reading it (an XLSX sheet's dimension, a CSV/TSV file's records counted), "
        "at most MAX_UPLOAD_ROWS, else null; once finished, the data rows read"
    )


class ImportFailure(BaseModel):
    """Why an import failed: the problem the upload would have answered had it waited for it."""

    status: int = Field(description="the HTTP status that problem has")
    code: str = Field(description="its stable code (`STUDY_BUSY`, `IMPORT_TIMED_OUT`, `IMPORT_FAILED`, ...)")
    title: str
    detail: str
    errors: list[dict[str, Any]] | None = Field(default=None, description="its per-item errors, if any")


STATUS_DESCRIPTION = (
    "`queued` (stored, waiting for its import), `importing`, then one of: `imported`, `rejected` (nothing "
    "imported; `report` says why), `failed` (nothing imported; `failure` says why), `cancelled`"
)


class SampleFileFields(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    study_id: uuid.UUID
    filename: str = Field(description="as sent, cleaned of any path and control characters; for display only")
    size_bytes: int
    sha256: str
    format: SheetFormat
    encoding: str | None = Field(description="the text encoding a CSV or TSV file was read in")
    status: SampleFileStatus = Field(description=STATUS_DESCRIPTION)
    mode: ImportMode
    uploaded_by: uuid.UUID | None
    created_at: datetime
    progress: ImportProgress
    started_at: datetime | None = Field(default=None, description="when its import began (the last attempt)")
    finished_at: datetime | None = Field(default=None, description="when its import ended, whichever way")
    failure: ImportFailure | None = Field(default=None, description="set when `status` is `failed`")
    cancel_requested: bool = Field(
        default=False, description="a cancel was asked; a running import stops at its next progress point"
    )
    duplicate_of: uuid.UUID | None = Field(
        default=None,
        description="set when this upload had the same content as a file already imported into the study "
        "and importing it again would change nothing: that file's record is returned and nothing was "
        "imported again",
    )
    same_content_as: uuid.UUID | None = Field(
        default=None,
        description="the latest earlier import of the same content into the study, when this one was "
        "imported (or rejected) anyway because the study's samples had changed since (that record may "
        "have been deleted since)",
    )


class SampleFileRead(SampleFileFields):
    report: ImportReport | None = Field(description="null until the import has read the whole file")

    @field_validator("report", mode="before")
    @classmethod
    def no_report_yet(cls, value: Any) -> Any:
        return value or None  # a queued, running, failed or cancelled import's record keeps {}


class SampleFileListed(SampleFileFields):
    report: ReportCounts = Field(
        description="the report's counts; the file's own record (`GET /sample-files/{id}`) has its errors"
    )

    @classmethod
    def of(cls, record: object, report_counts: dict[str, int]) -> "SampleFileListed":
        """From a record loaded without its report (reading it would load it) and the report's counts."""
        fields = SampleFileFields.model_validate(record).model_dump()
        return cls(**fields, report=ReportCounts(**report_counts))


class DryRunRead(BaseModel):
    """What the import would do; nothing was written or stored."""

    # Every key is always in the answer: documented as required, `dry_run` tells it from a file's record.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    dry_run: Literal[True] = Field(default=True, description="always true: nothing was written or stored")
    filename: str
    size_bytes: int
    sha256: str
    format: SheetFormat
    encoding: str | None
    mode: ImportMode
    report: ImportReport
    duplicate_of: uuid.UUID | None = Field(
        default=None,
        description="This content was already imported into the study as that file, and importing it "
        "again would change nothing: the upload itself would answer 200 with that record; `report` is its "
        "report.",
    )
    same_content_as: uuid.UUID | None = Field(
        default=None,
        description="This content was already imported into the study as that file, but the study's "
        "samples have changed since: the upload would import it again, as `report` says.",
    )
