"""A study's sample schema compiled into a validator: one closure per field, applied without I/O.

The schema it compiles, and its text patterns, are read and checked in src/study/sample_schema.py.

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
"""

import datetime as dt
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

from src.schemas import has_control_characters
from src.study.constants import MAX_SAFE_INTEGER, RESERVED_FIELD_NAMES, FieldType, ValueErrorCode
from src.study.sample_schema import (
    LISTED_CHOICES,
    UNSTORABLE_TEXT,
    SampleField,
    compile_text_pattern,
    fold,
    number_text,
    printable,
    read_sample_schema,
)

# What a filter on an integer field may name: any integer a database stores (values from before
# the safe limit may be larger than it).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Longer numeric text is refused before parsing: int() of a 100,000-digit string costs time, and
# no value within the bounds needs more characters than this.
MAX_NUMERIC_TEXT_LENGTH = 40
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_DECIMAL_COMMA_TEXT = re.compile(r"([+-]?)([0-9]+),([0-9]+)")
_TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "no", "n", "0"})
_MIDNIGHT = dt.time()
_FLOAT_LIMIT = 2**1023  # float() of a larger int overflows


@dataclass(frozen=True, slots=True)
class ValueIssue:
    field: str
    code: ValueErrorCode
    message: str


class _Refused(Exception):
    """Raised by a field's coercer for a value it cannot accept; never leaves this module."""

    def __init__(self, code: ValueErrorCode, message: str) -> None:
        self.code = code
        self.message = message


def normalize_sample_id(sample_id: str) -> str:
    """The key a sample_id is unique under within its study: " ab-1 " and "AB-1" are the same."""
    return fold(sample_id)


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
    if not text.isascii() and UNSTORABLE_TEXT.search(text):
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
    return _numeric_coercer(_number_of, (low, high), (number_text(low), number_text(high)))


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
    by_folded = {fold(choice): choice for choice in field.choices}
    listed = ", ".join(field.choices[:LISTED_CHOICES])
    if len(field.choices) > LISTED_CHOICES:
        listed += f", ... ({len(field.choices)} choices)"

    def coerce_choice(raw: object) -> str:
        text = raw if raw.__class__ is str else _text_of(raw).strip()
        if text in choices:
            return text
        near = by_folded.get(fold(text))
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
        self._by_folded_name = {fold(entry[0]): entry for entry in compiled}
        self._required = tuple(field.name for field in fields if field.required)
        self._filter_coercers = {field.name: _coercer(field, check_constraints=False) for field in fields}

    def field_named(self, name: str) -> str | None:
        entry = self._by_name.get(name) or self._by_folded_name.get(fold(name))
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
                entry = self._by_folded_name.get(fold(key)) if isinstance(key, str) else None
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
    text = printable(str(key)[:100])
    if fold(text) in RESERVED_FIELD_NAMES:
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
