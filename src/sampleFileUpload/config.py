"""Settings of the sample-file module, read from the environment and `.env`."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.config import settings
from src.sampleFileUpload.constants import ImportRunner


class UploadSettings(BaseSettings):
    """Sample-file uploads and imports: the limits of a file, and who runs imports and how long."""

    # use_attribute_docstrings: each setting's docstring is its description in the docs site.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", use_attribute_docstrings=True
    )

    MAX_UPLOAD_MB: int = Field(default=100, ge=1, le=10_000)
    """The largest sample-file upload, in megabytes: the same limit as nginx's client_max_body_size for
    the upload route (compose passes it to both); the app enforces it too (413 as the file streams)."""
    MAX_UPLOAD_ROWS: int = Field(default=2_000_000, ge=1)
    """Rows of a file besides its header row; blank rows count too (they cost reading like any other).
    An XLSX row numbered beyond it is refused as soon as it is seen."""
    MAX_UPLOAD_COLUMNS: int = Field(default=500, ge=1, le=16_384)
    """Columns of a file (cells in any row, empty ones included), checked on every row as it is read,
    the header first. A study has at most 200 fields (+ sample_id, status and the two columns errors.csv
    adds): 500 leaves room for a sheet's own notes columns, and bounds what a row, the report's column
    list and the stored errors can hold."""
    MAX_XLSX_SHARED_STRINGS: int = Field(default=2_000_000, ge=1)
    """Entries of an XLSX workbook's shared strings table (the texts cells refer to by number), checked
    from the ZIP before it is parsed. Each entry read costs about 1.5 microseconds and its text's UTF-8
    bytes + ~5 of memory (measured: the largest table the defaults take, 2,000,000 short entries, 3 s of
    CPU and 24 MB). Excel's largest sheet (1,048,576 rows) with a unique sample_id on every row and
    another unique text on most rows fits."""
    MAX_XLSX_SHARED_STRINGS_MB: int = Field(default=64, ge=1)
    """The uncompressed size in MB of an XLSX workbook's shared strings table, checked from the ZIP
    before it is parsed (see MAX_XLSX_SHARED_STRINGS)."""
    IMPORTS_PER_WORKER: int | None = Field(default=None, ge=1)
    """Imports (and dry runs) one worker process runs at once. Each holds a pooled connection for its
    whole transaction, so by default they may take at most half of DATABASE_POOL_SIZE and reads always
    find one."""
    IMPORT_SLOT_WAIT_SECONDS: float = Field(default=10.0, gt=0, le=600)
    """How long an upload waits for one of its worker's import slots before it answers 503 IMPORTS_BUSY
    with Retry-After; it holds no connection meanwhile."""
    IMPORTS_PER_USER: int = Field(default=2, ge=1, le=100)
    """Imports and dry runs one user runs at once across every worker and host (PostgreSQL advisory
    locks; in-process on SQLite); beyond it 429 TOO_MANY_IMPORTS with Retry-After, so that one user's
    burst cannot fill the slots everyone shares."""
    IMPORT_MAX_SECONDS: float = Field(default=540.0, gt=0, le=86_400)
    """An import or dry run stops for real after this many seconds from the end of its upload (the
    reading thread checks it too) and rolls back: 422 IMPORT_TIMED_OUT. The default fits a
    2,000,000-row file on a busy machine and stays below nginx's 600 s for the upload route, so that the
    client always gets this answer rather than the proxy's."""
    IMPORT_RUNNER: ImportRunner = ImportRunner.PROCESS
    """Who runs an upload's import job: `process`, the API process that took the upload, as a task
    beside its requests (the embedded default, and SQLite's only choice); `queue`, the job queue's
    workers (`python main.py worker`, PostgreSQL only; compose's default), one import per study at a
    time."""
    IMPORT_WAIT_SECONDS: float = Field(default=20.0, ge=0, le=600)
    """How long an upload without `Prefer: respond-async` waits for its import to finish and answers as
    it ends (201, 422 with the report, 200 duplicate_of); past it, 202 with the record's Location (whose
    status and progress say where it is)."""
    IMPORT_PROGRESS_SECONDS: float = Field(default=2.0, gt=0, le=60)
    """A running import writes its progress (rows_read) this often, in a short transaction of its own,
    and looks then whether its cancel was asked. A cancel waits for that (and 3 s) within its request's
    deadline (REQUEST_TIMEOUT_SECONDS, less 1 s to answer 202)."""
    IMPORT_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=20)
    """A queued import whose worker died is run again (stalled-job recovery) up to this many attempts in
    all; after the last its record says `failed`."""

    @property
    def max_upload_bytes(self) -> int:
        return self.MAX_UPLOAD_MB * 1024 * 1024

    @property
    def max_xlsx_shared_strings_bytes(self) -> int:
        return self.MAX_XLSX_SHARED_STRINGS_MB * 1024 * 1024

    @property
    def imports_per_worker(self) -> int:
        return self.IMPORTS_PER_WORKER or max(1, settings.DATABASE_POOL_SIZE // 2)


upload_settings = UploadSettings()
