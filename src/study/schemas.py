"""The JSON contract of the study module."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from src.schemas import (
    NUL_FREE_PATTERN,
    STRICTLY_TRIMMED_LINE_PATTERN,
    TRIMMED_LINE_PATTERN,
    DocumentedPattern,
    any_case,
    at_most_as_sent,
    documented_as,
    never_null,
    no_control_characters,
    null_properties,
)
from src.study import sample_schema
from src.study.constants import (
    ACTIVITY_CUT_MARK,
    ACTIVITY_DETAILS_MAX_BYTES,
    ACTIVITY_TEXT_MAX_LENGTH,
    ACTIVITY_TRUNCATED_KEY,
    CHOICE_MAX_LENGTH,
    CODE_MAX_LENGTH,
    CODE_PATTERN,
    DESCRIPTION_MAX_LENGTH,
    FIELD_DESCRIPTION_MAX_LENGTH,
    FIELD_NAME_MAX_LENGTH,
    FIELD_NAME_PATTERN,
    MAX_CHOICES,
    MAX_SAFE_INTEGER,
    MAX_SAMPLE_FIELDS,
    PATTERN_MAX_LENGTH,
    RESERVED_FIELD_NAMES,
    SAMPLE_ID_MAX_LENGTH,
    TEXT_DEFAULT_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
    TITLE_MAX_LENGTH,
    UNIT_MAX_LENGTH,
    FieldType,
    SampleStatus,
    StudyRole,
    StudyStatus,
)
from src.study.sample_schema import SampleSchemaError
from src.study.utils import without_nul

StudyCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=CODE_MAX_LENGTH, pattern=CODE_PATTERN),
    at_most_as_sent(CODE_MAX_LENGTH),
    Field(description="2-32 letters, digits and `-`; unique case-insensitively", examples=["ONC-2026-01"]),
]


def one_line(max_length: int) -> Any:
    """Trimmed one-line text of 1 to max_length characters (at most max_length as sent, too)."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length),
        at_most_as_sent(max_length),
        no_control_characters,
        DocumentedPattern(TRIMMED_LINE_PATTERN),
    ]


Title = one_line(TITLE_MAX_LENGTH)
Description = Annotated[
    str,
    Field(max_length=DESCRIPTION_MAX_LENGTH),
    AfterValidator(without_nul),
    DocumentedPattern(NUL_FREE_PATTERN),
]
_SAFE_INTEGERS = f"-{MAX_SAFE_INTEGER} to {MAX_SAFE_INTEGER} (2^53 - 1, what a browser's JSON reads exactly)"
Bound = Annotated[
    int | float,
    Field(allow_inf_nan=False),
    WithJsonSchema(
        {"type": "number", "minimum": -sample_schema.MAX_BOUND, "maximum": sample_schema.MAX_BOUND}
    ),
]


def trimmed_line(max_length: int) -> Any:
    """One-line text of 1 to max_length characters that must come trimmed (sample_schema's rule)."""
    return Annotated[
        str, Field(min_length=1, max_length=max_length), DocumentedPattern(STRICTLY_TRIMMED_LINE_PATTERN)
    ]


Choice = trimmed_line(CHOICE_MAX_LENGTH)


# A letter, then letters, digits or _; not a built-in column of every sample, in any case.
_FIELD_NAME_DOCUMENTED = (
    "^(?!(?:"
    + "|".join(any_case(name) for name in sorted(RESERVED_FIELD_NAMES))
    + ")$)"
    + FIELD_NAME_PATTERN[1:]
)
SampleId = Annotated[
    one_line(SAMPLE_ID_MAX_LENGTH),
    Field(
        description="your identifier; unique in the study after trimming and case-folding",
        examples=["S-0001"],
    ),
]

FIELD_EXAMPLES = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva", "tumour"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0},
    {"name": "collected_on", "type": "date", "required": True},
]


# Each type of field as the document states it: a discriminated union (`oneOf` one object per `type`,
# with `discriminator`), the shape client generators read as one class per type. Checking stays
# sample_schema's alone: these shapes are the contract, never the validator.
_CONSTRAINTS = ("max_length", "pattern", "min", "max", "choices")
FieldName = Annotated[
    str,
    StringConstraints(max_length=FIELD_NAME_MAX_LENGTH, pattern=FIELD_NAME_PATTERN),
    DocumentedPattern(_FIELD_NAME_DOCUMENTED),
    Field(description="a letter, then letters, digits or `_`; unique in the study case-insensitively"),
]
IntegerBound = Annotated[
    int,
    Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER, description=f"a whole number from {_SAFE_INTEGERS}"),
]
NumberBound = Annotated[Bound, Field(description=f"from {_SAFE_INTEGERS}")]


