"""Shapes shared by every module: one-line text, the page of a list, the problem+json error."""

import re
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

ItemT = TypeVar("ItemT")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _reject_control_characters(value: str) -> str:
    # NUL cannot even be stored in PostgreSQL text; the rest has no place in a one-line value.
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    return value


no_control_characters = AfterValidator(_reject_control_characters)
SingleLineText = Annotated[str, no_control_characters]


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    total_is_exact: bool = Field(
        description="false when `total` is only a lower bound: counting stopped at the cap (10,000)"
    )
    page: int
    page_size: int


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error response (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None
    errors: list[ProblemError] | None = None
