"""Routes of sample files: upload and list under a study, read, download and delete one file,
a study's template and its samples as a sheet."""

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from src.constants import API_PREFIX
from src.database import DbSession
from src.dependencies import IdempotencyKey, IfNoneMatch, Pagination, etag_matches, idempotency_key_value
from src.exceptions import (
    IDEMPOTENCY_ERRORS,
    InsufficientStorage,
    PreconditionFailed,
    StorageUnavailable,
    problem_responses,
)
from src.sampleFileUpload import exports, jobs, service, writers
from src.sampleFileUpload.config import upload_settings
from src.sampleFileUpload.constants import (
    DEFAULT_NA_VALUES,
    MAX_FORM_FIELD_BYTES,
    UPLOAD_FIELD_DATE_ORDER,
    UPLOAD_FIELD_DECIMAL_MARK,
    UPLOAD_FIELD_NA_VALUES,
    CsvDialect,
    DateOrder,
    DecimalMark,
    ExportFormat,
    SampleFileStatus,
)
from src.sampleFileUpload.dependencies import (
    CancellableSampleFile,
    DeletableSampleFile,
    FileStorage,
    ReadableSampleFile,
)
from src.sampleFileUpload.exceptions import (
    ExportTooLarge,
    ImportCancelled,
    ImportFailed,
    ImportFinished,
    MalformedUpload,
    SampleFileNotDeletable,
    SampleFileNotFound,
    SampleFileRejected,
    UnreadableFile,
    UnsupportedFileType,
    UploadTooLarge,
)
from src.sampleFileUpload.models import SampleFile
from src.sampleFileUpload.schemas import REPORT_EXAMPLE, DryRunRead, SampleFileListed, SampleFileRead
from src.sampleFileUpload.utils import content_disposition, prefers_respond_async
from src.schemas import SINGLE_LINE_PATTERN, ExactlyOne, Page, page_of
from src.study import samples as study_samples
from src.study.dependencies import ReadableStudy, WritableStudy
from src.study.exceptions import IN_STUDY, TOKEN_ERRORS, WRITE, StudyRoleRequired

router = APIRouter(tags=["sample files"])
IN_FILE = (*TOKEN_ERRORS, SampleFileNotFound)
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A stored CSV or TSV is sent back as it came, in the uploader's encoding: text, charset unknown.
DOWNLOADED_TEXT_MEDIA_TYPE = "text/plain; charset=binary"

DATE_ORDER_DESCRIPTION = (
    "the order of the file's slash dates (14/03/2025, 3/14/2025): dmy, mdy or ymd. Empty or absent: each "
    "date column's order is the one its values settle (a first part above 12 is a day), and a column whose "
    "every date could be either is refused (`ambiguous_date`). ISO dates (2025-03-14) and dotted ones "
    "(14.03.2025, day first) are read whatever it says."
)
DECIMAL_MARK_DESCRIPTION = (
    "the file's one decimal mark, `.` or `,`; the other mark, a space, U+00A0 or U+202F may group "
    "thousands (1.234,5). Empty or absent: `,` for a CSV separated by semicolons, `.` otherwise. A "
    "workbook's number cells are numbers whatever it says."
)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,  # any other part is a 400
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a CSV, TSV or XLSX file",
                        },
                        "mode": {
                            "$ref": "#/components/schemas/ImportMode",
                            "default": "insert",
                            "description": "insert: a sample_id already in the study is an error; upsert: "
                            "existing samples are updated (empty cells leave values as they are)",
                        },
                        "dry_run": {
                            "type": "boolean",
                            "default": False,
                            "description": "check and report only: nothing is written or stored",
                        },
                        UPLOAD_FIELD_DATE_ORDER: {
                            "type": "string",
                            "enum": ["", *(order.value for order in DateOrder)],
                            "default": "",
                            "description": DATE_ORDER_DESCRIPTION,
                        },
                        UPLOAD_FIELD_DECIMAL_MARK: {
                            "type": "string",
                            "enum": ["", *(mark.value for mark in DecimalMark)],
                            "default": "",
                            "description": DECIMAL_MARK_DESCRIPTION,
                        },
                        UPLOAD_FIELD_NA_VALUES: {
                            "type": "string",
                            "maxLength": MAX_FORM_FIELD_BYTES,
                            "pattern": SINGLE_LINE_PATTERN,  # the server refuses control characters
                            "default": ",".join(DEFAULT_NA_VALUES),
                            "description": "comma-separated cell texts read as empty (compared trimmed, "
                            f"case-sensitive), at most {MAX_FORM_FIELD_BYTES} bytes; absent: "
                            f"{', '.join(DEFAULT_NA_VALUES)}; empty: none. A required field left so is "
                            "`required`.",
                        },
                    },
                }
            }
        },
    }
}
REJECTED_EXAMPLE = {
    "type": "urn:studybase:problem:sample-file-rejected",
    "title": "Unprocessable content",
    "status": 422,
    "detail": SampleFileRejected.detail,
    "code": SampleFileRejected.code,
    "request_id": "6f1c2f0d9a1e4f7c8b7a0d3e2c1b0a99",
    "sample_file_id": "0b6f2d56-8a43-4a3c-9a57-5d1f3e0c9a11",
    "report": REPORT_EXAMPLE,
}


