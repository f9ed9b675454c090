"""The sample validator: every type from JSON, CSV text and XLSX cells, every issue code, partial
mode, filters, schema definitions and the compatibility of schema changes."""

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import re2

from src.study.constants import (
    MAX_CHOICES,
    MAX_SAFE_INTEGER,
    MAX_SAMPLE_FIELDS,
    PATTERN_MAX_LENGTH,
    TEXT_DEFAULT_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
    ValueErrorCode,
)
from src.study.sample_schema import SampleSchemaError, compile_text_pattern, incompatible_schema_changes
from src.study.sample_validation import ValueIssue, compile_sample_schema, normalize_sample_id

Code = ValueErrorCode


def one_field(**definition):
    return compile_sample_schema([{"name": "f", "required": False, **definition}])


def accepted(definition: dict, raw: object) -> object:
    values, issues = one_field(**definition).validate({"f": raw})
    assert issues == [], issues
    return values["f"]


def refused(definition: dict, raw: object) -> ValueIssue:
    values, issues = one_field(**definition).validate({"f": raw})
    assert values == {}
    assert len(issues) == 1, issues
    return issues[0]


TEXT = {"type": "text"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
DATE = {"type": "date"}
DATETIME = {"type": "datetime"}
CHOICE = {"type": "choice", "choices": ["blood", "saliva", "1", "2"]}


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  plasma  ", "plasma"),
        ("Zürich Altstadt", "Zürich Altstadt"),
        (12, "12"),  # an XLSX cell typed as a number in a text column
        (12.0, "12"),  # Excel stores whole numbers as floats
        (1.5, "1.5"),
        (dt.date(2024, 1, 5), "2024-01-05"),
        (dt.datetime(2024, 1, 5), "2024-01-05"),  # an Excel date
        (dt.datetime(2024, 1, 5, 10, 30), "2024-01-05T10:30:00"),
        (Code.REQUIRED, "required"),  # a str subclass, as typed code may pass
    ],
)
def test_text_accepts_strings_and_spreadsheet_cells_as_their_text(raw, expected):
    assert accepted(TEXT, raw) == expected


@pytest.mark.parametrize("raw", [True, False, ["a"], {"a": 1}, float("nan")])
def test_text_refuses_values_that_are_not_text(raw):
    assert refused(TEXT, raw).code is Code.NOT_TEXT


@pytest.mark.parametrize("raw", ["a\x00b", "\x00", "caf\ud800", "\udfff x"])
def test_text_refuses_characters_jsonb_cannot_store(raw):
    assert refused(TEXT, raw).code is Code.INVALID_TEXT


@pytest.mark.parametrize(
    "character",
    [chr(code) for code in [*range(0x01, 0x20), 0x7F, *range(0x80, 0xA0)]]
    + [
        "\u200b",
        "\u2028",
        "\u2029",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2060, 0x2070)),
        "\ufeff",
    ],
)
def test_text_is_one_line_without_control_invisible_or_direction_changing_characters(character):
    """The rule of one-line text everywhere (src/schemas.py), so a value cannot read backwards to
    whoever looks at it; inside a value, as a value trimmed of white space keeps none at its ends."""
    issue = refused(TEXT, f"a{character}b")
    assert (issue.code, issue.message) == (
        Code.INVALID_TEXT,
        "holds a control, invisible or direction-changing character (text is one line)",
    )


@pytest.mark.parametrize(
    "raw", ["\u05d3\u05d5\u05d3 (\u200fDavid)", "\u0645\u06cc\u200c\u062e", "👩\u200d🔬", "  a\t\n"]
)
def test_text_keeps_the_joiners_and_marks_of_ordinary_scripts(raw):
    assert accepted(TEXT, raw) == raw.strip()


def test_text_max_length_counts_characters_after_trimming():
    field = {"type": "text", "max_length": 5}
    assert accepted(field, "  äöüßé  ") == "äöüßé"
    issue = refused(field, "abcdef")
    assert (issue.code, issue.message) == (Code.TOO_LONG, "must be at most 5 characters")


