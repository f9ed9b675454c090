"""Shapes shared by every module: one-line text, the page of a list, the problem+json error."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from src.constants import MAX_PROBLEM_ERRORS

ItemT = TypeVar("ItemT")
# C0, DEL and C1 controls; zero width space; line and paragraph separators; bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069, which can make a name read
# backwards to an admin) with the rest of the invisible U+2060-U+206F block; and U+FEFF, a byte
# order mark, not text. Kept: U+200C/U+200D (zero width non-joiner and joiner, part of the
# spelling of names in Persian, Indic scripts and emoji) and the U+200E/U+200F/U+061C marks,
# which only set the direction of neighbouring punctuation and are needed in mixed-script names.
_CONTROL_RANGES = r"\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\u202a-\u202e\u2060-\u206f\ufeff"
_CONTROL_CHARACTERS = re.compile(f"[{_CONTROL_RANGES}]")
# What pydantic's strip_whitespace takes off (Unicode's White_Space, as Rust's str::trim), spelled
# out rather than as \s, which means other things in ECMA-262 (JSON Schema's dialect) and Python.
_STRIPPED_RANGES = r"\t-\r\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The same rules as JSON Schema patterns (ECMA-262 syntax, which Python's re reads alike), for the
# OpenAPI document only: the server's own check stays the validator below. Text of one line:
SINGLE_LINE_PATTERN = f"^[^{_CONTROL_RANGES}]*$"
# and trimmed text of one line that is not blank: whatever is trimmed off either end, then at least
# one character that is not, and no control character in between;
_TEXT_AT_AN_END = f"[^{_STRIPPED_RANGES}{_CONTROL_RANGES}]"
_STRIPPED = f"[{_STRIPPED_RANGES}]*"
_TEXT = f"{_TEXT_AT_AN_END}(?:[^{_CONTROL_RANGES}]*{_TEXT_AT_AN_END})?"
TRIMMED_LINE_PATTERN = f"^{_STRIPPED}{_TEXT}{_STRIPPED}$"
# and text of one line that must come trimmed (refused, not trimmed, when it is not).
STRICTLY_TRIMMED_LINE_PATTERN = f"^{_TEXT}$"

# Text that may run over lines but holds no NUL (which PostgreSQL cannot store, and C code cuts at).
NUL_FREE_PATTERN = "^[^\\x00]*$"


@dataclass(frozen=True, slots=True)
class DocumentedPattern:
    """A `pattern` in the JSON schema of a string, and only there: what the server refuses is checked
    by its own validator (with its own message), and this says the same to the client's author."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def _without_null_branch(schema: dict[str, Any]) -> dict[str, Any]:
    """Takes `anyOf` out of an optional value's schema and gives back its one branch that is not null."""
    (branch,) = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    return branch


def any_case(name: str) -> str:
    """`name` as a pattern matching it in any case: JSON Schema's pattern dialect has no `i` flag."""
    return "".join(f"[{letter.upper()}{letter}]" if letter.isalpha() else letter for letter in name)


def has_null_branch(schema: dict[str, Any]) -> bool:
    """Whether a schema is an optional value's: `anyOf` its type and null."""
    return {"type": "null"} in schema.get("anyOf", [])


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional value's schema as its type alone (its other keys kept): for a value that may be left
    out but has no null, such as a header or a query parameter (a client would send `null` as text)."""
    schema = dict(schema)
    branch = _without_null_branch(schema)
    return {**schema, **branch}


def never_null(*names: str, example: dict[str, Any]) -> Any:
    """A model's `json_schema_extra` for fields that may be left out but not sent as null (a validator
    refuses null): documented as their type alone, with no `null` branch and no `default: null`."""

    def document(schema: dict[str, Any]) -> None:
        schema["example"] = example
        for name in names:
            field = schema["properties"][name]
            field.pop("default", None)
            field.update(_without_null_branch(field))

    return document


def null_properties(schema: dict[str, Any], names: Iterable[str], description: str) -> None:
    """Documents each of `names` as a property that may be sent as null and only so: the server reads
    it as left out (a client that sends every key of a flat model does), and it means nothing here."""
    schema["properties"] |= {name: {"type": "null", "description": description} for name in names}


def _one_of(schema: dict[str, Any]) -> dict[str, Any]:
    # pydantic says `anyOf` of an untagged union: at least one. The variants documented here are
    # told apart by their required keys, so each value is one of them and only one.
    if "anyOf" in schema:
        schema["oneOf"] = schema.pop("anyOf")
    return schema


def documented_as(shapes: Any, *, description: str, example: Any) -> Any:
    """A model's `__get_pydantic_json_schema__` that documents it as exactly one of `shapes` (a union of
    models, each its own component): the form client generators read, while the model itself stays
    the validator. `shapes` tagged by `Field(discriminator=...)` come with OpenAPI's `discriminator`."""
    adapter = TypeAdapter(shapes)

    def json_schema(cls: type, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = _one_of(handler(adapter.core_schema))
        return {**schema, "description": description, "example": example}

    return classmethod(json_schema)


class ExactlyOne:
    """An untagged union of models that their required keys tell apart, documented as `oneOf`."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _one_of(handler(core_schema))


def has_control_characters(text: str) -> bool:
    """Whether one-line text holds a character that has no place in it (the rule of SingleLineText)."""
    return _CONTROL_CHARACTERS.search(text) is not None


def _reject_control_characters(value: str) -> str:
    # NUL cannot even be stored in PostgreSQL text; the rest has no place in a one-line value.
    if has_control_characters(value):
        raise ValueError("must not contain control, invisible or direction-changing characters")
    return value


no_control_characters = AfterValidator(_reject_control_characters)


def at_most_as_sent(max_length: int) -> BeforeValidator:
    """For text that is trimmed: `max_length` counts the text as sent, spaces around it included,
    as the document's `maxLength` says (trimming first let 101 characters through a limit of 100)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": max_length},
            )
        return value

    return BeforeValidator(check)


SingleLineText = Annotated[str, no_control_characters, DocumentedPattern(SINGLE_LINE_PATTERN)]


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


def page_of(items: list, total: int, total_is_exact: bool, page: PageParams) -> dict[str, Any]:
    """A list route's answer, shaped as `Page`."""
    return {
        "items": items,
        "total": total,
        "total_is_exact": total_is_exact,
        "page": page.page,
        "page_size": page.page_size,
    }


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
