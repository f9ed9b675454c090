"""Dependencies shared across modules."""

from typing import Annotated

from fastapi import Depends, Query

from src.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from src.schemas import PageParams


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
) -> PageParams:
    return PageParams(page=page, page_size=page_size)


Pagination = Annotated[PageParams, Depends(page_params)]
