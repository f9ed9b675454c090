"""The time window of a dashboard answer."""

from typing import Annotated

from fastapi import Query

from src.dashboard.constants import MAX_DAYS, MIN_DAYS

_DAYS_DESCRIPTION = f"the time series' window in days, {MIN_DAYS} to {MAX_DAYS}, ending today (UTC)"

SummaryDays = Annotated[int, Query(ge=MIN_DAYS, le=MAX_DAYS, description=_DAYS_DESCRIPTION)]
StudyDays = Annotated[
    int,
    Query(
        ge=MIN_DAYS,
        le=MAX_DAYS,
        description=f"the time series' window, {MIN_DAYS} to {MAX_DAYS} days rounded up to whole weeks "
        "(Monday to Sunday, UTC) ending with the current one: 84 is the last 12 weeks",
    ),
]
