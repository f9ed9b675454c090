"""Routes of the dashboard: what the caller's studies hold, as figures. Read-only.

Both answers carry an ETag computed from their figures; a client that sends it back as
If-None-Match gets 304 with no body while nothing changed (the page polls every 30 seconds).
"""

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from src.dashboard import service
from src.dashboard.constants import STUDY_DEFAULT_DAYS, SUMMARY_DEFAULT_DAYS
from src.dashboard.dependencies import StudyDays, SummaryDays
from src.dashboard.exceptions import STUDY_DASHBOARD_ERRORS, SUMMARY_ERRORS
from src.dashboard.schemas import DashboardSummary, StudyDashboard
from src.dashboard.utils import figures_etag, with_generated_at
from src.database import DbSession
from src.dependencies import CurrentUser, IfNoneMatch, etag_matches
from src.exceptions import problem_responses
from src.study.dependencies import ReadableStudy
from src.study.schemas import ActivityRead

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

_NOT_MODIFIED = {status.HTTP_304_NOT_MODIFIED: {"description": "Unchanged since the `ETag` sent."}}


def _conditional(body: dict[str, Any], if_none_match: str | None, model: type[BaseModel]) -> Response:
    """The answer with its ETag, or 304 (same ETag, no body) when the caller already holds it.

    The tag is a hash of the figures themselves (all but `generated_at`), so it changes exactly when
    a figure does, whatever changed it; the figures come from a few counter reads, and a 304 skips
    only the answer's serialization. Serialized once, by pydantic's (compiled) JSON encoder: the
    figures for the tag, then the timestamp appended."""
    answer = model.model_validate(body)
    figures = answer.__pydantic_serializer__.to_json(answer, exclude={"generated_at"}, exclude_unset=True)
    tag = figures_etag(figures)
    if etag_matches(if_none_match, tag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    content = with_generated_at(figures, answer.generated_at)
    return Response(content, media_type="application/json", headers={"ETag": tag})


@router.get(
    "/summary",
    response_model=DashboardSummary,
    summary="Figures over every study the caller may read",
    description="Studies and samples by status, sample files, samples created per day (`days`, "
    "default 30), the latest activity and the studies with most samples, over the studies the caller "
    "is a member of (administrators: all, plus user figures). Send `If-None-Match` to poll cheaply.",
    responses={**_NOT_MODIFIED, **problem_responses(*SUMMARY_ERRORS)},
)
async def summary(
    user: CurrentUser,
    db: DbSession,
    if_none_match: IfNoneMatch = None,
    days: SummaryDays = SUMMARY_DEFAULT_DAYS,
) -> Response:
    body = await service.summary(db, user=user, days=days)
    body["recent_activity"] = [ActivityRead.of(entry) for entry in body["recent_activity"]]
    return _conditional(body, if_none_match, DashboardSummary)


@router.get(
    "/studies/{study_id}",
    response_model=StudyDashboard,
    summary="Figures of one study",
    description="Samples by status, samples created per week (`days`, default 84: twelve weeks), "
    "uploads with the last ten, the count per choice of each `choice` field and how complete each "
    "field is. Any member may read it; others get 404.",
    responses={**_NOT_MODIFIED, **problem_responses(*STUDY_DASHBOARD_ERRORS)},
)
async def study_figures(
    access: ReadableStudy,
    db: DbSession,
    if_none_match: IfNoneMatch = None,
    days: StudyDays = STUDY_DEFAULT_DAYS,
) -> Response:
    body = await service.study_figures(db, study=access.study, days=days)
    return _conditional(body, if_none_match, StudyDashboard)
