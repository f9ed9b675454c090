"""A study's sample schema: its field definitions read and checked, and the changes to it after
which a stored sample might no longer be valid.

A definition becomes a SampleField, whose checks are the ones the API's schemas document, so a
schema they accept always compiles into a validator (src/study/sample_validation.py). A schema as a
whole is bounded: its fields, its choices, its JSON and what its patterns cost to compile.

Text patterns run on RE2 (google-re2), whose matching time is linear in the text, so a
researcher's pattern such as `(a+)+$` cannot cost seconds. RE2 has no backreferences or
look-arounds, and its `\\d`, `\\w` and `\\s` are ASCII-only.
"""

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import re2

from src.schemas import has_control_characters

# The limits are the ones the API's schemas enforce: a schema they accept always compiles here.
from src.study.constants import (
    CHOICE_MAX_LENGTH,
    FIELD_DESCRIPTION_MAX_LENGTH,
    FIELD_NAME_PATTERN,
    MAX_CHOICES,
    MAX_SAFE_INTEGER,
    MAX_SAMPLE_FIELDS,
    MAX_SCHEMA_JSON,
    MAX_TOTAL_CHOICES,
    PATTERN_MAX_LENGTH,
    RESERVED_FIELD_NAMES,
    TEXT_DEFAULT_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
    UNIT_MAX_LENGTH,
    FieldType,
)
from src.study.utils import duplicates

# An error message lists at most this many choices; a field may have a thousand.
LISTED_CHOICES = 10

# What one researcher's pattern may cost to compile (compiling is linear in the program RE2 builds,
# a few milliseconds per thousand instructions): RE2 memory per compiled pattern, counted
# repetitions (`.{0,999}` is 999 copies of `.`), Unicode classes (`(?i)\pL` alone is 1,200
# instructions) and the program's size. Once a schema's patterns have cost SCHEMA_MAX_PATTERN_PROGRAM
# instructions, its remaining patterns are refused without compiling.
PATTERN_MAX_MEMORY = 1 << 20
PATTERN_MAX_REPEAT = 100
PATTERN_MAX_UNICODE_CLASSES = 4
PATTERN_MAX_PROGRAM = 5_000
SCHEMA_MAX_PATTERN_PROGRAM = 8_000

