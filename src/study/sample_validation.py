"""A study's sample schema compiled into a validator: one closure per field, applied without I/O.

Values arrive from three places and all are accepted: JSON from the API (typed), CSV cells (always
strings) and XLSX cells as openpyxl gives them (int, float, bool, datetime, date, str). Every value
is normalised to one JSON form, so that stored values compare equal whoever typed them:

- text: trimmed str of one line. Numbers become their decimal text (an Excel cell holding 12 in a
  text column reads "12"; a whole float 12.0 reads "12") and dates their ISO text; booleans are
  refused. Control, invisible and direction-changing characters are refused by the rule of one-line
  text everywhere (src/schemas.py; tab and newline included: no field is multi-line), and so are
  lone surrogates (PostgreSQL's JSONB cannot store them). A field without a max_length of its own
  holds TEXT_DEFAULT_MAX_LENGTH characters; one may set up to TEXT_MAX_LENGTH_LIMIT.
- integer: int within plus or minus MAX_SAFE_INTEGER (2**53 - 1), what a browser's JSON reads
  exactly. "+42", "42.0" and 42.0 are 42 (Excel stores whole numbers as floats); exponents,
  thousands separators and fractions are refused.
- number: float. A decimal comma ("3,5", as European Excel writes CSV) is read as a decimal point
  unless it could be a thousands separator ("1,234" is refused as ambiguous). NaN and ±inf refused.
- boolean: bool, from true/false, yes/no, y/n, 1/0 in any case, or the numbers 1 and 0.
- date: "YYYY-MM-DD", from that text, a date, or a date-time at midnight without time zone (which
  is how Excel and most exports write a date).
- datetime: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" in UTC; text without an offset, and naive datetime
  objects (Excel has no time zones), are taken as UTC.
- choice: one of the defined choices, matched exactly after trimming.

Text patterns run on RE2 (google-re2), whose matching time is linear in the text, so a
researcher's pattern such as `(a+)+$` cannot cost seconds. RE2 has no backreferences or
look-arounds, and its `\\d`, `\\w` and `\\s` are ASCII-only.
"""

import datetime as dt
import json
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
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
    ValueErrorCode,
)
from src.study.utils import duplicates

# An error message lists at most this many choices; a field may have a thousand.
LISTED_CHOICES = 10