def test_text_pattern_must_match_the_whole_value():
    field = {"type": "text", "pattern": r"[A-Z]{3}-\d{4}"}
    assert accepted(field, " ABC-1234 ") == "ABC-1234"
    for raw in ("ABC-12345", "xABC-1234", "abc-1234", "ABC-1234 DEF-5678"):
        issue = refused(field, raw)
        assert issue.code is Code.PATTERN_MISMATCH
        assert r"[A-Z]{3}-\d{4}" in issue.message
    # Unlike Python's re, "$" does not match before a final newline.
    assert not compile_text_pattern(r"[A-Z]{3}-\d{4}$")("ABC-1234\n")


class SetOutOfMemory:
    """An RE2 set whose DFA ran out of memory: it answers "no match" to everything."""

    def Add(self, pattern):  # noqa: N802 (RE2's names)
        return 0

    def Compile(self):  # noqa: N802
        return True

    def Match(self, text):  # noqa: N802
        return None


def test_a_no_from_the_fast_matcher_is_confirmed(monkeypatch):
    monkeypatch.setattr(re2.Set, "FullMatchSet", classmethod(lambda cls, options: SetOutOfMemory()))
    matches = compile_text_pattern(r"(a|b)*a(a|b){12}")
    assert matches("ab" * 3000 + "a" + "b" * 12)
    assert not matches("ab" * 3000 + "b" * 13)


def test_a_catastrophic_pattern_answers_quickly_on_a_long_text():
    matches = compile_text_pattern(r"(a+)+$")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # A backtracking engine would not finish this before the universe ends; RE2 takes ms.
        assert pool.submit(matches, "a" * 200_000 + "!").result(timeout=10) is False
        assert pool.submit(matches, "a" * 200_000).result(timeout=10) is True


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "invalid pattern"),  # backreferences cannot run in linear time
        (r"(?=a)a", "invalid pattern"),
        ("[", "invalid pattern"),
        (r"\p{L}{1000}", "invalid pattern"),
        ("a" * (PATTERN_MAX_LENGTH + 1), "at most"),
        ("", "non-empty"),
        (None, "non-empty"),
    ],
)
def test_invalid_or_unsafe_patterns_are_refused(pattern, reason):
    with pytest.raises(ValueError, match=reason):
        compile_text_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(?s).{0,999}(?s).{0,999}(?s).{0,999}", "counted repetition"),  # ~100 ms to compile
        ("a{101}", "counted repetition"),
        ("(?i)" + r"\pL" * 165, "Unicode classes"),  # ~90 ms to find it too large
        (r"\pL{0,100}", "too complex"),  # past RE2's memory
        ("(?s)" + ".{0,100}" * 7, "too complex"),  # past 5,000 instructions
    ],
)
def test_patterns_that_cost_much_to_compile_are_refused(pattern, reason):
    with pytest.raises(ValueError, match=reason):
        compile_text_pattern(pattern)


def test_escaped_braces_and_a_repetition_of_100_are_fine():
    assert compile_text_pattern(r"\{1000\}a{100}")("{1000}" + "a" * 100)


def test_a_schemas_patterns_compile_within_one_budget(monkeypatch):
    compiles = []
    real_compile = re2.compile
    monkeypatch.setattr(re2, "compile", lambda *args: compiles.append(args[0]) or real_compile(*args))
    fields = [{"name": f"f{n}", "type": "text", "pattern": "(?i)" + r"\pL" * 4 + "x" * n} for n in range(20)]

    with pytest.raises(SampleSchemaError, match="together are too complex"):
        compile_sample_schema(fields)
    assert len(compiles) <= 2


def test_each_distinct_pattern_is_compiled_once(monkeypatch):
    compiles = []
    real_compile = re2.compile
    monkeypatch.setattr(re2, "compile", lambda *args: compiles.append(args[0]) or real_compile(*args))

    for _ in range(3):
        compile_text_pattern("once[0-9]+")
        with pytest.raises(ValueError, match="too complex"):
            compile_text_pattern(r"once\pL{0,100}")
    assert compiles == ["once[0-9]+", r"once\pL{0,100}"]