def file_url(file_id: object) -> str:
    return f"{API_PREFIX}/sample-files/{file_id}"


def file_read(record: SampleFile) -> SampleFileRead:
    """The record as the API shows it, with this process's newest count of an import it runs."""
    read = SampleFileRead.model_validate(record)
    read.progress.rows_read, read.progress.rows_total = jobs.progress_of(record)
    return read


PreferHeader = Annotated[
    str | None,
    Header(
        max_length=200,
        description="`respond-async` (RFC 7240): answer 202 as soon as the file is stored and queued, "
        "with `Location` of its record (whose `status` and `progress` say where its import is)",
    ),
]
ACCEPTED_DESCRIPTION = (
    "The file is stored and its import queued or running (asked for with `Prefer: respond-async`, or "
    "still running after IMPORT_WAIT_SECONDS): the body is its record, `Location` names it; follow its "
    "`status` and `progress` there"
)


def upload_responses() -> dict:
    responses = problem_responses(
        *WRITE,
        PreconditionFailed,
        MalformedUpload,
        UploadTooLarge,
        UnsupportedFileType,
        UnreadableFile,
        InsufficientStorage,
        StorageUnavailable,
        *IDEMPOTENCY_ERRORS,
    )
    responses[422]["description"] += f"; `{SampleFileRejected.code}`: {SampleFileRejected.detail}"
    responses[422]["content"]["application/json"]["examples"][SampleFileRejected.code] = {
        "summary": SampleFileRejected.detail,
        "value": REJECTED_EXAMPLE,
    }
    responses[200] = {
        "description": "A dry run's report, or the file was already imported (`duplicate_of` is set)",
        "model": Annotated[DryRunRead | SampleFileRead, ExactlyOne()],
    }
    responses[202] = {
        "description": ACCEPTED_DESCRIPTION,
        "model": SampleFileRead,
        "headers": {
            "Location": {"description": "the record", "schema": {"type": "string"}},
            "Preference-Applied": {
                "description": "`respond-async` when asked for",
                "schema": {"type": "string"},
            },
        },
    }
    for problem in (ImportFailed, ImportCancelled):
        responses.setdefault(problem.status_code, problem_responses(problem)[problem.status_code])
    return responses


