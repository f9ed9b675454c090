"""Answers of the dashboard routes."""

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from src.auth.constants import Role
from src.sampleFileUpload.constants import ImportMode, SampleFileStatus
from src.study.constants import SampleStatus, StudyStatus
from src.study.schemas import ActivityRead


class StudyFigures(BaseModel):
    total: int
    by_status: dict[StudyStatus, int] = Field(description="every status, zeros included")


class SampleFigures(BaseModel):
    total: int
    by_status: dict[SampleStatus, int] = Field(description="every status, zeros included")


class SampleFileFigures(BaseModel):
    total: int
    imported: int
    rejected: int
    total_bytes: int


class DayCount(BaseModel):
    date: date
    count: int


class WeekCount(BaseModel):
    week_start: date = Field(description="the Monday (UTC) the week starts on")
    count: int


class TopStudy(BaseModel):
    id: uuid.UUID
    code: str
    title: str
    sample_count: int


class UserFigures(BaseModel):
    total: int
    active: int
    by_role: dict[Role, int] = Field(description="every role, zeros included")


_STUDY_ID = "5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70"
_SAMPLES_EXAMPLE = {
    "total": 42,
    "by_status": {"registered": 5, "received": 20, "stored": 15, "consumed": 2, "discarded": 0},
}
SUMMARY_EXAMPLE = {
    "studies": {"total": 3, "by_status": {"draft": 1, "active": 2, "locked": 0, "archived": 0}},
    "samples": _SAMPLES_EXAMPLE,
    "sample_files": {"total": 4, "imported": 3, "rejected": 1, "total_bytes": 182_113},
    "samples_created": [{"date": "2026-11-21", "count": 0}, {"date": "2026-11-22", "count": 12}],
    "recent_activity": [
        {
            "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
            "action": "sample_file_imported",
            "actor": {
                "id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
                "email": "ada@example.org",
                "full_name": "Ada Lovelace",
            },
            "at": "2026-11-22T10:05:00Z",
            "details": {"sample_file_id": "0e1d2c3b-4a59-4867-9b8a-7c6d5e4f3a2b", "filename": "week47.csv"},
            "file": {
                "id": "0e1d2c3b-4a59-4867-9b8a-7c6d5e4f3a2b",
                "filename": "week47.csv",
                "deleted": False,
            },
            "study": {"id": _STUDY_ID, "code": "ONC-2026-01", "title": "Tumour markers in blood"},
        }
    ],
    "top_studies": [
        {"id": _STUDY_ID, "code": "ONC-2026-01", "title": "Tumour markers in blood", "sample_count": 42}
    ],
    "users": {"total": 12, "active": 11, "by_role": {"admin": 1, "researcher": 9, "viewer": 2}},
    "generated_at": "2026-11-22T10:06:00Z",
}
STUDY_EXAMPLE = {
    "study_id": _STUDY_ID,
    "samples": _SAMPLES_EXAMPLE,
    "samples_created": [{"week_start": "2026-11-09", "count": 30}, {"week_start": "2026-11-16", "count": 12}],
    "uploads": {
        "imported": 3,
        "rejected": 1,
        "recent": [
            {
                "id": "0e1d2c3b-4a59-4867-9b8a-7c6d5e4f3a2b",
                "filename": "week47.csv",
                "status": "imported",
                "mode": "insert",
                "created_at": "2026-11-22T10:05:00Z",
                "rows": 12,
                "created": 12,
                "updated": 0,
                "unchanged": 0,
                "rejected": 0,
            }
        ],
    },
    "choices": [{"field": "tissue", "counts": {"blood": 30, "saliva": 12}}],
    "completeness": [
        {"field": "tissue", "filled": 42, "share": 1.0},
        {"field": "volume", "filled": 21, "share": 0.5},
    ],
    "generated_at": "2026-11-22T10:06:00Z",
}


class DashboardSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": SUMMARY_EXAMPLE})

    studies: StudyFigures
    samples: SampleFigures
    sample_files: SampleFileFigures
    samples_created: list[DayCount] = Field(
        description="samples (still present) created per UTC day, oldest first, every day of the window"
    )
    recent_activity: list[ActivityRead]
    top_studies: list[TopStudy] = Field(description="the studies with most samples, most first")
    users: UserFigures | None = Field(default=None, description="administrators only")
    generated_at: datetime


class UploadSummary(BaseModel):
    id: uuid.UUID
    filename: str
    status: SampleFileStatus
    mode: ImportMode
    created_at: datetime
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int


class UploadFigures(BaseModel):
    imported: int
    rejected: int
    recent: list[UploadSummary] = Field(description="the last uploads, newest first")


class ChoiceCounts(BaseModel):
    field: str
    counts: dict[str, int] = Field(description="every choice, in the schema's order, zeros included")


class FieldCompleteness(BaseModel):
    field: str
    filled: int = Field(description="samples with a value in this field")
    share: float = Field(description="filled / samples, 0 when the study has no samples")


class StudyDashboard(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": STUDY_EXAMPLE})

    study_id: uuid.UUID
    samples: SampleFigures
    samples_created: list[WeekCount] = Field(description="per week (Monday to Sunday, UTC), oldest first")
    uploads: UploadFigures
    choices: list[ChoiceCounts] = Field(description="one entry per `choice` field")
    completeness: list[FieldCompleteness] = Field(description="one entry per field, in the schema's order")
    generated_at: datetime