# --- integer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("42", 42), ("+42", 42), ("-7", -7), ("0", 0), ("42.0", 42), ("42.", 42), (42, 42), (42.0, 42)],
)
def test_integer_accepts_whole_numbers_however_written(raw, expected):
    value = accepted(INTEGER, raw)
    assert value == expected
    assert type(value) is int


def test_integer_values_from_csv_are_trimmed():
    assert accepted(INTEGER, " 42 ") == 42


@pytest.mark.parametrize(
    "raw",
    [42.5, "42.5", "4x", "1_000", "1,000", "1e3", "٤٢", True, False, float("inf"), float("nan"), [1]],
)
def test_integer_refuses_what_is_not_a_whole_number(raw):
    assert refused(INTEGER, raw).code is Code.NOT_AN_INTEGER


def test_integer_refuses_a_huge_digit_string_without_parsing_it():
    assert refused(INTEGER, "9" * 100_000).code is Code.NOT_AN_INTEGER


def test_integer_bounds():
    field = {"type": "integer", "min": 0, "max": 120}
    assert accepted(field, "0") == 0
    assert accepted(field, 120.0) == 120
    below, above = refused(field, "-1"), refused(field, 121)
    assert (below.code, below.message) == (Code.BELOW_MIN, "must be at least 0")
    assert (above.code, above.message) == (Code.ABOVE_MAX, "must be at most 120")


@pytest.mark.parametrize("raw", [MAX_SAFE_INTEGER, str(MAX_SAFE_INTEGER), float(MAX_SAFE_INTEGER)])
def test_integers_up_to_what_a_browser_reads_exactly_are_accepted(raw):
    assert accepted(INTEGER, raw) == MAX_SAFE_INTEGER
    assert accepted(INTEGER, -raw if not isinstance(raw, str) else f"-{raw}") == -MAX_SAFE_INTEGER


ABOVE = (Code.ABOVE_MAX, f"must be at most {MAX_SAFE_INTEGER}")
BELOW = (Code.BELOW_MIN, f"must be at least -{MAX_SAFE_INTEGER}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (MAX_SAFE_INTEGER + 1, ABOVE),
        (str(MAX_SAFE_INTEGER + 1), ABOVE),  # a CSV cell
        (float(2**53), ABOVE),  # an XLSX cell
        (2**63 - 1, ABOVE),
        (-MAX_SAFE_INTEGER - 1, BELOW),
        (str(-(2**63) - 1), BELOW),
    ],
)
def test_integers_beyond_what_a_browser_reads_exactly_are_refused_whatever_the_bounds(raw, expected):
    issue = refused(INTEGER, raw)
    assert (issue.code, issue.message) == expected
    assert refused({**INTEGER, "min": -5, "max": 5}, raw).code is expected[0]


def test_an_integer_filter_finds_values_stored_before_the_safe_limit():
    validator = compile_sample_schema([{"name": "count", "type": "integer"}])
    assert validator.coerce_filter_value("count", str(2**60)) == 2**60
    with pytest.raises(ValueError, match="at most"):
        validator.coerce_filter_value("count", str(2**63))


# --- number ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3.5", 3.5),
        ("-.5", -0.5),
        ("1e3", 1000.0),
        ("3,5", 3.5),  # a European Excel CSV
        ("-0,25", -0.25),
        ("0,125", 0.125),  # a leading zero cannot be a thousands group
        ("1,2345", 1.2345),
        (3, 3.0),
        (3.25, 3.25),
        ("-0", 0.0),
    ],
)
def test_number_accepts_decimals_from_every_source(raw, expected):
    value = accepted(NUMBER, raw)
    assert value == expected
    assert type(value) is float


def test_number_stores_negative_zero_as_zero():
    assert str(accepted(NUMBER, -0.0)) == "0.0"