@router.post(
    "/studies/{study_id}/sample-files",
    status_code=status.HTTP_201_CREATED,
    response_model=SampleFileRead,
    summary="Upload a sheet of samples",
    description="Editors and owners, while the study is `draft` or `active`. Multipart with `file` (CSV, TSV "
    "or XLSX, at most MAX_UPLOAD_MB), `mode`, `dry_run`, and how its cells are written: `date_order`, "
    "`decimal_mark`, `na_values` (dates, numbers, booleans, choices and missing values as Excel and "
    "LibreOffice save them in most locales; the JSON API stays strict). The file is stored and its record "
    "`queued`; its import runs as a job, and the upload waits for it up to IMPORT_WAIT_SECONDS (20 s by "
    "default) and answers as it ended. All or nothing: if any cell is invalid nothing is imported and the "
    "answer is 422 with the full `report` (row and column of each error, the first 1,000) and "
    "`sample_file_id`, the rejected file's record (its `errors.csv` has every error). The same content "
    "already imported into the study answers 200 with that record and `duplicate_of` when importing it "
    "again would change nothing; else it is imported again, its record naming the earlier one in "
    "`same_content_as`. An import that failed answers its problem (409 STUDY_BUSY, 422 IMPORT_TIMED_OUT, "
    "...) with `sample_file_id`: its record says `failed` and why. With `Prefer: respond-async`, or when "
    "the wait runs out, 202 with `Location` of the record. A dry run is answered in the request.",
    responses=upload_responses(),
    openapi_extra=UPLOAD_BODY,
)
async def upload_sample_file(
    request: Request,
    access: WritableStudy,
    db: DbSession,
    storage: FileStorage,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> SampleFileRead | JSONResponse:
    outcome = await service.import_sample_file(
        db,
        access=access,
        stream=request.stream(),
        content_type=request.headers.get("content-type"),
        storage=storage,
        idempotency_key=idempotency_key_value(idempotency_key),
    )
    if outcome.record is None:
        dry_run = DryRunRead(
            filename=outcome.upload.filename,
            size_bytes=outcome.upload.size_bytes,
            sha256=outcome.upload.sha256,
            format=outcome.format,
            encoding=outcome.encoding,
            mode=outcome.upload.mode,
            report=outcome.report,
            duplicate_of=outcome.duplicate_of,
            same_content_as=outcome.same_content_as,
        )
        return JSONResponse(dry_run.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    record = outcome.record
    await jobs.start_import(db, record, storage=storage)
    respond_async = prefers_respond_async(prefer)
    finished = (
        None if respond_async else await jobs.wait_for_import(record.id, upload_settings.IMPORT_WAIT_SECONDS)
    )
    if finished is None:
        return await _accepted(record, respond_async=respond_async)
    return await _answer_finished(db, finished, response)


async def _accepted(record: SampleFile, *, respond_async: bool) -> JSONResponse:
    """202: the record as it is now, and where to follow it."""
    current = await jobs.load_record(record.id) or record
    headers = {"Location": file_url(record.id)}
    if respond_async:
        headers["Preference-Applied"] = "respond-async"
    body = file_read(current).model_dump(mode="json")
    return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED, headers=headers)


async def _answer_finished(
    db: DbSession, record: SampleFile, response: Response
) -> SampleFileRead | JSONResponse:
    """What the upload answered before imports were jobs, from how its import ended."""
    if record.status == SampleFileStatus.REJECTED:
        raise SampleFileRejected(sample_file_id=str(record.id), report=record.report)
    if record.status == SampleFileStatus.FAILED:
        raise ImportFailed.of(record.failure or ImportFailed.problem(), sample_file_id=str(record.id))
    if record.status == SampleFileStatus.CANCELLED:
        raise ImportCancelled.of_file(str(record.id))
    if record.duplicate_of is not None:
        # The import it repeats, as the upload of the same content answered before (if still there).
        earlier = await service.get_sample_file(db, file_id=record.duplicate_of) or record
        read = file_read(earlier)
        read.duplicate_of = record.duplicate_of
        return JSONResponse(read.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    response.headers["Location"] = file_url(record.id)
    return file_read(record)


@router.get(
    "/studies/{study_id}/sample-files",
    response_model=Page[SampleFileListed],
    summary="List a study's sample files",
    description="Any member; newest first, imported and rejected alike. Each file comes with its report's "
    "counts; its own record (`GET /sample-files/{file_id}`) has the report's errors and columns.",
    responses=problem_responses(*IN_STUDY),
)
async def list_sample_files(access: ReadableStudy, page: Pagination, db: DbSession) -> dict:
    files, total, total_is_exact = await service.list_sample_files(db, study=access.study, page=page)
    items = [SampleFileListed.of(item.file, item.report_counts) for item in files]
    for item, listed in zip(items, files, strict=True):
        item.progress.rows_read, item.progress.rows_total = jobs.progress_of(listed.file)
    return page_of(items, total, total_is_exact, page)


@router.get(
    "/sample-files/{file_id}",
    response_model=SampleFileRead,
    summary="One sample file, with its report",
    description="Any member of its study.",
    responses=problem_responses(*IN_FILE),
)
async def read_sample_file(found: ReadableSampleFile) -> SampleFileRead:
    return file_read(found.file)


@router.post(
    "/sample-files/{file_id}/cancel",
    response_model=SampleFileRead,
    summary="Cancel a file's import",
    description="Editors and owners of its study. A queued import is cancelled at once; a running one stops "
    "at its next progress point (within IMPORT_PROGRESS_SECONDS) and rolls back: nothing of the file is "
    "imported. Answers the record, `cancelled`; or 202 with the record still `importing` and "
    "`cancel_requested` if it has not stopped within a few seconds. 409 IMPORT_FINISHED when the import "
    "had already finished (imported, rejected, failed or cancelled).",
    responses={
        202: {"description": "the cancel is asked; the import has not stopped yet", "model": SampleFileRead},
        **problem_responses(*IN_FILE, StudyRoleRequired, ImportFinished),
    },
)
async def cancel_sample_file_import(
    found: CancellableSampleFile, db: DbSession
) -> SampleFileRead | JSONResponse:
    record = await jobs.cancel_import(db, found.file)
    if record.status != SampleFileStatus.CANCELLED:
        return JSONResponse(file_read(record).model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    return file_read(record)


def _etag_of(sha256: str) -> str:
    return f'"{sha256}"'


@router.get(
    "/sample-files/{file_id}/content",
    summary="Download the file as uploaded",
    description="The original bytes, streamed, as an attachment. `ETag` is the SHA-256 of the content; "
    "send it back in `If-None-Match` to get 304 when you have it already. An XLSX file comes as its "
    "spreadsheet type; a CSV or TSV as `text/plain; charset=binary`, since its encoding is the uploader's "
    "(the record's `encoding` says which was read).",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                DOWNLOADED_TEXT_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "the file",
        },
        304: {"description": "unchanged: your copy (If-None-Match) is this file"},
        **problem_responses(*IN_FILE, StorageUnavailable),
    },
)
async def download_sample_file(
    found: ReadableSampleFile,
    storage: FileStorage,
    if_none_match: IfNoneMatch = None,
) -> Response:
    record = found.file
    tag = _etag_of(record.sha256)
    if etag_matches(if_none_match, tag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    media_type = XLSX_MEDIA_TYPE if record.format == "xlsx" else DOWNLOADED_TEXT_MEDIA_TYPE
    chunks = await anyio.to_thread.run_sync(exports.stored_chunks, storage, record.storage_key)
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={
            "ETag": tag,
            "Content-Length": str(record.size_bytes),
            "Content-Disposition": content_disposition(record.filename),
            "X-Content-Type-Options": "nosniff",
        },
    )


# The dialects, as the OpenAPI document and the routes' descriptions explain them.
DIALECTS_TEXT = (
    "`excel` (comma-separated, `.` decimals, ISO dates 2025-03-14 and date-times 2025-03-14T09:30:00Z) or "
    "`excel-eu` (semicolon-separated, `,` decimals, dates 14.03.2025 and date-times 14.03.2025 09:30:00 "
    "in UTC), each UTF-8 with a BOM: what Excel opens as columns in English and in most European locales"
)
_ERRORS_DIALECT_DESCRIPTION = (
    f"how errors.csv is written: {DIALECTS_TEXT}. Without it, as the upload was read: its delimiter "
    "(a TSV upload gives tab-separated values) and decimal mark, in Windows-1252 when the upload was "
    "and every character fits, else UTF-8 with a BOM"
)
_CHARSETS = {"utf-8-sig": "utf-8", "cp1252": "windows-1252"}


def _errors_download(style: writers.CsvStyle) -> tuple[str, str]:
    """The media type and file extension of errors.csv in this style."""
    charset = _CHARSETS[style.encoding]
    if style.delimiter == "\t":
        return f"text/tab-separated-values; charset={charset}", "tsv"
    return f"text/csv; charset={charset}", "csv"


@router.get(
    "/sample-files/{file_id}/errors.csv",
    summary="The rejected rows of a file, with their errors, as CSV",
    description="Each rejected row as it was in the file (same headers, cells as read) behind two columns: "
    "`# row`, its number in the file (the header being row 1), and `# errors`, every error of the row as "
    "`column: message (code)` joined by `; `. Errors of the columns themselves (`unknown_column`, "
    "`missing_column`, ...) are one line with `# row` 1. Text that a spreadsheet would run as a formula is "
    "written with a leading apostrophe. Fix the rows and upload the file as it is: an upload ignores the "
    "`# row` and `# errors` columns. An imported file has no errors: its errors.csv has the header only. "
    "Written in the dialect its upload was read in, unless `dialect` asks for another.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}, "text/tab-separated-values": {}},
            "description": "the errors (tab-separated, named .tsv, for a TSV upload without `dialect`)",
        },
        **problem_responses(*IN_FILE, StorageUnavailable),
    },
)
async def download_errors(
    found: ReadableSampleFile,
    storage: FileStorage,
    dialect: Annotated[CsvDialect | None, Query(description=_ERRORS_DIALECT_DESCRIPTION)] = None,
) -> StreamingResponse:
    record = found.file
    style = await exports.errors_csv_style(storage, record, dialect=dialect)
    media_type, extension = _errors_download(style)
    stem = Path(record.filename).stem or "upload"
    chunks = await anyio.to_thread.run_sync(
        functools.partial(exports.errors_csv, storage, record, style=style)
    )
    return StreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Disposition": content_disposition(f"{stem}-errors.{extension}")},
    )