# What a filter on an integer field may name: any integer a database stores (values from before
# the safe limit may be larger than it).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Longer numeric text is refused before parsing: int() of a 100,000-digit string costs time, and
# no value within the bounds needs more characters than this.
MAX_NUMERIC_TEXT_LENGTH = 40
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
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_DECIMAL_COMMA_TEXT = re.compile(r"([+-]?)([0-9]+),([0-9]+)")
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "0"})
_MIDNIGHT = dt.time()
_FLOAT_LIMIT = 2**1023  # float() of a larger int overflows
# Bounds of integer and number fields: every integer up to 2**53 - 1 is exact as a float and in a
# browser's JSON, so a bound means the same to every client and database; larger ones are refused
# before any conversion.
MAX_BOUND = MAX_SAFE_INTEGER
# Escapes (read as pairs, so `\\{` is not a repetition) and counted repetitions of a pattern.
_PATTERN_TOKENS = re.compile(r"\\(.)|\{([0-9]+)(?:,([0-9]*))?\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ValueIssue:
    field: str
    code: ValueErrorCode
    message: str


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


class _Refused(Exception):
    """Raised by a field's coercer for a value it cannot accept; never leaves this module."""

    def __init__(self, code: ValueErrorCode, message: str) -> None:
        self.code = code
        self.message = message


def _fold(text: str) -> str:
    """The case-insensitive key of a name or identifier: trimmed, NFC, case-folded."""
    text = text.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.casefold()


def normalize_sample_id(sample_id: str) -> str:
    """The key a sample_id is unique under within its study: " ab-1 " and "AB-1" are the same."""
    return _fold(sample_id)


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
    unknown = sorted(_printable(str(key)[:64]) for key in set(definition) - _DEFINITION_KEYS)
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
        return [f"{_printable(name[:70])!r}: a field name is a letter then up to 63 letters, digits or _"]
    if _fold(name) in RESERVED_FIELD_NAMES:
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
        or _UNSTORABLE_TEXT.search(value)
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
            or _UNSTORABLE_TEXT.search(choice)
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


def _printable(text: str) -> str:
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
        key = _fold(field.name)
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
# Coercers: one closure per field, raising _Refused for a value they cannot accept


Coercer = Callable[[object], object]


def _text_of(raw: object) -> str:
    """A typed value as the text a spreadsheet shows for it; _Refused when there is none."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        raise _Refused(ValueErrorCode.NOT_TEXT, "must be text, not true/false")
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float) and math.isfinite(raw):
        return str(int(raw)) if raw.is_integer() else repr(raw)
    if isinstance(raw, dt.datetime):
        return raw.date().isoformat() if raw.time() == _MIDNIGHT and raw.tzinfo is None else raw.isoformat()
    if isinstance(raw, dt.date):
        return raw.isoformat()
    raise _Refused(ValueErrorCode.NOT_TEXT, "must be text")


def _storable(text: str) -> str:
    if has_control_characters(text):
        raise _Refused(
            ValueErrorCode.INVALID_TEXT,
            "holds a control, invisible or direction-changing character (text is one line)",
        )
    # isascii() is O(1) on CPython's strings, and ASCII has no surrogates.
    if not text.isascii() and _UNSTORABLE_TEXT.search(text):
        raise _Refused(ValueErrorCode.INVALID_TEXT, "holds an unpaired surrogate character")
    return text


def _text_coercer(field: SampleField, *, check_constraints: bool) -> Coercer:
    max_length = field.max_length if check_constraints else None
    matches = compile_text_pattern(field.pattern) if check_constraints and field.pattern else None

    def coerce_text(raw: object) -> str:
        text = _storable(raw if raw.__class__ is str else _text_of(raw).strip())
        if max_length is not None and len(text) > max_length:
            raise _Refused(ValueErrorCode.TOO_LONG, f"must be at most {max_length} characters")
        if matches is not None and not matches(text):
            raise _Refused(ValueErrorCode.PATTERN_MISMATCH, f"does not match the pattern {field.pattern}")
        return text

    return coerce_text


def _integer_of(raw: object) -> int:
    if raw.__class__ is str:
        # int() alone would take "1_000", Arabic-Indic digits and 4,000-digit strings.
        if raw.isdigit() and raw.isascii() and len(raw) <= MAX_NUMERIC_TEXT_LENGTH:
            return int(raw)
        if len(raw) <= MAX_NUMERIC_TEXT_LENGTH and _INTEGER_TEXT.fullmatch(raw):
            return int(raw.partition(".")[0])
    elif isinstance(raw, bool):
        pass
    elif isinstance(raw, int):
        return raw
    elif isinstance(raw, float) and raw.is_integer():
        return int(raw)
    raise _Refused(ValueErrorCode.NOT_AN_INTEGER, "must be a whole number")


def _number_of(raw: object) -> float:
    if raw.__class__ is str:
        number = _number_of_text(raw) if len(raw) <= MAX_NUMERIC_TEXT_LENGTH else None
    elif isinstance(raw, bool):
        number = None
    elif isinstance(raw, int):
        number = float(raw) if abs(raw) < _FLOAT_LIMIT else None
    elif isinstance(raw, float):
        number = raw
    else:
        number = None
    if number is None or not math.isfinite(number):
        raise _Refused(ValueErrorCode.NOT_A_NUMBER, "must be a finite number")
    return number + 0.0  # -0.0 is stored as 0.0


def _number_of_text(text: str) -> float | None:
    if "," not in text:
        # float() also takes "1_0" and non-ASCII digits (and "nan" and "inf", refused as not finite).
        if "_" in text or not text.isascii():
            return None
        try:
            return float(text)
        except ValueError:
            return None
    parts = _DECIMAL_COMMA_TEXT.fullmatch(text)
    if parts is None:
        return None
    sign, whole, fraction = parts.groups()
    # "1,234" is one thousand two hundred thirty-four in half the world and 1.234 in the other.
    if len(fraction) == 3 and len(whole) <= 3 and whole[0] != "0":
        raise _Refused(
            ValueErrorCode.NOT_A_NUMBER,
            "is ambiguous: the comma could be a decimal or a thousands separator; use a decimal point",
        )
    return float(f"{sign}{whole}.{fraction}")


def _numeric_coercer(
    read: Callable[[object], int | float],
    bounds: tuple[int | float, int | float],
    bound_texts: tuple[str, str],
) -> Coercer:
    low, high = bounds
    low_text, high_text = bound_texts

    def coerce_numeric(raw: object) -> int | float:
        value = read(raw)
        if value < low:
            raise _Refused(ValueErrorCode.BELOW_MIN, f"must be at least {low_text}")
        if value > high:
            raise _Refused(ValueErrorCode.ABOVE_MAX, f"must be at most {high_text}")
        return value

    return coerce_numeric


def _integer_coercer(field: SampleField, *, check_constraints: bool) -> Coercer:
    if not check_constraints:
        return _numeric_coercer(_integer_of, (INT64_MIN, INT64_MAX), (str(INT64_MIN), str(INT64_MAX)))
    # Whatever the bounds, integers stay within what every browser's JSON reads exactly.
    low = -MAX_SAFE_INTEGER if field.min is None else max(field.min, -MAX_SAFE_INTEGER)
    high = MAX_SAFE_INTEGER if field.max is None else min(field.max, MAX_SAFE_INTEGER)
    return _numeric_coercer(_integer_of, (low, high), (str(low), str(high)))


def _number_coercer(field: SampleField, *, check_constraints: bool) -> Coercer:
    if not check_constraints:
        return _number_of
    low = field.min if field.min is not None else -math.inf
    high = field.max if field.max is not None else math.inf
    return _numeric_coercer(_number_of, (low, high), (_number_text(low), _number_text(high)))


def _number_text(bound: float) -> str:
    """A bound as a researcher wrote it: 10, not 10.0."""
    return str(int(bound)) if math.isfinite(bound) and float(bound).is_integer() else repr(bound)


def _boolean_of(raw: object) -> bool:
    if raw is True or raw is False:
        return raw
    if raw.__class__ is str:
        word = raw.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    elif isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    raise _Refused(ValueErrorCode.NOT_A_BOOLEAN, "must be true or false (also yes/no, y/n, 1/0)")


def _date_of(raw: object) -> str:
    if raw.__class__ is str:
        if len(raw) == 10 and raw[4] == "-" and raw[7] == "-" and raw.isascii():
            try:
                dt.date.fromisoformat(raw)  # of ten ASCII characters it takes only YYYY-MM-DD
            except ValueError:
                pass
            else:
                return raw
        elif len(raw) > 10 and raw[4] == "-" and raw[7] == "-":
            raw = _datetime_text_or_none(raw)
    if isinstance(raw, dt.datetime):
        if raw.time() == _MIDNIGHT and raw.tzinfo is None:
            return raw.date().isoformat()
    elif isinstance(raw, dt.date):
        return raw.isoformat()
    raise _Refused(ValueErrorCode.NOT_A_DATE, "must be a date written YYYY-MM-DD")


def _datetime_text_or_none(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _datetime_of(raw: object) -> str:
    moment = raw
    if raw.__class__ is str and len(raw) == 20 and raw[19] == "Z" and raw[10] == "T" and raw.isascii():
        # Already the stored form (an export, a client echoing what it read): check, keep as is.
        moment = _datetime_text_or_none(raw)
        if moment is not None and moment.microsecond == 0:
            return raw
    if raw.__class__ is str:
        moment = _datetime_text_or_none(raw) if len(raw) >= 10 and raw[4] == "-" and raw[7] == "-" else None
    elif isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        moment = dt.datetime.combine(raw, _MIDNIGHT)
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            return moment.isoformat() + "Z"
        try:
            # Cheaper than dropping the tzinfo first: cut the "+00:00" that isoformat() appends.
            return moment.astimezone(dt.UTC).isoformat()[:-6] + "Z"
        except OverflowError:
            pass
    raise _Refused(
        ValueErrorCode.NOT_A_DATETIME,
        "must be a date and time written YYYY-MM-DDTHH:MM:SS with an offset or Z",
    )


def _choice_coercer(field: SampleField, *, check_constraints: bool) -> Coercer:
    choices = frozenset(field.choices)
    by_folded = {_fold(choice): choice for choice in field.choices}
    listed = ", ".join(field.choices[:LISTED_CHOICES])
    if len(field.choices) > LISTED_CHOICES:
        listed += f", ... ({len(field.choices)} choices)"

    def coerce_choice(raw: object) -> str:
        text = raw if raw.__class__ is str else _text_of(raw).strip()
        if text in choices:
            return text
        near = by_folded.get(_fold(text))
        hint = f" (did you mean {near}?)" if near is not None else ""
        raise _Refused(ValueErrorCode.NOT_A_CHOICE, f"not one of: {listed}{hint}")

    return coerce_choice


def _coercer(field: SampleField, *, check_constraints: bool) -> Coercer:
    if field.type is FieldType.TEXT:
        return _text_coercer(field, check_constraints=check_constraints)
    if field.type is FieldType.INTEGER:
        return _integer_coercer(field, check_constraints=check_constraints)
    if field.type is FieldType.NUMBER:
        return _number_coercer(field, check_constraints=check_constraints)
    if field.type is FieldType.CHOICE:
        return _choice_coercer(field, check_constraints=check_constraints)
    return {FieldType.BOOLEAN: _boolean_of, FieldType.DATE: _date_of, FieldType.DATETIME: _datetime_of}[
        field.type
    ]


# ---------------------------------------------------------------------------------------------
# The validator


class SampleValidator:
    """A compiled schema: immutable, so one instance serves every thread and request."""

    __slots__ = ("_by_folded_name", "_by_name", "_filter_coercers", "_required", "field_names", "fields")

    def __init__(self, fields: tuple[SampleField, ...]) -> None:
        self.fields = fields
        self.field_names = tuple(field.name for field in fields)
        # (name, required, coerce) per field, found in one look-up under its exact name (what an
        # importer that mapped its headers passes) or else under its folded name.
        compiled = [(field.name, field.required, _coercer(field, check_constraints=True)) for field in fields]
        self._by_name = {entry[0]: entry for entry in compiled}
        self._by_folded_name = {_fold(entry[0]): entry for entry in compiled}
        self._required = tuple(field.name for field in fields if field.required)
        self._filter_coercers = {field.name: _coercer(field, check_constraints=False) for field in fields}

    def field_named(self, name: str) -> str | None:
        entry = self._by_name.get(name) or self._by_folded_name.get(_fold(name))
        return entry[0] if entry is not None else None

    def validate(
        self, values: Mapping[str, object], *, partial: bool = False
    ) -> tuple[dict[str, object], list[ValueIssue]]:
        """Normalised values keyed by field name, and every issue found.

        None, "" and blank text mean "no value": a required field gets REQUIRED, an optional one
        is left out. With partial=True (a PATCH merge, an upsert) absent fields are not checked,
        and a given-but-empty optional field comes back as None ("clear it"); an importer that
        wants an empty cell to leave the stored value alone leaves that cell out of `values`.
        A field given twice under different spellings keeps the value under its exact name.
        """
        normalised: dict[str, object] = {}
        issues: list[ValueIssue] = []
        # Keys of a mapping are unique, so a field can be given twice only under another spelling.
        respelled: set[str] = set()
        by_name = self._by_name
        for key, raw in values.items():
            entry = by_name.get(key)
            if entry is None:
                entry = self._by_folded_name.get(_fold(key)) if isinstance(key, str) else None
                if entry is None:
                    issues.append(_unknown_field_issue(key))
                    continue
                if entry[0] in values or entry[0] in respelled:
                    issues.append(ValueIssue(key, ValueErrorCode.UNKNOWN_FIELD, f"{entry[0]} is given twice"))
                    continue
                respelled.add(entry[0])
            name, required, coerce = entry
            if raw.__class__ is str:
                raw = raw.strip()
                if not raw:
                    raw = None
            if raw is None:
                if required:
                    issues.append(ValueIssue(name, ValueErrorCode.REQUIRED, "is required"))
                elif partial:
                    normalised[name] = None
                continue
            try:
                normalised[name] = coerce(raw)
            except _Refused as refused:
                issues.append(ValueIssue(name, refused.code, refused.message))
        if not partial:
            issues += [
                ValueIssue(name, ValueErrorCode.REQUIRED, "is required")
                for name in self._required
                if name not in values and name not in respelled
            ]
        return normalised, issues

    def coerce_filter_value(self, name: str, raw: str) -> object:
        """A query filter's text as the stored JSON value it must equal; ValueError when it cannot.

        Only the type is checked (and a choice's membership): a value outside today's bounds
        simply matches nothing.
        """
        field_name = self.field_named(name)
        if field_name is None:
            raise ValueError(f"no sample field is named {name}")
        text = raw.strip()
        if not text:
            raise ValueError(f"the filter on {field_name} needs a value")
        try:
            return self._filter_coercers[field_name](text)
        except _Refused as refused:
            raise ValueError(f"{field_name} {refused.message}") from None


def _unknown_field_issue(key: object) -> ValueIssue:
    text = _printable(str(key)[:100])
    if _fold(text) in RESERVED_FIELD_NAMES:
        return ValueIssue(text, ValueErrorCode.UNKNOWN_FIELD, "is a column of every sample, not a value")
    return ValueIssue(text, ValueErrorCode.UNKNOWN_FIELD, "is not a field of this study")


def compile_sample_schema(fields: Sequence[Mapping[str, object]]) -> SampleValidator:
    """The validator of a schema; SampleSchemaError (a ValueError) lists every mistake in it."""
    return SampleValidator(read_sample_schema(fields))


# Validators by a key that names one schema for good (a study's id and version): a hit costs one
# dictionary look-up, no serialising. Bounded: a schema is at most MAX_SCHEMA_JSON of JSON.
_CACHED_VALIDATORS: OrderedDict[Hashable, SampleValidator] = OrderedDict()
CACHED_VALIDATORS_MAX = 128


def cached_validator(key: Hashable, fields: Sequence[Mapping[str, object]]) -> SampleValidator:
    """The validator of `fields`, compiled on the first call for `key`; the caller promises that one
    key always comes with the same fields."""
    validator = _CACHED_VALIDATORS.get(key)
    if validator is None:
        validator = compile_sample_schema(fields)
        _CACHED_VALIDATORS[key] = validator
        if len(_CACHED_VALIDATORS) > CACHED_VALIDATORS_MAX:
            _CACHED_VALIDATORS.popitem(last=False)
    return validator


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
    new_by_key = {_fold(field.name): field for field in new_fields}
    old_names = {field.name for field in old_fields}
    changes: list[str] = []
    for before in old_fields:
        after = new_by_name.get(before.name)
        if after is not None:
            changes += _field_changes(before, after)
            continue
        renamed = new_by_key.get(_fold(before.name))
        if renamed is not None:
            changes.append(f"{before.name}: renamed to {renamed.name}")
        else:
            changes.append(f"{before.name}: removed")
    old_keys = {_fold(name) for name in old_names}
    changes += [
        f"{field.name}: added as a required field"
        for field in new_fields
        if field.required and _fold(field.name) not in old_keys
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
        changes.append(f"{name}: min raised to {_number_text(after.min)}")
    if after.max is not None and (before.max is None or after.max < before.max):
        changes.append(f"{name}: max lowered to {_number_text(after.max)}")
    if before.choices is not None:
        removed = [choice for choice in before.choices if choice not in set(after.choices or ())]
        changes += [f"{name}: choice {choice} removed" for choice in removed]
    return changes
