"""The JSON contract of the study module."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_serializer,
    model_validator,
)

from src.schemas import SingleLineText, no_control_characters
from src.study.constants import (
    CHOICE_MAX_LENGTH,
    CODE_PATTERN,
    DESCRIPTION_MAX_LENGTH,
    FIELD_DESCRIPTION_MAX_LENGTH,
    FIELD_NAME_PATTERN,
    MAX_CHOICES,
    MAX_SAMPLE_FIELDS,
    PATTERN_MAX_LENGTH,
    RESERVED_FIELD_NAMES,
    SAMPLE_ID_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
    TITLE_MAX_LENGTH,
    UNIT_MAX_LENGTH,
    FieldType,
    SampleStatus,
    StudyRole,
    StudyStatus,
)
from src.study.sample_validation import compile_text_pattern
from src.study.utils import duplicates, without_nul

# Which optional constraints each field type takes; any other constraint on it is a mistake.
_CONSTRAINTS_OF_TYPE = {
    FieldType.TEXT: {"max_length", "pattern"},
    FieldType.INTEGER: {"min", "max"},
    FieldType.NUMBER: {"min", "max"},
    FieldType.CHOICE: {"choices"},
}
_CONSTRAINTS = ("max_length", "pattern", "min", "max", "choices")

StudyCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=CODE_PATTERN),
    Field(description="2-32 letters, digits and `-`; unique case-insensitively", examples=["ONC-2026-01"]),
]


def one_line(max_length: int) -> Any:
    """Trimmed one-line text of 1 to max_length characters (trimmed first, then measured)."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length),
        no_control_characters,
    ]


Title = one_line(TITLE_MAX_LENGTH)
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(without_nul)]
Bound = Annotated[int | float, Field(allow_inf_nan=False)]
Choice = one_line(CHOICE_MAX_LENGTH)
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


class SampleFieldDefinition(BaseModel):
    """One typed field of a study's samples. Serialised without the constraints it does not set."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": FIELD_EXAMPLES[0]}, use_enum_values=True
    )

    name: Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]
    type: FieldType
    required: bool = False
    unit: one_line(UNIT_MAX_LENGTH) | None = None
    description: Annotated[SingleLineText, Field(max_length=FIELD_DESCRIPTION_MAX_LENGTH)] | None = None
    max_length: Annotated[int, Field(ge=1, le=TEXT_MAX_LENGTH_LIMIT)] | None = None
    pattern: Annotated[str, Field(min_length=1, max_length=PATTERN_MAX_LENGTH)] | None = None
    min: Bound | None = None
    max: Bound | None = None
    choices: Annotated[list[Choice], Field(min_length=1, max_length=MAX_CHOICES)] | None = None

    @field_validator("name")
    @classmethod
    def not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED_FIELD_NAMES:
            raise ValueError(f"{name} is a column of every sample; choose another name")
        return name

    @field_validator("pattern")
    @classmethod
    def compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_text_pattern(pattern)  # its ValueError says why the pattern cannot be used
        return pattern

    @field_validator("choices")
    @classmethod
    def choices_unique(cls, choices: list[str] | None) -> list[str] | None:
        repeated = duplicates(choices or [])
        if repeated:
            raise ValueError(f"choices must be unique; repeated: {', '.join(repeated)}")
        return choices

    @model_validator(mode="after")
    def constraints_fit_the_type(self) -> Self:
        allowed = _CONSTRAINTS_OF_TYPE.get(FieldType(self.type), set())
        misplaced = [name for name in _CONSTRAINTS if getattr(self, name) is not None and name not in allowed]
        if misplaced:
            raise ValueError(f"a {self.type} field cannot have {', '.join(misplaced)}")
        if self.type == FieldType.CHOICE and self.choices is None:
            raise ValueError("a choice field needs choices")
        if self.type == FieldType.INTEGER and any(
            isinstance(bound, float) and not bound.is_integer() for bound in (self.min, self.max)
        ):
            raise ValueError("the bounds of an integer field must be whole numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self

    @model_serializer(mode="wrap")
    def without_absent_constraints(self, handler: Any) -> dict[str, Any]:
        # Stored and answered as `{name, type, required, ...}` with only what is set.
        return {key: value for key, value in handler(self).items() if value is not None}


def _field_names_unique(fields: list[SampleFieldDefinition]) -> list[SampleFieldDefinition]:
    repeated = duplicates(field.name.lower() for field in fields)
    if repeated:
        raise ValueError(f"field names must be unique (ignoring case); repeated: {', '.join(repeated)}")
    return fields


SampleFields = Annotated[
    list[SampleFieldDefinition], Field(max_length=MAX_SAMPLE_FIELDS), AfterValidator(_field_names_unique)
]


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
        extra="forbid", json_schema_extra={"example": {"title": "Tumour markers in blood (pilot)"}}
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


class StudyRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70",
                "code": "ONC-2026-01",
                "title": "Tumour markers in blood",
                "description": "Pilot cohort, site A.",
                "status": "active",
                "sample_fields": FIELD_EXAMPLES,
                "sample_count": 42,
                "my_role": "owner",
                "created_by": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
                "created_at": "2026-11-22T09:30:00Z",
                "updated_at": "2026-11-22T10:05:00Z",
                "version": 3,
            }
        },
    )

    id: uuid.UUID
    code: str
    title: str
    description: str | None
    status: StudyStatus
    sample_fields: list[SampleFieldDefinition]
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


class MemberAdd(BaseModel):
    """Name the user by `user_id` or by `email` (exactly one)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"email": "grace@example.org", "role": "editor"}}
    )

    user_id: uuid.UUID | None = None
    email: one_line(320) | None = None
    role: StudyRole

    @model_validator(mode="after")
    def names_one_user(self) -> Self:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give either user_id or email")
        return self


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
    values: dict[str, Any] = Field(
        default_factory=dict,
        description="keyed by field name; validated and normalised against the study's fields",
    )


class SampleUpdate(BaseModel):
    """A merge: keys given in `values` replace those values, `null` clears an optional one, the rest stay."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"status": "stored", "values": {"volume": None}}}
    )

    sample_id: SampleId | None = None
    status: SampleStatus | None = None
    values: dict[str, Any] | None = None

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


class ActivityActor(BaseModel):
    id: uuid.UUID
    email: str


class ActivityRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
                "action": "sample_updated",
                "actor": {"id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90", "email": "ada@example.org"},
                "at": "2026-11-22T10:05:00Z",
                "details": {"sample_id": "S-0001", "old": {"volume": 4.5}, "new": {"volume": 4.0}},
            }
        }
    )

    id: uuid.UUID
    action: str
    actor: ActivityActor | None = Field(description="null when the account no longer exists")
    at: datetime
    details: dict[str, Any]