@router.delete(
    "/sample-files/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a sample file",
    description="Owners, while the study is `draft` or `active`: a rejected file, or an imported one whose "
    "samples have all been deleted (else 409). The stored file and its errors go with the record.",
    responses=problem_responses(*IN_FILE, StudyRoleRequired, SampleFileNotDeletable),
)
async def delete_sample_file(found: DeletableSampleFile, db: DbSession, storage: FileStorage) -> None:
    await service.delete_sample_file(db, file_access=found, storage=storage)


def _sheet_response(chunks: Iterator[bytes], *, filename: str, media_type: str) -> StreamingResponse:
    """A sheet sent as it is written (a sync iterator: Starlette pulls each chunk in a worker thread)."""
    return StreamingResponse(
        chunks, media_type=media_type, headers={"Content-Disposition": content_disposition(filename)}
    )


FormatQuery = Annotated[ExportFormat, Query(alias="format", description="csv or xlsx")]
DialectQuery = Annotated[
    CsvDialect,
    Query(description=f"how a CSV file is written: {DIALECTS_TEXT}. XLSX has typed cells instead"),
]


@router.get(
    "/studies/{study_id}/sample-template",
    summary="An empty sheet with the study's columns",
    description="Any member. The headers the upload expects (units as `volume [mL]`); CSV has a second row "
    "describing each column (its first cell `# description`: skipped on upload, so it can stay), XLSX a "
    "second sheet `fields`: the type, whether required, the constraints, and the spellings an upload "
    "reads (dates such as 14.03.2025, decimal commas, yes/no in several languages, NA). CSV in `dialect`; "
    "in XLSX the date and date-time columns are formatted as dates.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}, "description": "the template"},
        **problem_responses(*IN_STUDY),
    },
)
async def sample_template(
    access: ReadableStudy,
    sheet_format: FormatQuery = ExportFormat.CSV,
    dialect: DialectQuery = CsvDialect.EXCEL,
) -> Response:
    validator = study_samples.validator_of(access.study)
    name = f"{access.study.code}-template"
    if sheet_format is ExportFormat.XLSX:
        return _sheet_response(
            exports.template_xlsx(validator), filename=f"{name}.xlsx", media_type=XLSX_MEDIA_TYPE
        )
    chunks = exports.template_csv(validator, writers.CSV_STYLES[dialect])
    return _sheet_response(chunks, filename=f"{name}.csv", media_type=CSV_MEDIA_TYPE)