@pytest.mark.parametrize(
    "raw",
    [
        *("x", "nan", "NaN", "inf", "-Infinity", "1e999", "1_0", "1.234,5", "1,234.5", "1,2,3", "٣"),
        *(True, float("nan"), float("inf"), 10**400, "1" * 100, [1.5]),
    ],
)
def test_number_refuses_what_is_not_a_finite_number(raw):
    assert refused(NUMBER, raw).code is Code.NOT_A_NUMBER


@pytest.mark.parametrize("raw", ["1,234", "-12,500", "999,000"])
def test_number_refuses_a_comma_that_could_be_a_thousands_separator(raw):
    issue = refused(NUMBER, raw)
    assert issue.code is Code.NOT_A_NUMBER
    assert "ambiguous" in issue.message


def test_number_bounds():
    field = {"type": "number", "min": 0.5, "max": 10}
    assert accepted(field, "10") == 10.0
    below, above = refused(field, "0,25"), refused(field, 10.01)
    assert (below.code, below.message) == (Code.BELOW_MIN, "must be at least 0.5")
    assert (above.code, above.message) == (Code.ABOVE_MAX, "must be at most 10")


# --- boolean ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),  # as Excel writes it
        ("Yes", True),
        ("y", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("N", False),
        ("0", False),
        (1, True),
        (0, False),
        (1.0, True),
    ],
)
def test_boolean_accepts_the_usual_spellings(raw, expected):
    assert accepted(BOOLEAN, raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "t", "2", 2, -1, 0.5, dt.date(2024, 1, 1)])
def test_boolean_refuses_anything_else(raw):
    assert refused(BOOLEAN, raw).code is Code.NOT_A_BOOLEAN


# --- date ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["2024-01-05", " 2024-01-05 ", dt.date(2024, 1, 5), dt.datetime(2024, 1, 5), "2024-01-05 00:00:00"],
)
def test_date_accepts_iso_text_and_excel_dates(raw):
    assert accepted(DATE, raw) == "2024-01-05"


@pytest.mark.parametrize(
    "raw",
    [
        "05.01.2024",
        "01/05/2024",
        "2024-02-30",
        "20240105",
        "2024-W01-5",
        "2024-01-05T10:00:00",
        dt.datetime(2024, 1, 5, 10, 0),
        dt.datetime(2024, 1, 5, tzinfo=dt.UTC),
        45296,  # an Excel serial number from a cell not formatted as a date
        "\uff12\uff10\uff12\uff14-01-05",  # fullwidth digits
    ],
)
def test_date_refuses_other_formats_and_times_of_day(raw):
    assert refused(DATE, raw).code is Code.NOT_A_DATE


# --- datetime --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-05T10:00:00+02:00", "2024-01-05T08:00:00Z"),
        ("2024-01-05T08:00:00Z", "2024-01-05T08:00:00Z"),
        ("2024-01-05T08:00:00+00:00", "2024-01-05T08:00:00Z"),
        ("2024-01-05 08:00:00.250Z", "2024-01-05T08:00:00.250000Z"),
        ("2024-01-05T08:00:00", "2024-01-05T08:00:00Z"),  # no offset: taken as UTC
        ("2024-01-05T23:30:00-01:00", "2024-01-06T00:30:00Z"),
        (dt.datetime(2024, 1, 5, 8), "2024-01-05T08:00:00Z"),  # openpyxl's naive datetime
        (dt.datetime(2024, 1, 5, 9, tzinfo=dt.timezone(dt.timedelta(hours=1))), "2024-01-05T08:00:00Z"),
        (dt.date(2024, 1, 5), "2024-01-05T00:00:00Z"),
    ],
)
def test_datetime_is_normalised_to_utc(raw, expected):
    assert accepted(DATETIME, raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        *("x", "2024-01-05T25:00:00Z", "2024-13-05T10:00:00Z", "2024-01-05T10:00:00Q"),
        *("0001-01-01T00:00:00+01:00", 12, True, dt.time(10, 0)),
    ],
)
def test_datetime_refuses_what_is_not_a_moment(raw):
    assert refused(DATETIME, raw).code is Code.NOT_A_DATETIME


