"""Liveness and readiness: for load balancers, orchestrators and the container health checks."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from src.database import database_is_ready
from src.exceptions import DatabaseUnavailable, problem_responses

router = APIRouter(prefix="/health", tags=["health"])


class HealthStatus(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"status": "ok"}})

    status: Literal["ok"] = "ok"


@router.head("", include_in_schema=False)
@router.get(
    "",
    response_model=HealthStatus,
    summary="Liveness",
    description="200 while the process answers requests. Never touches the database, so a database "
    "outage does not get healthy API processes restarted.",
)
async def health() -> HealthStatus:
    return HealthStatus()


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    response_model=HealthStatus,
    summary="Readiness",
    description="200 when the database answers a trivial query within 3 seconds, else 503 "
    "`DATABASE_UNAVAILABLE`: stop sending traffic here until it recovers.",
    responses=problem_responses(DatabaseUnavailable),
)
async def ready() -> HealthStatus:
    if not await database_is_ready():
        raise DatabaseUnavailable
    return HealthStatus()
