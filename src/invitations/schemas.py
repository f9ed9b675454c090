"""The JSON contract of study invitations."""

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from src.auth.schemas import Email, MailedToken
from src.invitations.constants import InvitationStatus
from src.study.constants import StudyRole

_TOKEN_EXAMPLE = {"token": "Xq3v8kq0JmB2s1Yw7c5Zr4tH6nD9pL0aE2fG3hI4jK5"}


class InvitationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"email": "grace@example.org", "role": "editor"}}
    )

    email: Email
    role: StudyRole


class InvitationRead(BaseModel):
    """A pending invitation as the study's owners see it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "6a1f0f0e-5c1b-4a55-9a3e-2a5f8e9d7c10",
                "study_id": "0b7e2c4a-1d3f-4e5a-8b6c-9d0e1f2a3b4c",
                "email": "grace@example.org",
                "role": "editor",
                "status": "pending",
                "invited_by_name": "Ada Lovelace",
                "created_at": "2026-12-06T09:30:00Z",
                "expires_at": "2026-12-13T09:30:00Z",
                "expired": False,
            }
        }
    )

    id: uuid.UUID
    study_id: uuid.UUID
    email: str
    role: StudyRole
    status: InvitationStatus
    invited_by_name: str | None = Field(description="null once the inviter's account is gone")
    created_at: datetime
    expires_at: datetime = Field(description="its link works until then; a resend starts a new lifetime")
    expired: bool


class InvitedStudy(BaseModel):
    id: uuid.UUID
    code: str
    title: str


class ReceivedInvitationRead(BaseModel):
    """An invitation to the signed-in user's address, with the study it is for."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "6a1f0f0e-5c1b-4a55-9a3e-2a5f8e9d7c10",
                "study": {
                    "id": "0b7e2c4a-1d3f-4e5a-8b6c-9d0e1f2a3b4c",
                    "code": "ONC-2026-01",
                    "title": "Tumour bank",
                },
                "role": "editor",
                "invited_by_name": "Ada Lovelace",
                "expires_at": "2026-12-13T09:30:00Z",
            }
        }
    )

    id: uuid.UUID
    study: InvitedStudy
    role: StudyRole
    invited_by_name: str | None
    expires_at: datetime


class InvitationAccepted(BaseModel):
    """The study just joined, and the role in it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "study": {
                    "id": "0b7e2c4a-1d3f-4e5a-8b6c-9d0e1f2a3b4c",
                    "code": "ONC-2026-01",
                    "title": "Tumour bank",
                },
                "role": "editor",
            }
        }
    )

    study: InvitedStudy
    role: StudyRole


class InvitationTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": _TOKEN_EXAMPLE})

    token: MailedToken