# --- choice ----------------------------------------------------------------------------------


def test_choice_matches_exactly_after_trimming():
    assert accepted(CHOICE, " blood ") == "blood"
    assert accepted(CHOICE, 2) == "2"  # an XLSX number in a column of numbered choices
    assert accepted(CHOICE, 1.0) == "1"


def test_choice_refuses_other_values_and_names_the_choices():
    issue = refused(CHOICE, "Blood")
    assert issue.code is Code.NOT_A_CHOICE
    assert issue.message == "not one of: blood, saliva, 1, 2 (did you mean blood?)"
    assert refused(CHOICE, "plasma").message == "not one of: blood, saliva, 1, 2"
    assert refused(CHOICE, True).code is Code.NOT_TEXT


def test_choice_message_is_cut_when_there_are_many_choices():
    field = {"type": "choice", "choices": [f"c{index}" for index in range(500)]}
    message = refused(field, "zz").message
    assert message.startswith("not one of: c0, c1,")
    assert message.endswith("... (500 choices)")
    assert "c499" not in message


# --- validate: keys, required, partial -------------------------------------------------------

SCHEMA = [
    {"name": "Tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]},
    {"name": "volume", "type": "number", "required": False, "min": 0, "unit": "mL"},
    {"name": "note", "type": "text", "required": False},
]


def test_keys_are_matched_to_field_names_case_insensitively():
    validator = compile_sample_schema(SCHEMA)
    values, issues = validator.validate({" tissue ": "blood", "VOLUME": "2"})
    assert (values, issues) == ({"Tissue": "blood", "volume": 2.0}, [])
    assert validator.field_named("TISSUE ") == "Tissue"
    assert validator.field_named("nope") is None
    assert validator.field_names == ("Tissue", "volume", "note")


def test_unknown_and_built_in_keys_are_reported():
    values, issues = compile_sample_schema(SCHEMA).validate(
        {"Tissue": "blood", "colour": "red", "Status": "x"}
    )
    assert values == {"Tissue": "blood"}
    assert [(issue.field, issue.code) for issue in issues] == [
        ("colour", Code.UNKNOWN_FIELD),
        ("Status", Code.UNKNOWN_FIELD),
    ]
    assert "column of every sample" in issues[1].message


@pytest.mark.parametrize(
    "values",
    [{"Tissue": "blood", "tissue": "saliva"}, {"tissue": "saliva", "Tissue": "blood"}],
)
def test_a_field_given_twice_keeps_the_value_under_its_exact_name(values):
    normalised, issues = compile_sample_schema(SCHEMA).validate(values)
    assert normalised == {"Tissue": "blood"}
    assert issues == [ValueIssue("tissue", Code.UNKNOWN_FIELD, "Tissue is given twice")]


def test_a_field_given_twice_under_other_spellings_is_reported_once():
    normalised, issues = compile_sample_schema(SCHEMA).validate({"TISSUE": "blood", "tissue": "saliva"})
    assert normalised == {"Tissue": "blood"}
    assert issues == [ValueIssue("tissue", Code.UNKNOWN_FIELD, "Tissue is given twice")]


def test_a_required_field_given_under_another_spelling_is_not_missing():
    validator = compile_sample_schema(SCHEMA)
    assert validator.validate({"TISSUE": "blood"}) == ({"Tissue": "blood"}, [])
    assert validator.validate({"TISSUE": None})[1] == [ValueIssue("Tissue", Code.REQUIRED, "is required")]


@pytest.mark.parametrize("empty", [None, "", "   ", "\xa0"])
def test_no_value_for_a_required_field_is_required_and_for_an_optional_one_is_left_out(empty):
    values, issues = compile_sample_schema(SCHEMA).validate({"Tissue": empty, "volume": empty, "note": empty})
    assert values == {}
    assert issues == [ValueIssue("Tissue", Code.REQUIRED, "is required")]


def test_a_missing_required_field_is_reported():
    assert compile_sample_schema(SCHEMA).validate({"volume": 1}) == (
        {"volume": 1.0},
        [ValueIssue("Tissue", Code.REQUIRED, "is required")],
    )


def test_every_issue_is_reported_not_only_the_first():
    _, issues = compile_sample_schema(SCHEMA).validate({"volume": "-1", "note": "a\x00", "x": 1})
    assert [issue.code for issue in issues] == [
        Code.BELOW_MIN,
        Code.INVALID_TEXT,
        Code.UNKNOWN_FIELD,
        Code.REQUIRED,
    ]


def test_partial_checks_only_the_given_fields_and_keeps_clearing_nulls():
    validator = compile_sample_schema(SCHEMA)
    assert validator.validate({"volume": "3"}, partial=True) == ({"volume": 3.0}, [])
    assert validator.validate({"volume": None, "note": ""}, partial=True) == (
        {"volume": None, "note": None},
        [],
    )
    values, issues = validator.validate({"tissue": None}, partial=True)
    assert values == {}
    assert issues == [ValueIssue("Tissue", Code.REQUIRED, "is required")]


def test_normalised_values_are_json_serialisable():
    schema = [
        {"name": "n", "type": "integer"},
        {"name": "d", "type": "date"},
        {"name": "t", "type": "datetime"},
        {"name": "b", "type": "boolean"},
    ]
    values, _ = compile_sample_schema(schema).validate(
        {"n": 3.0, "d": dt.datetime(2024, 1, 5), "t": dt.datetime(2024, 1, 5, 8), "b": "yes"}
    )
    assert (
        json.dumps(values, sort_keys=True)
        == '{"b": true, "d": "2024-01-05", "n": 3, "t": "2024-01-05T08:00:00Z"}'
    )


# --- filters ---------------------------------------------------------------------------------


def test_filter_values_are_coerced_to_the_stored_form():
    validator = compile_sample_schema(
        [
            {"name": "Tissue", "type": "choice", "choices": ["blood"]},
            {"name": "age", "type": "integer", "max": 10},
            {"name": "ok", "type": "boolean"},
            {"name": "at", "type": "datetime"},
            {"name": "code", "type": "text", "pattern": "[0-9]+"},
        ]
    )
    assert validator.coerce_filter_value("tissue", " blood ") == "blood"
    assert validator.coerce_filter_value("age", "500") == 500  # bounds do not apply to a filter
    assert validator.coerce_filter_value("OK", "yes") is True
    assert validator.coerce_filter_value("at", "2024-01-05T10:00:00+02:00") == "2024-01-05T08:00:00Z"
    assert validator.coerce_filter_value("code", "abc") == "abc"


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("colour", "red", "no sample field is named colour"),
        ("age", "  ", "needs a value"),
        ("age", "ten", "age must be a whole number"),
        ("Tissue", "plasma", "Tissue not one of: blood"),
    ],
)
def test_filter_values_that_cannot_match_are_refused(name, raw, message):
    validator = compile_sample_schema(
        [{"name": "Tissue", "type": "choice", "choices": ["blood"]}, {"name": "age", "type": "integer"}]
    )
    with pytest.raises(ValueError, match=message):
        validator.coerce_filter_value(name, raw)


