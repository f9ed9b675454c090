"""Errors of the sample-file module."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from src.exceptions import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
)
from src.sampleFileUpload.constants import ErrorCode


class SampleFileNotFound(NotFound):
    code = ErrorCode.SAMPLE_FILE_NOT_FOUND
    detail = "No such sample file (or you are not a member of its study)."


class SampleFileNotDeletable(Conflict):
    code = ErrorCode.SAMPLE_FILE_NOT_DELETABLE
    detail = (
        "Only a rejected, failed or cancelled file, or an imported one whose samples have all been deleted, "
        "can be deleted (cancel a queued or running import first)."
    )


class UploadTooLarge(PayloadTooLarge):
    code = ErrorCode.UPLOAD_TOO_LARGE
    detail = "The file is larger than the upload limit (MAX_UPLOAD_MB)."


class MalformedUpload(BadRequest):
    code = ErrorCode.MALFORMED_UPLOAD
    detail = "The body must be multipart/form-data with one `file` part (and optional `mode`, `dry_run`)."


class UnsupportedFileType(AppError):
    status_code = 415
    code = ErrorCode.UNSUPPORTED_FILE_TYPE
    title = "Unsupported media type"
    detail = "Send a CSV, TSV or XLSX file."


class UnreadableFile(UnprocessableEntity):
    code = ErrorCode.UNREADABLE_FILE
    detail = "The file could not be read as a sheet of samples."


class ExportTooLarge(UnprocessableEntity):
    code = ErrorCode.EXPORT_TOO_LARGE
    detail = "The study has more samples than an XLSX worksheet holds (1,048,575): export it as CSV."


class SampleFileRejected(UnprocessableEntity):
    """Some rows or columns are invalid: nothing was imported; the body carries the report."""

    code = ErrorCode.SAMPLE_FILE_REJECTED
    detail = "Nothing was imported: some cells are invalid; see `report.errors` (row and column of each)."

    def __init__(self, *, sample_file_id: str | None, report: Mapping[str, Any]) -> None:
        super().__init__()
        self.extensions = {"sample_file_id": sample_file_id, "report": report}


class ImportTimedOut(UnprocessableEntity):
    code = ErrorCode.IMPORT_TIMED_OUT
    detail = (
        "The import took longer than the server allows (IMPORT_MAX_SECONDS) and was stopped: nothing was "
        "imported. Split the file into smaller ones."
    )


class TooManyImports(TooManyRequests):
    code = ErrorCode.TOO_MANY_IMPORTS
    detail = (
        "You have as many imports and dry runs running as one user may (IMPORTS_PER_USER): nothing was "
        "imported. Send this file again when one of them has finished."
    )

    def __init__(self) -> None:
        super().__init__(retry_after_seconds=5)


class ImportsBusy(ServiceUnavailable):
    code = ErrorCode.IMPORTS_BUSY
    detail = "Every import slot of the server is busy: nothing was imported. Send the file again shortly."
    headers = MappingProxyType({"Retry-After": "10"})


class ImportFinished(Conflict):
    code = ErrorCode.IMPORT_FINISHED
    detail = (
        "The file's import has already finished (imported, rejected, failed or cancelled): nothing to cancel."
    )


class ImportCancelled(Conflict):
    """Raised at a running import's progress point once its cancel was asked: it rolls back."""

    code = ErrorCode.IMPORT_CANCELLED
    detail = "The import was cancelled before it finished: nothing was imported."

    @classmethod
    def of_file(cls, sample_file_id: str) -> "ImportCancelled":
        cancelled = cls()
        cancelled.extensions = {"sample_file_id": sample_file_id}
        return cancelled


class ImportFailed(AppError):
    """A job's import that ended `failed`, answered to the upload that waited for it as the import
    itself would have answered inside the request (its status, code, detail and errors)."""

    code = ErrorCode.IMPORT_FAILED
    title = "Import failed"
    detail = (
        "The import failed on the server's side: nothing was imported. Send the file again; if it fails "
        "again, an operator finds the reason in the log (the file's id is in this answer)."
    )

    @classmethod
    def problem(cls, error: AppError | None = None) -> dict[str, Any]:
        """What a record keeps of the error that failed its import (None: one of ours, unforeseen)."""
        source = error if error is not None else cls()
        problem = {
            "status": source.status_code,
            "code": str(source.code),
            "title": source.title,
            "detail": source.detail,
        }
        if source.errors:
            problem["errors"] = [dict(item) for item in source.errors]
        if source.headers and "Retry-After" in source.headers:
            problem["retry_after"] = source.headers["Retry-After"]
        return problem

    @classmethod
    def of(cls, problem: Mapping[str, Any], *, sample_file_id: str) -> "ImportFailed":
        failed = cls(problem.get("detail"), errors=problem.get("errors"))
        failed.status_code = problem.get("status", 500)
        failed.code = problem.get("code", ErrorCode.IMPORT_FAILED)
        failed.title = problem.get("title", cls.title)
        if "retry_after" in problem:
            failed.headers = {"Retry-After": problem["retry_after"]}
        failed.extensions = {"sample_file_id": sample_file_id}
        return failed
