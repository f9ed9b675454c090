"""The sample_files table: one row per stored upload, from `queued` to imported, rejected, failed or
cancelled (the import job's record: its options, progress and outcome)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, Label, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from src.database import Base, UUIDPrimaryKey, utcnow
from src.sampleFileUpload.constants import FILENAME_MAX_LENGTH

STATUS_LENGTH = 20
FIRST_IMPORT_OF_CONTENT = "status = 'imported' AND same_content_as IS NULL"
UNFINISHED = "status IN ('queued', 'importing')"


class SampleFile(UUIDPrimaryKey, Base):
    __tablename__ = "sample_files"
    __table_args__ = (
        Index("ix_sample_files_study_id_created_at", "study_id", "created_at"),
        # The last line of defence against importing the same content twice at once into a study (the
        # import checks first, under the study's import lock): one first import of each content; a
        # later one, made because the study's samples changed since, names it in same_content_as.
        Index(
            "uq_sample_files_study_id_sha256_imported",
            "study_id",
            "sha256",
            unique=True,
            postgresql_where=text(FIRST_IMPORT_OF_CONTENT),
            sqlite_where=text(FIRST_IMPORT_OF_CONTENT),
        ),
        # Where an upload finds the imports of the same content before it.
        Index("ix_sample_files_study_id_sha256", "study_id", "sha256"),
        # The sweep for imports a stopped API process left unfinished (jobs.py), and a user's
        # uploads waiting in the queue (a new one's priority).
        Index(
            "ix_sample_files_unfinished_created_at",
            "created_at",
            postgresql_where=text(UNFINISHED),
            sqlite_where=text(UNFINISHED),
        ),
        Index(
            "ix_sample_files_uploaded_by_unfinished",
            "uploaded_by",
            postgresql_where=text(UNFINISHED),
            sqlite_where=text(UNFINISHED),
        ),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    # As sent, cleaned (no path, no control characters, at most 255 characters): for display only.
    filename: Mapped[str] = mapped_column(String(FILENAME_MAX_LENGTH))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    encoding: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    mode: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The report with its first errors; every error is in the stored errors file.
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    storage_key: Mapped[str] = mapped_column(String(64))
    errors_key: Mapped[str | None] = mapped_column(String(64))
    # The latest earlier import of the same content into the study, when this upload was imported
    # (or rejected) anyway because importing it again changed something. Not a foreign key: that
    # record may be deleted later (an import that only updated samples can be), and this one still
    # tells what it was; the unique index above must not see this one turn into a first import.
    same_content_as: Mapped[uuid.UUID | None] = mapped_column()
    # Set when importing this upload would have changed nothing: the earlier import it repeats (its
    # report is this record's; nothing was written). Not a foreign key, as same_content_as.
    duplicate_of: Mapped[uuid.UUID | None] = mapped_column()
    # The job: how the upload asked its cells to be read (null for records made before jobs).
    import_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rows_read: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rows_total: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # Why a `failed` import failed: a problem (status, code, detail, errors?) as the upload would answer.
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Which claim of the record runs its import (each claim adds one): a run's final write needs its
    # own claim still current, so a run whose record was claimed again (its job re-queued while it
    # still ran) can never write a second outcome.
    claim: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def progress(self) -> dict[str, int | None]:
        return {"rows_read": self.rows_read, "rows_total": self.rows_total}


# The counts of a report, read out of it by the database: a listing needs these, not the report's
# errors and columns (up to MAX_REPORT_ERRORS of them), which would cost the transfer of all of them.
REPORT_COUNTS = ("rows", "created", "updated", "unchanged", "rejected", "errors_total", "column_errors")


def report_count_columns() -> list[Label[int]]:
    return [SampleFile.report[key].as_integer().label(f"report_{key}") for key in REPORT_COUNTS]