def _others_constraints_as_null(schema: dict[str, Any], shape: type[BaseModel]) -> None:
    others = [key for key in _CONSTRAINTS if key not in shape.model_fields]
    null_properties(schema, others, "not a constraint of this type: leave it out")


class _FieldShape(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_others_constraints_as_null)

    name: FieldName
    type: FieldType
    required: bool = False
    unit: trimmed_line(UNIT_MAX_LENGTH) | None = None
    description: trimmed_line(FIELD_DESCRIPTION_MAX_LENGTH) | None = None


class TextFieldDefinition(_FieldShape):
    """A text field: one line of at most `max_length` characters, matching `pattern` if it has one."""

    type: Literal[FieldType.TEXT]
    max_length: Annotated[int, Field(ge=1, le=TEXT_MAX_LENGTH_LIMIT)] | None = Field(
        default=None, description=f"at most this many characters; {TEXT_DEFAULT_MAX_LENGTH} when left out"
    )
    pattern: Annotated[str, Field(min_length=1, max_length=PATTERN_MAX_LENGTH)] | None = Field(
        default=None,
        description="a regular expression the whole value must match (RE2: no backreferences or "
        "look-arounds; `\\d`, `\\w` and `\\s` are ASCII-only)",
    )


class IntegerFieldDefinition(_FieldShape):
    """A whole number field, within `min` and `max` if it has them."""

    type: Literal[FieldType.INTEGER]
    min: IntegerBound | None = None
    max: IntegerBound | None = None


class NumberFieldDefinition(_FieldShape):
    """A number field, within `min` and `max` if it has them."""

    type: Literal[FieldType.NUMBER]
    min: NumberBound | None = None
    max: NumberBound | None = None


class BooleanFieldDefinition(_FieldShape):
    """A true/false field."""

    type: Literal[FieldType.BOOLEAN]


class DateFieldDefinition(_FieldShape):
    """A date field (`YYYY-MM-DD`)."""

    type: Literal[FieldType.DATE]


class DatetimeFieldDefinition(_FieldShape):
    """A date-time field (stored in UTC)."""

    type: Literal[FieldType.DATETIME]


class ChoiceFieldDefinition(_FieldShape):
    """A field whose value is one of its `choices`."""

    type: Literal[FieldType.CHOICE]
    choices: Annotated[
        list[Choice],
        Field(
            min_length=1,
            max_length=MAX_CHOICES,
            json_schema_extra={"uniqueItems": True},
            description="each one trimmed text, all different",
        ),
    ]


_FIELD_SHAPES = Annotated[
    TextFieldDefinition
    | IntegerFieldDefinition
    | NumberFieldDefinition
    | BooleanFieldDefinition
    | DateFieldDefinition
    | DatetimeFieldDefinition
    | ChoiceFieldDefinition,
    Field(discriminator="type"),
]


class SampleFieldDefinition(BaseModel):
    """One typed field of a study's samples, as checked. Serialised without the constraints it does not
    set: `{name, type, required, ...}`, the JSON a study stores.

    Documented as the union of each type's shape above; the checking is `sample_schema`'s alone,
    the same that compiles stored schemas, so that whatever is accepted here compiles there.
    """

    model_config = ConfigDict(use_enum_values=True)

    name: str
    type: FieldType
    required: bool = False
    unit: str | None = None
    description: str | None = None
    max_length: int | None = None
    pattern: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    choices: list[str] | None = None

    __get_pydantic_json_schema__ = documented_as(
        _FIELD_SHAPES,
        description="One typed field of a study's samples: the keys it may have depend on its `type`.",
        example=FIELD_EXAMPLES[0],
    )

    @model_validator(mode="before")
    @classmethod
    def read_by_sample_schema(cls, data: Any) -> Any:
        try:
            sample_schema.read_sample_field(data)
        except SampleSchemaError as error:
            raise _validation_error(error) from None
        return data

    @classmethod
    def _of_checked(cls, definition: dict[str, Any]) -> Self:
        return cls.model_construct(**{key: value for key, value in definition.items() if value is not None})

    @model_serializer(mode="wrap")
    def without_absent_constraints(self, handler: Any) -> dict[str, Any]:
        # Stored and answered as `{name, type, required, ...}` with only what is set.
        return {key: value for key, value in handler(self).items() if value is not None}


def _validation_error(error: SampleSchemaError) -> ValidationError:
    """The schema's problems as pydantic errors, each at its own loc (field index, key)."""
    return ValidationError.from_exception_data(
        "sample_fields",
        [
            {"type": PydanticCustomError("invalid_sample_field", message), "loc": loc, "input": None}
            for loc, message in error.located
        ],
    )


def _read_by_sample_schema(fields: Any, handler: Any) -> list[SampleFieldDefinition]:
    if not isinstance(fields, list):
        return handler(fields)  # pydantic's own "must be a list"
    try:
        sample_schema.read_sample_schema(fields)
    except SampleSchemaError as error:
        raise _validation_error(error) from None
    return [SampleFieldDefinition._of_checked(definition) for definition in fields]


