"""Shapes shared by every module: one-line text, the page of a list, the problem+json error."""

import re
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

from src.constants import MAX_PROBLEM_ERRORS

ItemT = TypeVar("ItemT")
# C0, DEL and C1 controls; zero width space; line and paragraph separators; bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069, which can make a name read
# backwards to an admin) with the rest of the invisible U+2060-U+206F block; and U+FEFF, a byte
# order mark, not text. Kept: U+200C/U+200D (zero width non-joiner and joiner, part of the
# spelling of names in Persian, Indic scripts and emoji) and the U+200E/U+200F/U+061C marks,
# which only set the direction of neighbouring punctuation and are needed in mixed-script names.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\u202a-\u202e\u2060-\u206f\ufeff]")


def has_control_characters(text: str) -> bool:
    """Whether one-line text holds a character that has no place in it (the rule of SingleLineText)."""
    return _CONTROL_CHARACTERS.search(text) is not None


def _reject_control_characters(value: str) -> str:
    # NUL cannot even be stored in PostgreSQL text; the rest has no place in a one-line value.
    if has_control_characters(value):
        raise ValueError("must not contain control, invisible or direction-changing characters")
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
    errors: list[ProblemError] | None = Field(
        default=None,
        description=f"What is wrong with the request: at most the first {MAX_PROBLEM_ERRORS}, each text "
        "cut to 200 characters, and no more than fit 12 KB.",
    )
    errors_total: int | None = Field(default=None, description="How many errors there were in all.")
    errors_truncated: bool | None = Field(
        default=None,
        description="True when `errors` shows only the first of `errors_total`.",
    )