# --- schema definitions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([{"name": "a", "type": "text"}, {"name": "A", "type": "integer"}], "already used by a"),
        ([{"name": "Sample_ID", "type": "text"}], "built-in column"),
        ([{"name": "status", "type": "text"}], "built-in column"),
        ([{"name": " a", "type": "text"}], "a letter then"),
        ([{"name": "", "type": "text"}], "needs a name"),
        ([{"name": "vol [mL]", "type": "number"}], "a letter then"),
        ([{"name": "x" * 65, "type": "text"}], "a letter then"),
        ([{"name": "a", "type": "color"}], "type must be one of"),
        ([{"name": "a", "type": "text", "min": 1}], "cannot have min"),
        ([{"name": "a", "type": "integer", "choices": ["x"]}], "cannot have choices"),
        ([{"name": "a", "type": "text", "maxlength": 3}], "unknown key maxlength"),
        ([{"name": "a", "type": "text", "required": "yes"}], "required must be"),
        ([{"name": "a", "type": "text", "max_length": 0}], "max_length"),
        ([{"name": "a", "type": "text", "pattern": "(a)\\1"}], "invalid pattern"),
        ([{"name": "a", "type": "integer", "min": 1.5}], "whole number"),
        ([{"name": "a", "type": "number", "min": 10**400}], "finite"),
        ([{"name": "a", "type": "text", "max_length": TEXT_MAX_LENGTH_LIMIT + 1}], "max_length"),
        (
            [{"name": "a", "type": "text", "description": "x" * 1001}],
            "description must be trimmed one-line text",
        ),
        ([{"name": "a", "type": "choice", "choices": ["x"] * (MAX_CHOICES + 1)}], "at most 1000 choices"),
        ([{"name": f"f{index}", "type": "text"} for index in range(MAX_SAMPLE_FIELDS + 1)], "at most 200"),
        ([{"name": "a", "type": "number", "max": float("inf")}], "finite"),
        ([{"name": "a", "type": "number", "min": True}], "finite"),
        ([{"name": "a", "type": "number", "min": 5, "max": 1}], "min must not be above max"),
        ([{"name": "a", "type": "choice"}], "non-empty list of choices"),
        ([{"name": "a", "type": "choice", "choices": ["x", "x"]}], "unique"),
        ([{"name": "a", "type": "choice", "choices": [" x"]}], "trimmed one-line text"),
        ([{"name": "a", "type": "text", "unit": 5}], "unit must be trimmed one-line text"),
        ("not a list", "must be a list"),
        (["not an object"], "must be an object"),
    ],
)
def test_malformed_schemas_are_refused_with_a_reason(fields, problem):
    with pytest.raises(SampleSchemaError, match=problem):
        compile_sample_schema(fields)


