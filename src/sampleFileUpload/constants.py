"""Error codes, report codes, states and limits of the sample-file module."""

from enum import StrEnum

from src.study.constants import ValueErrorCode


class ErrorCode(StrEnum):
    SAMPLE_FILE_NOT_FOUND = "SAMPLE_FILE_NOT_FOUND"
    SAMPLE_FILE_REJECTED = "SAMPLE_FILE_REJECTED"
    SAMPLE_FILE_NOT_DELETABLE = "SAMPLE_FILE_NOT_DELETABLE"
    UPLOAD_TOO_LARGE = "UPLOAD_TOO_LARGE"
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    UNREADABLE_FILE = "UNREADABLE_FILE"
    MALFORMED_UPLOAD = "MALFORMED_UPLOAD"
    IMPORT_TIMED_OUT = "IMPORT_TIMED_OUT"
    TOO_MANY_IMPORTS = "TOO_MANY_IMPORTS"
    IMPORTS_BUSY = "IMPORTS_BUSY"
    EXPORT_TOO_LARGE = "EXPORT_TOO_LARGE"
    IMPORT_FINISHED = "IMPORT_FINISHED"
    IMPORT_FAILED = "IMPORT_FAILED"
    IMPORT_CANCELLED = "IMPORT_CANCELLED"


class ReportCode(StrEnum):
    """Why a cell, row or column of a file was refused: stable strings, one per kind of mistake.

    The value codes are the study module's (`required`, `not_an_integer`, ...), so a cell and a
    sample sent as JSON are refused with the same words.
    """

    REQUIRED = ValueErrorCode.REQUIRED.value
    NOT_TEXT = ValueErrorCode.NOT_TEXT.value
    NOT_AN_INTEGER = ValueErrorCode.NOT_AN_INTEGER.value
    NOT_A_NUMBER = ValueErrorCode.NOT_A_NUMBER.value
    NOT_A_BOOLEAN = ValueErrorCode.NOT_A_BOOLEAN.value
    NOT_A_DATE = ValueErrorCode.NOT_A_DATE.value
    NOT_A_DATETIME = ValueErrorCode.NOT_A_DATETIME.value
    BELOW_MIN = ValueErrorCode.BELOW_MIN.value
    ABOVE_MAX = ValueErrorCode.ABOVE_MAX.value
    NOT_A_CHOICE = ValueErrorCode.NOT_A_CHOICE.value
    PATTERN_MISMATCH = ValueErrorCode.PATTERN_MISMATCH.value
    TOO_LONG = ValueErrorCode.TOO_LONG.value
    INVALID_TEXT = ValueErrorCode.INVALID_TEXT.value
    UNKNOWN_FIELD = ValueErrorCode.UNKNOWN_FIELD.value
    DUPLICATE_IN_FILE = "duplicate_in_file"
    ALREADY_EXISTS = "already_exists"
    UNKNOWN_COLUMN = "unknown_column"
    MISSING_COLUMN = "missing_column"
    DUPLICATE_COLUMN = "duplicate_column"
    UNIT_MISMATCH = "unit_mismatch"
    # Every slash date of a column could be day-first or month-first, and the upload gave no date_order.
    AMBIGUOUS_DATE = "ambiguous_date"


class ImportMode(StrEnum):
    INSERT = "insert"
    UPSERT = "upsert"


class SampleFileStatus(StrEnum):
    """Where a file's import is: waiting, running, or finished one of four ways."""

    QUEUED = "queued"
    IMPORTING = "importing"
    IMPORTED = "imported"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED_STATUSES = frozenset({SampleFileStatus.QUEUED, SampleFileStatus.IMPORTING})


class ImportRunner(StrEnum):
    """IMPORT_RUNNER: who runs the import jobs."""

    PROCESS = "process"  # the API process that took the upload, as a task beside its requests
    QUEUE = "queue"  # the job queue's workers (`python main.py worker`; PostgreSQL only)


class SheetFormat(StrEnum):
    CSV = "csv"
    TSV = "tsv"
    XLSX = "xlsx"


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


# Spreadsheet dialects (issue 18): how files are read, and how CSV files are written back.


class DateOrder(StrEnum):
    """How a slash date's parts are ordered (the upload's `date_order` form field)."""

    DMY = "dmy"
    MDY = "mdy"
    YMD = "ymd"


class DecimalMark(StrEnum):
    """A file's one decimal mark (the upload's `decimal_mark` form field)."""

    POINT = "."
    COMMA = ","


