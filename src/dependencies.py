"""Dependencies shared across modules: who is calling, and which page of a list they want."""

from typing import Annotated

from fastapi import Depends, Query

from src.auth.dependencies import AdminUser, CurrentUser
from src.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from src.schemas import PageParams

# The caller, typed: every module's routes take `user: CurrentUser` or `admin: AdminUser`.
__all__ = ["AdminUser", "CurrentUser", "PageParams", "Pagination", "page_params"]


async def page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"items per page, at most {MAX_PAGE_SIZE}")
    ] = DEFAULT_PAGE_SIZE,
) -> PageParams:
    return PageParams(page=page, page_size=page_size)


Pagination = Annotated[PageParams, Depends(page_params)]