_CONSTRAINT_KEYS = frozenset({"max_length", "pattern", "min", "max", "choices"})
_DEFINITION_KEYS = _CONSTRAINT_KEYS | {"name", "type", "required", "unit", "description"}
_KEYS_OF_TYPE = {
    FieldType.TEXT: {"max_length", "pattern"},
    FieldType.INTEGER: {"min", "max"},
    FieldType.NUMBER: {"min", "max"},
    FieldType.CHOICE: {"choices"},
}
_FIELD_NAME = re.compile(FIELD_NAME_PATTERN)
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
# Bounds of integer and number fields: every integer up to 2**53 - 1 is exact as a float and in a
# browser's JSON, so a bound means the same to every client and database; larger ones are refused
# before any conversion.
MAX_BOUND = MAX_SAFE_INTEGER
# Escapes (read as pairs, so `\\{` is not a repetition) and counted repetitions of a pattern.
_PATTERN_TOKENS = re.compile(r"\\(.)|\{([0-9]+)(?:,([0-9]*))?\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SampleField:
    """One field definition, read and checked; absent constraints are None, but a text field's
    max_length, which is its own or else TEXT_DEFAULT_MAX_LENGTH."""

    name: str
    type: FieldType
    required: bool = False
    unit: str | None = None
    description: str | None = None
    max_length: int | None = None
    pattern: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    choices: tuple[str, ...] | None = None


Loc = tuple[int | str, ...]


class SampleSchemaError(ValueError):
    """A schema that cannot be compiled; `problems` has one message per mistake.

    `located` pairs each message with where it is in the schema (field index, then key), for an
    API that answers with a `loc` per error; () is the schema as a whole.
    """

    def __init__(self, problems: list[str], located: list[tuple[Loc, str]] | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.located = located if located is not None else [((), problem) for problem in problems]


def fold(text: str) -> str:
    """The case-insensitive key of a name or identifier: trimmed, NFC, case-folded."""
    text = text.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.casefold()


# ---------------------------------------------------------------------------------------------
# Text patterns


@dataclass(frozen=True, slots=True)
class _CompiledPattern:
    matches: Callable[[str], bool] | None
    problem: str | None
    program_size: int


def compile_text_pattern(pattern: str) -> Callable[[str], bool]:
    """A full-match test for a researcher's pattern, in linear time; ValueError if it cannot be one."""
    if not isinstance(pattern, str):
        raise ValueError("pattern must be a non-empty string")
    compiled = _compiled_pattern(pattern)
    if compiled.matches is None:
        raise ValueError(compiled.problem)
    return compiled.matches


def pattern_cost(pattern: str) -> int:
    """What compiling the pattern costs, in RE2 instructions; one refused by its text alone costs 0."""
    return _compiled_pattern(pattern).program_size if isinstance(pattern, str) else 0


@lru_cache(maxsize=1024)
def _compiled_pattern(pattern: str) -> _CompiledPattern:
    """Each distinct pattern is compiled once per process, refused ones included.

    The test runs on an RE2 set first (a fast path through the library's public API); a set
    answers "no match" also when its DFA runs out of memory, so a "no" is confirmed by the
    regular matcher, which falls back to a slower linear engine instead of giving up.
    """
    problem = _pattern_text_problem(pattern)
    if problem is not None:
        return _CompiledPattern(None, problem, 0)
    options = re2.Options()
    options.log_errors = False
    options.max_mem = PATTERN_MAX_MEMORY
    try:
        regexp = re2.compile(pattern, options)
        program_size = regexp._regexp.ProgramSize()
        if program_size > PATTERN_MAX_PROGRAM:
            return _CompiledPattern(None, "invalid pattern: too complex", program_size)
        fast_set = re2.Set.FullMatchSet(options)
        fast_set.Add(pattern)
        fast_set.Compile()
    except (re2.error, UnicodeEncodeError) as error:
        reason = _re2_reason(error)
        # Only running out of memory costs a full compile; a syntax error stops at parsing.
        cost = PATTERN_MAX_PROGRAM if reason == "too complex" else 0
        return _CompiledPattern(None, f"invalid pattern: {reason}", cost)

    def full_match(text: str) -> bool:
        return fast_set.Match(text) is not None or regexp.fullmatch(text) is not None

    return _CompiledPattern(full_match, None, program_size)


def _pattern_text_problem(pattern: object) -> str | None:
    """What makes a pattern too costly to even try compiling, read from its text alone."""
    if not isinstance(pattern, str) or not pattern:
        return "pattern must be a non-empty string"
    if len(pattern) > PATTERN_MAX_LENGTH:
        return f"pattern must be at most {PATTERN_MAX_LENGTH} characters"
    unicode_classes = 0
    for token in _PATTERN_TOKENS.finditer(pattern):
        escaped, low, high = token.groups()
        if escaped in ("p", "P"):
            unicode_classes += 1
        elif escaped is None and max(int(low), int(high or 0)) > PATTERN_MAX_REPEAT:
            return f"invalid pattern: a counted repetition may be at most {{{PATTERN_MAX_REPEAT}}}"
    if unicode_classes > PATTERN_MAX_UNICODE_CLASSES:
        return f"invalid pattern: at most {PATTERN_MAX_UNICODE_CLASSES} Unicode classes (\\p, \\P)"
    return None


def _re2_reason(error: Exception) -> str:
    reason = error.args[0] if error.args else str(error)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    if "too large" in str(reason):
        return "too complex"
    return str(reason)


# ---------------------------------------------------------------------------------------------
# Reading definitions


def read_sample_field(definition: Mapping[str, object]) -> SampleField:
    """One field definition as a SampleField; SampleSchemaError lists what is wrong with it."""
    field, located = _read_field(definition)
    if located:
        raise SampleSchemaError([message for _loc, message in located], located)
    return field


def _read_field(definition: object) -> tuple[SampleField | None, list[tuple[Loc, str]]]:
    """The field, or None and each problem with the key it is about (() for the whole definition)."""
    if not isinstance(definition, Mapping):
        return None, [((), "a field definition must be an object")]
    name = definition.get("name")
    label = name if isinstance(name, str) and _FIELD_NAME.fullmatch(name) else "?"
    located: list[tuple[Loc, str]] = [(("name",), problem) for problem in _name_problems(name)]
    field_type = definition.get("type")
    if field_type not in FieldType.__members__.values():
        located.append((("type",), f"{label}: type must be one of: {', '.join(FieldType)}"))
        return None, located
    field_type = FieldType(field_type)
    unknown = sorted(printable(str(key)[:64]) for key in set(definition) - _DEFINITION_KEYS)
    located += [((key,), f"{label}: unknown key {key}") for key in unknown[:LISTED_CHOICES]]
    given = {key for key, value in definition.items() if value is not None}
    misplaced = sorted((given & _CONSTRAINT_KEYS) - _KEYS_OF_TYPE.get(field_type, set()))
    if misplaced:
        located.append(((), f"{label}: a {field_type} field cannot have {', '.join(misplaced)}"))
    required = definition.get("required", False)
    if not isinstance(required, bool):
        located.append((("required",), f"{label}: required must be true or false"))
    for key, max_length in (("unit", UNIT_MAX_LENGTH), ("description", FIELD_DESCRIPTION_MAX_LENGTH)):
        problem = _optional_text_problem(label, key, definition.get(key), max_length)
        if problem is not None:
            located.append(((key,), problem))
    located += _constraint_problems(label, field_type, definition)
    if located:
        return None, located
    choices = definition.get("choices")
    return SampleField(
        name=name,
        type=field_type,
        required=required,
        unit=definition.get("unit"),
        description=definition.get("description"),
        max_length=_max_length(field_type, definition.get("max_length")),
        pattern=definition.get("pattern"),
        min=_bound(field_type, definition.get("min")),
        max=_bound(field_type, definition.get("max")),
        choices=tuple(choices) if choices is not None else None,
    ), []


def _name_problems(name: object) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["every field needs a name"]
    if not _FIELD_NAME.fullmatch(name):
        return [f"{printable(name[:70])!r}: a field name is a letter then up to 63 letters, digits or _"]
    if fold(name) in RESERVED_FIELD_NAMES:
        return [f"{name}: the name is taken by a built-in column of every sample"]
    return []


def _optional_text_problem(label: str, key: str, value: object, max_length: int) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or value != value.strip()
        or len(value) > max_length
        or has_control_characters(value)
        or UNSTORABLE_TEXT.search(value)
    ):
        return f"{label}: {key} must be trimmed one-line text of 1 to {max_length} characters"
    return None


def _constraint_problems(
    label: str, field_type: FieldType, definition: Mapping[str, object]
) -> list[tuple[Loc, str]]:
    if field_type is FieldType.TEXT:
        return _text_constraint_problems(label, definition.get("max_length"), definition.get("pattern"))
    if field_type in (FieldType.INTEGER, FieldType.NUMBER):
        return _bound_problems(label, field_type, definition.get("min"), definition.get("max"))
    if field_type is FieldType.CHOICE:
        return _choices_problems(label, definition.get("choices"))
    return []


def _text_constraint_problems(label: str, max_length: object, pattern: object) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if max_length is not None and (
        not isinstance(max_length, int)
        or isinstance(max_length, bool)
        or not 1 <= max_length <= TEXT_MAX_LENGTH_LIMIT
    ):
        problems.append(
            (("max_length",), f"{label}: max_length must be a whole number from 1 to {TEXT_MAX_LENGTH_LIMIT}")
        )
    if pattern is not None:
        try:
            compile_text_pattern(pattern)
        except ValueError as error:
            problems.append((("pattern",), f"{label}: {error}"))
    return problems


def _bound_problems(label: str, field_type: FieldType, low: object, high: object) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for key, bound in (("min", low), ("max", high)):
        if bound is None:
            continue
        # Compared as given (a huge int is never converted to float, which would overflow).
        if not _is_real(bound) or not -MAX_BOUND <= bound <= MAX_BOUND:  # NaN is not between either
            rule = f"a finite number from -{MAX_BOUND} to {MAX_BOUND}"
            problems.append(((key,), f"{label}: {key} must be {rule}"))
        elif field_type is FieldType.INTEGER and isinstance(bound, float) and not bound.is_integer():
            problems.append(((key,), f"{label}: {key} of an integer field must be a whole number"))
    if not problems and low is not None and high is not None and low > high:
        problems.append(((), f"{label}: min must not be above max"))
    return problems


def _choices_problems(label: str, choices: object) -> list[tuple[Loc, str]]:
    if not isinstance(choices, list | tuple) or not choices:
        return [(("choices",), f"{label}: a choice field needs a non-empty list of choices")]
    if len(choices) > MAX_CHOICES:
        return [(("choices",), f"{label}: at most {MAX_CHOICES} choices")]
    for index, choice in enumerate(choices):
        if (
            not isinstance(choice, str)
            or not choice
            or choice != choice.strip()
            or len(choice) > CHOICE_MAX_LENGTH
            or has_control_characters(choice)
            or UNSTORABLE_TEXT.search(choice)
        ):
            rule = f"each choice must be trimmed one-line text of 1 to {CHOICE_MAX_LENGTH} characters"
            return [(("choices", index), f"{label}: {rule}")]
    repeated = duplicates(choices)
    if repeated:
        return [
            (
                ("choices",),
                f"{label}: choices must be unique; repeated: {', '.join(repeated[:LISTED_CHOICES])}",
            )
        ]
    return []


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _max_length(field_type: FieldType, max_length: int | None) -> int | None:
    # Stored definitions from before the default have none: they get it here, when compiled.
    if field_type is FieldType.TEXT and max_length is None:
        return TEXT_DEFAULT_MAX_LENGTH
    return max_length


def _bound(field_type: FieldType, bound: int | float | None) -> int | float | None:
    if bound is None:
        return None
    return int(bound) if field_type is FieldType.INTEGER else float(bound)


def number_text(bound: float) -> str:
    """A bound as a researcher wrote it: 10, not 10.0."""
    return str(int(bound)) if math.isfinite(bound) and float(bound).is_integer() else repr(bound)


def printable(text: str) -> str:
    """Text as it can be shown in a message: an unpaired surrogate (not encodable) as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_sample_schema(fields: Sequence[Mapping[str, object]]) -> tuple[SampleField, ...]:
    """Every field definition of a schema read and checked, names unique case-insensitively.

    The schema as a whole is bounded too: at most MAX_SAMPLE_FIELDS fields, MAX_TOTAL_CHOICES
    choices and MAX_SCHEMA_JSON characters of JSON, and patterns compiled only until they have cost
    SCHEMA_MAX_PATTERN_PROGRAM; what a study answers, stores and caches stays small whatever was sent.
    """
    if not isinstance(fields, Sequence) or isinstance(fields, str):
        raise SampleSchemaError(["sample fields must be a list"])
    if len(fields) > MAX_SAMPLE_FIELDS:
        raise SampleSchemaError([f"at most {MAX_SAMPLE_FIELDS} sample fields"])
    located: list[tuple[Loc, str]] = []
    read: list[SampleField] = []
    seen: dict[str, str] = {}
    over_budget = compile_schema_patterns(fields)
    for index, definition in enumerate(fields):
        if index in over_budget:
            located.append(((index, "pattern"), "the schema's patterns together are too complex"))
            continue
        field, problems = _read_field(definition)
        located += [((index, *loc), message) for loc, message in problems]
        if field is None:
            continue
        key = fold(field.name)
        if key in seen:
            located.append(((index, "name"), f"{field.name}: the name is already used by {seen[key]}"))
        seen[key] = field.name
        read.append(field)
    if not located:
        located = _schema_size_problems(read, fields)
    if located:
        raise SampleSchemaError([message for _loc, message in located], located)
    return tuple(read)


def compile_schema_patterns(fields: object) -> set[int]:
    """Compiles (into the cache) the patterns of a schema in order until they have cost
    SCHEMA_MAX_PATTERN_PROGRAM; answers the indices of the fields whose pattern came after that.

    An API can call it in a worker thread first, so that checking the schema on the event loop
    finds every pattern it will compile already compiled.
    """
    if not isinstance(fields, Sequence) or isinstance(fields, str):
        return set()
    over_budget: set[int] = set()
    budget = SCHEMA_MAX_PATTERN_PROGRAM
    for index, definition in enumerate(fields[:MAX_SAMPLE_FIELDS]):
        pattern = definition.get("pattern") if isinstance(definition, Mapping) else None
        if not isinstance(pattern, str):
            continue
        if budget <= 0:
            over_budget.add(index)
        else:
            budget -= pattern_cost(pattern)
    return over_budget


def _schema_size_problems(
    read: Sequence[SampleField], fields: Sequence[Mapping[str, object]]
) -> list[tuple[Loc, str]]:
    if sum(len(field.choices or ()) for field in read) > MAX_TOTAL_CHOICES:
        return [((), f"at most {MAX_TOTAL_CHOICES} choices in all the fields together")]
    stored = [_as_stored(definition) for definition in fields]
    if len(json.dumps(stored, separators=(",", ":"), ensure_ascii=False)) > MAX_SCHEMA_JSON:
        return [((), f"the sample fields must take at most {MAX_SCHEMA_JSON} characters of JSON")]
    return []


def _as_stored(definition: Mapping[str, object]) -> dict[str, object]:
    """A definition as a study stores it (SampleFieldDefinition's dump): `required` always said,
    null constraints left out. Measured so, a schema accepted is one that compiles once stored."""
    return {"required": False, **{key: value for key, value in definition.items() if value is not None}}


# ---------------------------------------------------------------------------------------------
# Schema changes


def incompatible_schema_changes(
    old: Sequence[Mapping[str, object]], new: Sequence[Mapping[str, object]]
) -> list[str]:
    """One message per change after which a sample valid under `old` might not be under `new`.

    Compatible: adding an optional field or choices, loosening or dropping a bound, a max_length
    or a pattern, required→optional, editing a description or a unit (the issue lists a unit as
    editable: the stored numbers are not converted).
    """
    old_fields = read_sample_schema(old)
    new_fields = read_sample_schema(new)
    new_by_name = {field.name: field for field in new_fields}
    new_by_key = {fold(field.name): field for field in new_fields}
    old_names = {field.name for field in old_fields}
    changes: list[str] = []
    for before in old_fields:
        after = new_by_name.get(before.name)
        if after is not None:
            changes += _field_changes(before, after)
            continue
        renamed = new_by_key.get(fold(before.name))
        if renamed is not None:
            changes.append(f"{before.name}: renamed to {renamed.name}")
        else:
            changes.append(f"{before.name}: removed")
    old_keys = {fold(name) for name in old_names}
    changes += [
        f"{field.name}: added as a required field"
        for field in new_fields
        if field.required and fold(field.name) not in old_keys
    ]
    return changes


def _field_changes(before: SampleField, after: SampleField) -> list[str]:
    name = before.name
    if before.type is not after.type:
        return [f"{name}: type changed from {before.type} to {after.type}"]
    changes = []
    if after.required and not before.required:
        changes.append(f"{name}: made required")
    if after.max_length is not None and (before.max_length is None or after.max_length < before.max_length):
        changes.append(f"{name}: max_length lowered to {after.max_length}")
    if after.pattern is not None and after.pattern != before.pattern:
        changes.append(f"{name}: pattern added or changed")
    if after.min is not None and (before.min is None or after.min > before.min):
        changes.append(f"{name}: min raised to {number_text(after.min)}")
    if after.max is not None and (before.max is None or after.max < before.max):
        changes.append(f"{name}: max lowered to {number_text(after.max)}")
    if before.choices is not None:
        removed = [choice for choice in before.choices if choice not in set(after.choices or ())]
        changes += [f"{name}: choice {choice} removed" for choice in removed]
    return changes