class CsvDialect(StrEnum):
    """How a CSV template, export or errors.csv is written (the `dialect` query parameter)."""

    EXCEL = "excel"  # comma, `.` decimals, ISO dates, UTF-8 with BOM
    EXCEL_EU = "excel-eu"  # semicolon, `,` decimals, DD.MM.YYYY dates, UTF-8 with BOM


# Booleans in files, case-insensitive after trimming: what Excel and LibreOffice write in most locales.
BOOLEAN_TRUE_SPELLINGS = ("true", "yes", "y", "1", "wahr", "ja", "vrai", "oui", "sí", "si")
BOOLEAN_FALSE_SPELLINGS = ("false", "no", "n", "0", "falsch", "nein", "faux", "non")
# Cells read as empty unless the upload's `na_values` says otherwise (`na_values=` turns it off).
DEFAULT_NA_VALUES = ("NA", "N/A", "n/a", "#N/A", "NULL", "null")


# The built-in columns of every sample, as their headers read (matched trimmed and case-folded).
SAMPLE_ID_COLUMN = "sample_id"
STATUS_COLUMN = "status"
# The first cell of the description row of a CSV template: a row starting with it is not a sample.
TEMPLATE_DESCRIPTION_MARKER = "# description"
TEMPLATE_FIELDS_SHEET = "fields"
SAMPLES_SHEET = "samples"
# The columns errors.csv adds in front of a rejected row's cells. No field name can start with "#",
# so an upload ignores these two columns: the fixed rows of errors.csv can be uploaded as they are.
ERRORS_ROW_COLUMN = "# row"
ERRORS_TEXT_COLUMN = "# errors"

# A report lists this many errors; the stored errors file has all of them (up to its bound).
MAX_REPORT_ERRORS = 1_000
# In a report, a cell's value and a column's header are cut to this many characters: a report is
# stored and served with every listing of its file, and must stay small whatever the file held.
MAX_REPORT_TEXT = 200
# The stored errors file (errors.csv) keeps the errors up to this multiple of the upload's size
# (plus ERRORS_FILE_MIN_BYTES); past it the report says `errors_file_truncated`.
ERRORS_FILE_UPLOAD_MULTIPLE = 4
ERRORS_FILE_MIN_BYTES = 1024 * 1024
# Rows validated, looked up and written together: one IN (...) look-up and one multi-row INSERT each.
IMPORT_BATCH_ROWS = 2_000
# Samples read per query when exporting.
EXPORT_PAGE_ROWS = 2_000
FILENAME_MAX_LENGTH = 255
# A header cell longer than this names no field (a field name has at most 64 characters and a unit
# 50, written `name [unit]`): the file is refused instead of echoing the text in its report.
HEADER_MAX_LENGTH = 200
# The characters of one row: a CSV record (its lines, when quoted cells span several), or the text of
# an XLSX row's cells. A row of the widest study (200 fields) with long notes fits; the reader never
# builds a longer one (a line of a million commas would be a million cells).
MAX_ROW_CHARS = 1024 * 1024
# The request body is read in chunks; a multipart form field other than the file is this small.
MAX_FORM_FIELD_BYTES = 100
# The body may exceed the file by its multipart framing and the small fields.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_FIELD_FILE = "file"
UPLOAD_FIELD_MODE = "mode"
UPLOAD_FIELD_DRY_RUN = "dry_run"
UPLOAD_FIELD_DATE_ORDER = "date_order"
UPLOAD_FIELD_DECIMAL_MARK = "decimal_mark"
UPLOAD_FIELD_NA_VALUES = "na_values"

# Spreadsheet formula injection: text starting with one of these is written with the GUARD
# apostrophe in front (writers.py), and the reader takes exactly one GUARD off again (readers.py).
FORMULA_TRIGGERS = "=+-@\t\r"
GUARD = "'"


# `python main.py prune`: a temporary file, or a stored file no record names, is left over from a
# worker killed mid-upload (or between storing a file and committing its record) once it is older
# than this; a live upload's files are always younger.
ORPHAN_FILE_GRACE_HOURS = 24
# The job queue's name for import jobs (src/job_queue.py), and its queue of their own.
IMPORTS_QUEUE = "imports"
# A queued import's priority in the job queue: highest for a user's first upload waiting, one lower
# for each upload of theirs already waiting, so one user's burst queues behind everyone else's.
IMPORT_PRIORITY_FIRST = 0
IMPORT_PRIORITY_FLOOR = -1000
