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
    detail = "Only a rejected file, or an imported one whose samples have all been deleted, can be deleted."


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
