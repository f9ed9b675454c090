"""Tables of the study module: studies, their members, samples and the activity log."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from src.database import Base, Timestamps, UUIDPrimaryKey, utcnow
from src.study.constants import (
    ACTIVITY_ACTION_MAX_LENGTH,
    CHOICE_MAX_LENGTH,
    CODE_MAX_LENGTH,
    FIELD_NAME_MAX_LENGTH,
    SAMPLE_ID_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    SampleStatus,
    StudyRole,
    StudyStatus,
)

# JSONB on PostgreSQL (containment queries, a GIN index), plain JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def _string_enum(enum: type, name: str) -> Enum:
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


# The one unique constraint a sample write can break (an import tells a collision by its name).
SAMPLE_ID_CONSTRAINT = "uq_samples_study_id_sample_id_normalized"
# The partial indexes of migration 0017 hold only the rows that name a file.
NAMES_A_FILE = "sample_file_id IS NOT NULL"
UPDATED_BY_A_FILE = "updated_by_file_id IS NOT NULL"


class Study(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "studies"

    code: Mapped[str] = mapped_column(String(CODE_MAX_LENGTH))
    # The code upper-cased: its unique index makes codes unique case-insensitively on every backend.
    code_normalized: Mapped[str] = mapped_column(String(CODE_MAX_LENGTH), unique=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[StudyStatus] = mapped_column(
        _string_enum(StudyStatus, "study_status"), default=StudyStatus.DRAFT, index=True
    )
    sample_fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Maintained in the transaction of every sample insert and delete: no count(*) per request.
    sample_count: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(default=1)


class StudyMember(Base):
    __tablename__ = "study_members"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[StudyRole] = mapped_column(_string_enum(StudyRole, "study_role"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sample(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("study_id", "sample_id_normalized", name=SAMPLE_ID_CONSTRAINT),
        Index("ix_samples_study_id_status", "study_id", "status"),
        Index("ix_samples_study_id_created_at", "study_id", "created_at"),
        Index("ix_samples_study_id_updated_at", "study_id", "updated_at"),
        # `field.X=` filters are `values @> {...}` containment, which this index answers; jsonb_path_ops
        # supports only @>, and is a third smaller and cheaper to write on import (migration 0007).
        Index(
            "ix_samples_values", "values", postgresql_using="gin", postgresql_ops={"values": "jsonb_path_ops"}
        ).ddl_if(dialect="postgresql"),
        # `q` is a prefix match (LIKE 'abc%'), which a btree answers only with pattern operators
        # unless the database collation is C; SQLite's LIKE cannot use an index for it anyway.
        Index(
            "ix_samples_study_id_sample_id_prefix",
            "study_id",
            "sample_id_normalized",
            postgresql_ops={"sample_id_normalized": "text_pattern_ops"},
        ).ddl_if(dialect="postgresql"),
        # Deleting a sample file sets its samples' updated_by_file_id to NULL by this index, not a scan.
        Index(
            "ix_samples_updated_by_file_id",
            "updated_by_file_id",
            postgresql_where=text(UPDATED_BY_A_FILE),
            sqlite_where=text(UPDATED_BY_A_FILE),
        ),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    # Not indexed alone (unlike the mixin's): every query is per study, so (study_id, created_at) serves.
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sample_id: Mapped[str] = mapped_column(String(SAMPLE_ID_MAX_LENGTH))
    # Trimmed and case-folded: the unique constraint makes " ab-1" and "AB-1" the same sample.
    sample_id_normalized: Mapped[str] = mapped_column(String(SAMPLE_ID_MAX_LENGTH))
    status: Mapped[SampleStatus] = mapped_column(
        _string_enum(SampleStatus, "sample_status"), default=SampleStatus.REGISTERED
    )
    values: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # The sample file that created it (src/sampleFileUpload); None when made through the API.
    source_file_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sample_files.id", ondelete="SET NULL"), index=True
    )
    # The last sample file whose import changed it (set by the import's update of the samples it
    # changes; a manual edit leaves it): its log shows that file's import. None when no import has
    # changed it, or that file was deleted since.
    updated_by_file_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sample_files.id", ondelete="SET NULL")
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(default=1)


class StudySampleCount(Base):
    """Samples per status of a study, maintained in the transaction of every sample write: the
    dashboard reads these few rows instead of grouping every sample per request."""

    __tablename__ = "study_sample_counts"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[SampleStatus] = mapped_column(
        _string_enum(SampleStatus, "sample_count_status"), primary_key=True
    )
    count: Mapped[int] = mapped_column(default=0)


class StudyDailySampleCount(Base):
    """Samples of a study by the UTC day they were created (those still present), maintained like
    StudySampleCount: the dashboard's time series sums a few rows per study and day."""

    __tablename__ = "study_daily_sample_counts"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class StudyFieldValueCount(Base):
    """Per field of a study, the samples that have a value in it (value FIELD_FILLED) and, for a `choice`
    field, the samples that have each choice (value = the choice). Maintained like StudySampleCount:
    the study dashboard reads these rows instead of unpacking every sample's values (1-2 s for a
    200,000-sample study)."""

    __tablename__ = "study_field_value_counts"

    study_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String(FIELD_NAME_MAX_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(CHOICE_MAX_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class StudyActivity(UUIDPrimaryKey, Base):
    """Append-only: one row per change anyone made to a study, written with the change itself."""

    __tablename__ = "study_activity"
    __table_args__ = (
        Index("ix_study_activity_study_id_at_id", "study_id", "at", "id"),
        # The dashboard's newest entries across every study (an administrator's): read from the top.
        Index("ix_study_activity_at_id", "at", "id"),
        # A sample's own log (its detail view): one index read however long the study's log is.
        Index("ix_study_activity_study_id_sample_pk_at_id", "study_id", "sample_pk", "at", "id"),
        # The entries of one sample file (a sample's log shows the imports that created and last
        # updated it): the few entries that name a file, so the index holds those only (0017).
        Index(
            "ix_study_activity_study_id_sample_file_id",
            "study_id",
            "sample_file_id",
            postgresql_where=text(NAMES_A_FILE),
            sqlite_where=text(NAMES_A_FILE),
        ),
    )

    study_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(ACTIVITY_ACTION_MAX_LENGTH))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The sample the entry is about (its key: stable when the sample id is renamed), None for other
    # entries. No foreign key: the entry outlives the sample (its `sample_deleted` entry too).
    sample_pk: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # The sample file the entry is about (`details.sample_file_id`), which the log joins to name the
    # file as it is now. No foreign key either: the entry outlives the file.
    sample_file_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