@router.get(
    "/studies/{study_id}/samples/export",
    summary="Every sample of the study as a sheet",
    description="Any member; streamed as it is read, in sample_id order, with the template's headers. "
    "Uploading it again in `upsert` mode reports every row unchanged, in either CSV dialect and as XLSX. "
    "CSV in `dialect`; XLSX has real date cells (a date-time with a fraction of a second, or a date "
    "before 1900, as ISO text), numbers and booleans. An XLSX worksheet holds at most 1,048,575 samples: "
    "a larger study exports as CSV only.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}, "description": "the samples"},
        **problem_responses(*IN_STUDY, ExportTooLarge),
    },
)
async def export_samples(
    access: ReadableStudy,
    sheet_format: FormatQuery = ExportFormat.CSV,
    dialect: DialectQuery = CsvDialect.EXCEL,
) -> Response:
    study = access.study
    validator = study_samples.validator_of(study)
    name = f"{study.code}-samples"
    if sheet_format is ExportFormat.XLSX:
        exports.check_fits_a_worksheet(study)
        chunks = exports.export_xlsx(study.id, validator)
        return _sheet_response(chunks, filename=f"{name}.xlsx", media_type=XLSX_MEDIA_TYPE)
    chunks = exports.export_csv(study.id, validator, writers.CSV_STYLES[dialect])
    return _sheet_response(chunks, filename=f"{name}.csv", media_type=CSV_MEDIA_TYPE)
