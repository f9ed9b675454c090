"""Response shapes shared by every module: the page of a list and the problem+json error."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    page: int
    page_size: int


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response (`application/problem+json`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "urn:studybase:problem:not-found",
                "title": "Not found",
                "status": 404,
                "detail": "Not Found.",
                "code": "NOT_FOUND",
                "request_id": "6f1c2f0d9a1e4f7c8b7a0d3e2c1b0a99",
            }
        }
    )

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None
    errors: list[ProblemError] | None = None


_STATUS_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, expired, revoked or forged credentials",
    403: "Authenticated but not allowed",
    404: "Not found, or not visible to you",
    409: "Conflicts with the current state",
    422: "The request is not valid",
    429: "Too many attempts; see Retry-After",
    503: "A dependency is unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem+json errors a route can answer with."""
    return {status: {"model": Problem, "description": _STATUS_DESCRIPTIONS[status]} for status in statuses}
