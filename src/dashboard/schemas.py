"""Answers of the dashboard routes."""

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

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


class DashboardSummary(BaseModel):
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
    study_id: uuid.UUID
    samples: SampleFigures
    samples_created: list[WeekCount] = Field(description="per week (Monday to Sunday, UTC), oldest first")
    uploads: UploadFigures
    choices: list[ChoiceCounts] = Field(description="one entry per `choice` field")
    completeness: list[FieldCompleteness] = Field(description="one entry per field, in the schema's order")
    generated_at: datetime