SampleFields = Annotated[
    list[SampleFieldDefinition],
    Field(max_length=MAX_SAMPLE_FIELDS),
    WrapValidator(_read_by_sample_schema),
]


class SampleFieldRead(BaseModel):
    """A stored field definition as answered: read as stored, never checked or compiled again.

    Documented as the same shapes a study is written with (what is stored was accepted by them, and
    migrations bring older definitions within today's rules), so that a client can send back the
    fields it read.
    """

    __get_pydantic_json_schema__ = documented_as(
        _FIELD_SHAPES,
        description="One typed field of a study's samples, as stored: only the keys it sets.",
        example=FIELD_EXAMPLES[0],
    )

    name: str
    type: str
    required: bool = False
    unit: str | None = None
    description: str | None = None
    max_length: int | None = None
    pattern: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    choices: list[str] | None = None

    @model_serializer(mode="wrap")
    def without_absent_constraints(self, handler: Any) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


# Studies


class StudyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "code": "ONC-2026-01",
                "title": "Tumour markers in blood",
                "description": "Pilot cohort, site A.",
                "sample_fields": FIELD_EXAMPLES,
            }
        },
    )

    code: StudyCode
    title: Title
    description: Description | None = None
    sample_fields: SampleFields = Field(default_factory=list)


class StudyUpdate(BaseModel):
    """Fields left out stay as they are; `description: null` clears it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=never_null("code", "title", example={"title": "Tumour markers in blood (pilot)"}),
    )

    code: StudyCode | None = None
    title: Title | None = None
    description: Description | None = None

    @field_validator("code", "title", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"status": "active"}})

    status: StudyStatus


_STUDY_EXAMPLE = {
    "id": "5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70",
    "code": "ONC-2026-01",
    "title": "Tumour markers in blood",
    "description": "Pilot cohort, site A.",
    "status": "active",
    "sample_count": 42,
    "my_role": "owner",
    "created_by": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
    "created_at": "2026-11-22T09:30:00Z",
    "updated_at": "2026-11-22T10:05:00Z",
    "version": 3,
}


class StudySummary(BaseModel):
    """A study in a list: everything but its sample fields (up to 64 KiB each), which it counts."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"example": {**_STUDY_EXAMPLE, "sample_field_count": 3}}
    )

    id: uuid.UUID
    code: str
    title: str
    description: str | None
    status: StudyStatus
    sample_count: int
    my_role: StudyRole = Field(description="what you may do here; administrators act as owner everywhere")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="increases with every change; sent as `ETag`, checked by `If-Match`")
    sample_field_count: int = Field(description="how many sample fields; read the study for them")

    @classmethod
    def of(cls, study: object, *, role: StudyRole, sample_field_count: int) -> Self:
        columns = {name: getattr(study, name) for name in _STUDY_COLUMNS}
        return cls.model_validate({**columns, "my_role": role, "sample_field_count": sample_field_count})


_STUDY_COLUMNS = [name for name in StudySummary.model_fields if name not in ("my_role", "sample_field_count")]


class StudyRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"example": {**_STUDY_EXAMPLE, "sample_fields": FIELD_EXAMPLES}},
    )

    id: uuid.UUID
    code: str
    title: str
    description: str | None
    status: StudyStatus
    sample_fields: list[SampleFieldRead]
    sample_count: int
    my_role: StudyRole = Field(description="what you may do here; administrators act as owner everywhere")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="increases with every change; sent as `ETag`, checked by `If-Match`")

    @classmethod
    def of(cls, study: object, *, role: StudyRole) -> "StudyRead":
        columns = {name: getattr(study, name) for name in cls.model_fields if name != "my_role"}
        return cls.model_validate({**columns, "my_role": role})


# Members


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"role": "viewer"}})

    role: StudyRole


class MemberRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "user_id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
                "email": "grace@example.org",
                "full_name": "Grace Hopper",
                "role": "editor",
                "added_at": "2026-11-22T09:30:00Z",
            }
        }
    )

    user_id: uuid.UUID
    email: str
    full_name: str
    role: StudyRole
    added_at: datetime


# Samples


SAMPLE_VALUES_DESCRIPTION = (
    "keyed by field name; validated and normalised against the study's fields. Text is one line: "
    "control, invisible and direction-changing characters are refused (`invalid_text`), and it holds "
    f"at most the field's `max_length` ({TEXT_DEFAULT_MAX_LENGTH} when the field sets none; `too_long`). "
    f"Integers are from {_SAFE_INTEGERS}, whatever the field's bounds (`below_min`, `above_max`)."
)


class SampleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "sample_id": "S-0001",
                "status": "received",
                "values": {"tissue": "blood", "volume": 4.5, "collected_on": "2026-11-20"},
            }
        },
    )

    sample_id: SampleId
    status: SampleStatus = SampleStatus.REGISTERED
    values: dict[str, Any] = Field(default_factory=dict, description=SAMPLE_VALUES_DESCRIPTION)


class SampleUpdate(BaseModel):
    """A merge: keys given in `values` replace those values, `null` clears an optional one, the rest stay."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=never_null(
            "sample_id", "status", "values", example={"status": "stored", "values": {"volume": None}}
        ),
    )

    sample_id: SampleId | None = None
    status: SampleStatus | None = None
    values: dict[str, Any] | None = Field(
        default=None, description=f"the values to replace, {SAMPLE_VALUES_DESCRIPTION}"
    )

    @field_validator("sample_id", "status", "values", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class SampleRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "0d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
                "study_id": "5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70",
                "sample_id": "S-0001",
                "status": "received",
                "values": {"tissue": "blood", "volume": 4.5, "collected_on": "2026-11-20"},
                "source_file_id": None,
                "created_by": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
                "created_at": "2026-11-22T09:30:00Z",
                "updated_at": "2026-11-22T09:30:00Z",
                "version": 1,
            }
        },
    )

    id: uuid.UUID
    study_id: uuid.UUID
    sample_id: str
    status: SampleStatus
    values: dict[str, Any]
    source_file_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


# Activity

ACTIVITY_DETAILS_DESCRIPTION = (
    "What changed, by action (`old` and `new` for edits). Kept small whatever was written: each text "
    f"of more than {ACTIVITY_TEXT_MAX_LENGTH} characters keeps its first {ACTIVITY_TEXT_MAX_LENGTH - 1} "
    f"and ends in `{ACTIVITY_CUT_MARK}`, and the details hold at most {ACTIVITY_DETAILS_MAX_BYTES} bytes "
    "of JSON: an object keeps the members that fit, a list its first items. When anything was cut, "
    f"`{ACTIVITY_TRUNCATED_KEY}` lists the JSON Pointer (RFC 6901) of each text cut and of each object "
    "or list that lost members or items; without it, the details are whole."
)


class ActivityActor(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str | None = Field(default=None, description="the account's name as it is now")


class ActivityStudy(BaseModel):
    id: uuid.UUID
    code: str
    title: str


class ActivityFile(BaseModel):
    id: uuid.UUID
    filename: str = Field(description="the file's name; the one the entry recorded once the file is deleted")
    deleted: bool = Field(description="true once the file's record is gone (deleted, or its study)")


ACTIVITY_EXAMPLE = {
    "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
    "action": "sample_updated",
    "actor": {
        "id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
        "email": "ada@example.org",
        "full_name": "Ada Lovelace",
    },
    "at": "2026-11-22T10:05:00Z",
    "details": {
        "sample_id": "S-0001",
        "old": {"values": {"volume": 4.5, "note": "Spun twice, then kept at -80 °C …"}},
        "new": {"values": {"volume": 4.0, "note": None}},
        "truncated": ["/old/values/note"],
    },
    "sample_pk": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
}


class ActivityRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": ACTIVITY_EXAMPLE})

    id: uuid.UUID
    action: str
    actor: ActivityActor | None = Field(description="null when the account no longer exists")
    at: datetime
    details: dict[str, Any] = Field(description=ACTIVITY_DETAILS_DESCRIPTION)
    sample_pk: uuid.UUID | None = Field(
        default=None,
        description="the sample the entry is about (its `id`, stable when the sample id changes); "
        "absent for other entries and for entries written before migration 0016 whose sample was "
        "renamed or deleted since",
    )
    file: ActivityFile | None = Field(default=None, description="the sample file the entry is about")
    study: ActivityStudy | None = Field(
        default=None, description="the entry's study, where entries of several studies are listed (dashboard)"
    )

    @classmethod
    def of(cls, entry: Any) -> Self:
        """From the service's ActivityEntry: the entry, its actor (None once the account is gone), the
        file's name now (None once its record is gone) and, on lists across studies, its study."""
        activity, actor = entry.activity, entry.actor
        who = (
            ActivityActor(id=actor.id, email=actor.email, full_name=actor.full_name)
            if actor is not None
            else None
        )
        file = None
        if activity.sample_file_id is not None:
            recorded = activity.details.get("filename", "")
            file = ActivityFile(
                id=activity.sample_file_id,
                filename=entry.filename if entry.filename is not None else recorded,
                deleted=entry.filename is None,
            )
        study = None
        if entry.study is not None:
            study_id, code, title = entry.study
            study = ActivityStudy(id=study_id, code=code, title=title)
        return cls(
            id=activity.id,
            action=activity.action,
            actor=who,
            at=activity.at,
            details=activity.details,
            sample_pk=activity.sample_pk,
            file=file,
            study=study,
        )