def test_every_problem_of_a_schema_is_listed():
    with pytest.raises(SampleSchemaError) as raised:
        compile_sample_schema([{"name": "status", "type": "text"}, {"name": "b", "type": "choice"}])
    assert len(raised.value.problems) == 2


def test_absent_and_null_constraints_mean_no_constraint():
    validator = compile_sample_schema(
        [{"name": "a", "type": "text", "max_length": None, "pattern": None, "unit": None, "min": None}]
    )
    assert (validator.fields[0].max_length, validator.fields[0].pattern) == (TEXT_DEFAULT_MAX_LENGTH, None)
    assert validator.validate({"a": "x" * TEXT_DEFAULT_MAX_LENGTH})[1] == []


def test_text_without_max_length_is_held_to_the_default():
    assert accepted(TEXT, "x" * TEXT_DEFAULT_MAX_LENGTH) == "x" * TEXT_DEFAULT_MAX_LENGTH
    issue = refused(TEXT, "x" * (TEXT_DEFAULT_MAX_LENGTH + 1))
    assert (issue.code, issue.message) == (
        Code.TOO_LONG,
        f"must be at most {TEXT_DEFAULT_MAX_LENGTH} characters",
    )


def test_a_max_length_may_go_up_to_the_hard_limit():
    field = {"type": "text", "max_length": TEXT_MAX_LENGTH_LIMIT}
    assert accepted(field, "x" * TEXT_MAX_LENGTH_LIMIT) == "x" * TEXT_MAX_LENGTH_LIMIT
    assert refused(field, "x" * (TEXT_MAX_LENGTH_LIMIT + 1)).code is Code.TOO_LONG


