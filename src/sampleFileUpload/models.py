"""The sample_files table: one row per stored upload, imported or rejected."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Label, String, text
from sqlalchemy.orm import Mapped, mapped_column

from src.database import Base, UUIDPrimaryKey, utcnow
from src.sampleFileUpload.constants import FILENAME_MAX_LENGTH

STATUS_LENGTH = 20


class SampleFile(UUIDPrimaryKey, Base):
    __tablename__ = "sample_files"
    __table_args__ = (
        Index("ix_sample_files_study_id_created_at", "study_id", "created_at"),
        # The last line of defence against importing the same content twice into a study (the
        # import checks first, under the study's row lock).
        Index(
            "uq_sample_files_study_id_sha256_imported",
            "study_id",
            "sha256",
            unique=True,
            postgresql_where=text("status = 'imported'"),
            sqlite_where=text("status = 'imported'"),
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


# The counts of a report, read out of it by the database: a listing needs these, not the report's
# errors and columns (up to MAX_REPORT_ERRORS of them), which would cost the transfer of all of them.
REPORT_COUNTS = ("rows", "created", "updated", "unchanged", "rejected", "errors_total")


def report_count_columns() -> list[Label[int]]:
    return [SampleFile.report[key].as_integer().label(f"report_{key}") for key in REPORT_COUNTS]