@pytest.mark.parametrize("field_type", ["integer", "number"])
def test_bounds_up_to_the_safe_integers_compile_and_larger_ones_are_refused_before_any_conversion(field_type):
    for bound in (MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER):
        compile_sample_schema([{"name": "a", "type": field_type, "max": bound}])
    rule = f"from -{MAX_SAFE_INTEGER} to {MAX_SAFE_INTEGER}"
    for bound in (2**53, -(2**53), 2**1023, 10**310):
        with pytest.raises(SampleSchemaError, match=rule):
            compile_sample_schema([{"name": "a", "type": field_type, "max": bound}])


# --- compatibility of schema changes ---------------------------------------------------------

BASE = [
    {"name": "name", "type": "text", "required": True, "max_length": 20, "pattern": "[a-z]+"},
    {"name": "age", "type": "integer", "required": False, "min": 0, "max": 120},
    {"name": "tissue", "type": "choice", "required": False, "choices": ["blood", "saliva"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "description": "as drawn"},
]


def changed(index: int, **changes) -> list[dict]:
    fields = [dict(field) for field in BASE]
    fields[index].update(changes)
    return [{key: value for key, value in field.items() if value is not None} for field in fields]


@pytest.mark.parametrize(
    "new",
    [
        BASE,
        [*BASE, {"name": "site", "type": "text", "required": False}],
        changed(2, choices=["blood", "saliva", "urine"]),
        changed(1, max=150),
        changed(1, min=-5),
        changed(1, min=None, max=None),
        changed(0, max_length=50),
        changed(0, max_length=None),  # 20, then the default (1,000)
        changed(0, pattern=None),
        changed(0, required=False),
        changed(3, unit="L", description="after spinning"),
        list(reversed(BASE)),
    ],
)
def test_compatible_changes_are_allowed(new):
    assert incompatible_schema_changes(BASE, new) == []


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (BASE[1:], "name: removed"),
        (changed(1, name="Age"), "age: renamed to Age"),
        (changed(1, type="number"), "age: type changed from integer to number"),
        ([*BASE, {"name": "site", "type": "text", "required": True}], "site: added as a required field"),
        (changed(1, required=True), "age: made required"),
        (changed(1, min=1), "age: min raised to 1"),
        (changed(1, max=100), "age: max lowered to 100"),
        (changed(3, min=0), "volume: min raised to 0"),
        (changed(0, max_length=10), "name: max_length lowered to 10"),
        (changed(0, pattern="[a-z]*"), "name: pattern added or changed"),
        (changed(2, choices=["blood"]), "tissue: choice saliva removed"),
    ],
)
def test_incompatible_changes_are_each_named(new, message):
    assert incompatible_schema_changes(BASE, new) == [message]


def test_a_max_length_compares_with_the_default_where_a_field_has_none():
    own = [{"name": "a", "type": "text", "max_length": TEXT_DEFAULT_MAX_LENGTH + 1}]
    default = [{"name": "a", "type": "text"}]
    assert incompatible_schema_changes(default, own) == []
    assert incompatible_schema_changes(own, default) == [
        f"a: max_length lowered to {TEXT_DEFAULT_MAX_LENGTH}"
    ]


def test_adding_a_pattern_or_a_max_length_is_incompatible():
    old = [{"name": "a", "type": "text"}]
    new = [{"name": "a", "type": "text", "pattern": "x", "max_length": 3}]
    assert incompatible_schema_changes(old, new) == [
        "a: max_length lowered to 3",
        "a: pattern added or changed",
    ]


def test_every_incompatible_change_is_listed():
    new = [{"name": "age", "type": "text", "required": True}]
    assert incompatible_schema_changes(BASE, new) == [
        "name: removed",
        "age: type changed from integer to text",
        "tissue: removed",
        "volume: removed",
    ]


# --- sample ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_id", "key"),
    [(" AB-1 ", "ab-1"), ("ab-1", "ab-1"), ("Straße-7", "strasse-7"), ("e\u0301-1", "\u00e9-1")],
)
def test_sample_ids_are_trimmed_and_case_folded(sample_id, key):
    assert normalize_sample_id(sample_id) == key
