"""Cells read as spreadsheets write them (issue 18): numbers with one decimal mark per file, booleans in
many languages, choices in any case, missing-value markers, and dates whose order is decided per column."""

import contextlib
import datetime as dt
import time
from collections.abc import Iterator

import pytest

from src.sampleFileUpload.cell_dialect import ColumnReader, FileCells, ReadingOptions
from src.sampleFileUpload.constants import DateOrder, DecimalMark, ImportMode
from src.sampleFileUpload.importer import SheetBatches
from src.sampleFileUpload.reading_errors import TimeLimitReached
from src.sampleFileUpload.sheet_import import CheckedRow, RowChecker, batches, plan_columns
from src.study.sample_validation import compile_sample_schema
from tests.sampleFileUpload.files import csv_bytes, write_to

FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva", "Zellkultur-Ä"]},
    {"name": "volume", "type": "number", "unit": "mL"},
    {"name": "cells", "type": "integer"},
    {"name": "fasting", "type": "boolean"},
    {"name": "collected_on", "type": "date"},
    {"name": "frozen_at", "type": "datetime"},
    {"name": "thawed_on", "type": "date"},
    {"name": "note", "type": "text"},
]
VALIDATOR = compile_sample_schema(FIELDS)


@contextlib.contextmanager
def counted_rows_again(rows: list[tuple[int, list[object]]], log: list[int]) -> Iterator[Iterator]:
    """The rows read again, as SheetBatches gives them, each row read counted in `log`."""
    log.append(0)

    def counted() -> Iterator[tuple[int, list[object]]]:
        for number, cells in rows:
            log[-1] += 1
            yield number, list(cells)

    yield counted()


def no_rows() -> contextlib.AbstractContextManager[Iterator]:
    """The file read again, for a test whose dates never ask for it."""
    return contextlib.nullcontext(iter(()))


def read(
    column: str,
    texts: list[object],
    *,
    mark: DecimalMark | None = None,
    date_order: DateOrder | None = None,
    na_values: frozenset[str] | None = None,
    delimiter: str | None = ",",
    mode: ImportMode = ImportMode.INSERT,
    more: dict[str, list[object]] | None = None,
    rereads: list[int] | None = None,
) -> list[CheckedRow]:
    """The rows of a sheet with a sample_id, tissue `blood`, and `column` holding `texts` (rows from 2)."""
    columns = {"tissue": ["blood"] * len(texts), column: texts, **(more or {})}
    headers = ["sample_id", *columns]
    rows = [
        (number, [f"S-{number}", *(values[at] for values in columns.values())])
        for at, number in enumerate(range(2, 2 + len(texts)))
    ]
    options = ReadingOptions(date_order=date_order, decimal_mark=mark)
    if na_values is not None:
        options = ReadingOptions(date_order=date_order, decimal_mark=mark, na_values=na_values)
    log = rereads if rereads is not None else []
    cells = FileCells(options, delimiter=delimiter, rows_again=lambda: counted_rows_again(rows, log))
    checker = RowChecker(
        plan_columns(headers, VALIDATOR), VALIDATOR, mode=mode, max_rows=len(rows) + 1, cells=cells
    )
    try:
        return [row for batch in batches(iter(rows), checker, size=100) for row in batch]
    finally:
        checker.seen_ids.close()


def value(column: str, text: object, **options) -> object:
    [row] = read(column, [text], **options)
    assert row.errors == [], row.errors
    return row.values.get(column)


def error(column: str, text: object, **options) -> tuple[str, str]:
    [row] = read(column, [text], **options)
    [found] = row.errors
    return found.code, found.message


# Numbers


@pytest.mark.parametrize(
    ("mark", "text", "expected"),
    [
        (",", "3,5", 3.5),
        (",", "1.234,5", 1234.5),
        (",", "1 234,5", 1234.5),
        (",", "1\u00a0234,5", 1234.5),  # French Excel's no-break space
        (",", "1\u202f234,5", 1234.5),  # LibreOffice's narrow no-break space
        (",", "-1.234.567,25", -1234567.25),
        (",", "1,5E-03", 0.0015),
        (",", "1,234", 1.234),  # with a decimal comma, a comma is never a thousands separator
        (",", "12", 12.0),
        (".", "3.5", 3.5),
        (".", "1,234.5", 1234.5),
        (".", "1 234.5", 1234.5),
        (".", "1,234", 1234.0),
        (".", "+1,234,567.25", 1234567.25),
        (".", "1.5e3", 1500.0),
        (".", ".5", 0.5),
    ],
)
def test_numbers_are_read_with_the_files_one_decimal_mark_and_groups_of_three(mark, text, expected):
    assert value("volume", text, mark=DecimalMark(mark)) == expected


@pytest.mark.parametrize(
    ("mark", "text"),
    [(".", "3,5"), (".", "1.234,5"), (".", "0,125"), (",", "1,234.5"), (",", "3.25"), (",", "1.2345")],
)
def test_a_number_that_reads_only_with_the_other_mark_is_refused_naming_decimal_mark(mark, text):
    code, message = error("volume", text, mark=DecimalMark(mark))

    other = "," if mark == "." else "."
    assert code == "not_a_number"
    assert f"send decimal_mark={other}" in message
    assert "upload's decimal_mark" in message  # why the file is read with its mark


@pytest.mark.parametrize(
    ("mark", "text"),
    [
        (",", "1.23,5"),
        (",", "1.234 567,5"),
        (".", "1,23.5"),
        (".", "12_000"),
        (".", "lots"),
        (",", "0.125,5"),
    ],
)
def test_groups_not_of_three_digits_or_mixed_separators_are_not_numbers(mark, text):
    code, message = error("volume", text, mark=DecimalMark(mark))

    assert code == "not_a_number"
    assert "decimal_mark" not in message


@pytest.mark.parametrize(
    ("delimiter", "expected"),
    [(";", 1.5), (",", "not_a_number"), ("\t", "not_a_number"), (None, "not_a_number")],
)
def test_the_decimal_mark_is_a_comma_only_in_a_file_separated_by_semicolons_unless_the_upload_says(
    delimiter, expected
):
    [row] = read("volume", ["1,5"], delimiter=delimiter)
    assert (row.values.get("volume") or row.errors[0].code) == expected
    [row] = read("volume", ["1,5"], delimiter=delimiter, mark=DecimalMark.COMMA)
    assert row.values["volume"] == 1.5


@pytest.mark.parametrize(
    ("mark", "text", "expected"),
    [
        (",", "1.200", 1200),
        (".", "1,200", 1200),
        (",", "42,0", 42),
        (".", "-7", -7),
        (",", "1 000 000", 1_000_000),
    ],
)
def test_integers_take_thousands_groups_too(mark, text, expected):
    assert value("cells", text, mark=DecimalMark(mark)) == expected


@pytest.mark.parametrize(("mark", "text"), [(",", "4,5"), (".", "1e3"), (".", "1,5")])
def test_an_integer_field_refuses_fractions_and_exponents(mark, text):
    assert error("cells", text, mark=DecimalMark(mark))[0] == "not_an_integer"


# Booleans and choices


@pytest.mark.parametrize(
    "text",
    ["true", "TRUE", "Yes", "y", "1", "WAHR", "Ja", "vrai", "OUI", "sí", "SÍ", "si\u0301", "Si", " ja "],
)
def test_true_is_read_in_the_spellings_of_many_languages_in_any_case(text):
    assert value("fasting", text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "No", "n", "0", "FALSCH", "nein", "Faux", "NON"])
def test_false_is_read_in_the_spellings_of_many_languages_in_any_case(text):
    assert value("fasting", text) is False


def test_a_boolean_in_no_known_spelling_is_refused_with_the_spellings_listed():
    code, message = error("fasting", "vielleicht")

    assert code == "not_a_boolean"
    assert "wahr/falsch" in message
    assert "vrai/faux" in message
    assert "sí" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Blood", "blood"),
        (" SALIVA ", "saliva"),
        ("zellkultur-a\u0308", "Zellkultur-Ä"),
        ("ZELLKULTUR-Ä", "Zellkultur-Ä"),
    ],
)
def test_choices_match_in_any_case_and_normalisation_and_are_stored_as_defined(text, expected):
    assert value("tissue", text) == expected


def test_a_text_that_is_no_choice_in_any_case_is_refused():
    assert error("tissue", "plasma")[0] == "not_a_choice"


# Missing values


@pytest.mark.parametrize("text", ["NA", "N/A", "n/a", "#N/A", "NULL", "null", " NA "])
def test_the_default_markers_are_empty_cells(text):
    rows = read("volume", [text], more={"note": [text], "fasting": [text], "collected_on": [text]})

    assert [(row.errors, row.values) for row in rows] == [([], {"tissue": "blood"})]


def test_a_marker_in_a_required_field_is_required():
    [row] = read("tissue", ["NA"])

    assert [(e.column, e.code) for e in row.errors] == [("tissue", "required")]


def test_the_upload_names_its_own_markers_or_none():
    [row] = read("volume", ["-"], more={"note": ["NA"]}, na_values=frozenset({"-"}))
    assert (row.errors, row.values) == ([], {"tissue": "blood", "note": "NA"})

    [row] = read("note", ["NA"], na_values=frozenset())
    assert row.values["note"] == "NA"


def test_in_upsert_mode_a_marker_leaves_the_stored_value_as_an_empty_cell_does():
    [row] = read("volume", ["NA"], mode=ImportMode.UPSERT, more={"note": [""]})

    assert (row.errors, row.values) == ([], {"tissue": "blood"})


# What is read a column at a time is read as each cell alone would be


CONSISTENCY_CASES = {
    "volume": ["1.5", "5.", ".5", "+1.5", "-0", "1e5", "1E-3", "nan", "inf", "1.2.3", "--1", "12", "x" * 3],
    "cells": ["12", "007", "0", "٣", "²", "1" * 41],
    "fasting": ["yes", "NO", "Wahr", "1", "0", "maybe", "y"],
    "tissue": ["blood", "saliva", "Blood"],
    "collected_on": [
        "2025-03-14",
        "2025-02-30",
        "2025-3-14",
        "14-03-2025",
        "20250314",
        "2025-03-14T00:00:00",
    ],
    "frozen_at": ["2025-03-14T10:15:00+01:00", "2025-03-14T10:15", "2025-03-14", "2025-03-14T25:00", "10:15"],
    "note": ["a", "  b  "],
}


@pytest.mark.parametrize("mark", [DecimalMark.POINT, DecimalMark.COMMA])
@pytest.mark.parametrize("column", list(CONSISTENCY_CASES))
def test_a_column_read_whole_gives_the_validator_what_it_reads_as_each_cell_read_alone(column, mark):
    """The column-at-once tests let a text through to the validator as it is only where the validator
    reads it as the file's dialect would, or refuses it as the dialect would."""
    cells = FileCells(ReadingOptions(decimal_mark=mark), delimiter=None, rows_again=no_rows)
    definition = next(field for field in VALIDATOR.fields if field.name == column)
    reader = cells.column_reader(definition, index=1, header=column)
    for text in CONSISTENCY_CASES[column]:
        whole = reader._read_whole([text])
        if whole is None:
            continue  # read cell by cell anyway
        alone = reader._read_cell_by_cell([text], [2])
        assert validated(reader, whole[0]) == validated(reader, alone.values[0], refused=alone.refusals), text


def validated(reader: ColumnReader, read: object, refused: object = ()) -> tuple[object, list[str]]:
    if refused:
        return None, [refusal.code for _, refusal in refused]
    values, issues = VALIDATOR.validate({reader.name: read}, partial=True)
    return values.get(reader.name), [issue.code for issue in issues]


# Dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-14", "2025-03-14"),
        ("14.03.2025", "2025-03-14"),
        ("4.3.2025", "2025-03-04"),  # dotted: day first, whatever the order of the slash dates
        ("2025/03/14", "2025-03-14"),
        ("2025.03.14.", "2025-03-14"),  # Hungarian Excel
        ("03/03/2025", "2025-03-03"),  # the same day in either order: no order needed
        ("14.03.2025 00:00", "2025-03-14"),
    ],
)
def test_dates_in_their_unambiguous_forms(text, expected):
    assert value("collected_on", text) == expected


@pytest.mark.parametrize("text", ["14.03.25", "3/14/25", "14/03/25 10:00"])
def test_a_two_digit_year_is_refused_asking_for_four_digits(text):
    code, message = error("collected_on", text)

    assert code == "not_a_date"
    assert "four digits" in message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("31.02.2025", "not_a_date"),
        ("13/13/2025", "not_a_date"),
        ("14-03-2025", "not_a_date"),
        ("14.03.2025 10:30", "not_a_date"),  # a time of day in a field of dates
        ("March 14", "not_a_date"),
    ],
)
def test_what_is_no_day_of_the_calendar_is_not_a_date(text, code):
    assert error("collected_on", text)[0] == code


def test_a_column_is_day_first_when_its_first_settling_value_is():
    rows = read("collected_on", ["14/03/2025", "04/03/2025"])

    assert [row.values["collected_on"] for row in rows] == ["2025-03-14", "2025-03-04"]


def test_a_value_that_settles_its_column_further_down_decides_the_rows_before_it():
    rereads: list[int] = []
    texts = ["04/03/2025", "05/06/2025", "03/14/2025", "01/02/2025", *(["02/02/2025"] * 50)]

    rows = read("collected_on", texts, rereads=rereads)

    assert [row.values["collected_on"] for row in rows[:4]] == [
        "2025-04-03",
        "2025-05-06",
        "2025-03-14",
        "2025-01-02",
    ]
    assert rereads == [3]  # the file read again once, up to the row that settles the column


def test_a_value_that_contradicts_its_columns_order_is_not_a_date_naming_the_row_that_settled_it():
    rows = read("collected_on", ["14/03/2025", "04/03/2025", "03/15/2025"])

    assert [row.errors for row in rows[:2]] == [[], []]
    [refused] = rows[2].errors
    assert (refused.row, refused.code, refused.value) == (4, "not_a_date", "03/15/2025")
    assert "day-first" in refused.message
    assert "14/03/2025 on row 2" in refused.message


def test_a_column_whose_every_date_could_be_either_is_one_error_of_the_column():
    rereads: list[int] = []
    rows = read("collected_on", ["04/03/2025", "05/06/2025", "2025-01-01", "07/08/2025"], rereads=rereads)

    assert [row.errors for row in rows] == [[], [], [], []]  # no row is wrong: the column is
    problems = [error for row in rows for error in row.column_errors]
    assert [(p.row, p.column, p.code, p.value) for p in problems] == [
        (1, "collected_on", "ambiguous_date", "04/03/2025")
    ]
    assert "date_order=dmy" in problems[0].message
    assert "date_order=mdy" in problems[0].message
    assert "4 March 2025" in problems[0].message
    assert "April 3, 2025" in problems[0].message
    assert rereads == [4]  # to the end, once


@pytest.mark.parametrize(
    ("order", "expected"),
    [(DateOrder.DMY, ["2025-03-04", "2025-06-05"]), (DateOrder.MDY, ["2025-04-03", "2025-05-06"])],
)
def test_date_order_decides_an_ambiguous_column(order, expected):
    rereads: list[int] = []
    rows = read("collected_on", ["04/03/2025", "05/06/2025"], date_order=order, rereads=rereads)

    assert [row.values["collected_on"] for row in rows] == expected
    assert rereads == []


def test_a_value_that_contradicts_date_order_is_not_a_date_naming_it():
    code, message = error("collected_on", "03/14/2025", date_order=DateOrder.DMY)

    assert code == "not_a_date"
    assert "date_order=dmy" in message


def test_date_order_ymd_takes_year_first_slash_dates_and_refuses_the_others():
    assert value("collected_on", "2025/03/04", date_order=DateOrder.YMD) == "2025-03-04"
    code, message = error("collected_on", "04/03/2025", date_order=DateOrder.YMD)
    assert (code, "date_order=ymd" in message) == ("not_a_date", True)


def test_each_date_column_has_its_own_order_and_one_look_ahead_settles_them_all():
    rereads: list[int] = []
    rows = read(
        "collected_on",
        ["04/03/2025", "05/06/2025", "14/03/2025"],
        more={"thawed_on": ["01/02/2025", "02/13/2025", "02/02/2025"]},
        rereads=rereads,
    )

    assert [(row.values["collected_on"], row.values["thawed_on"]) for row in rows] == [
        ("2025-03-04", "2025-01-02"),
        ("2025-06-05", "2025-02-13"),
        ("2025-03-14", "2025-02-02"),
    ]
    assert rereads == [3]  # rows 2-4: the last one settles the first column


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14.03.2025 14:30", "2025-03-14T14:30:00Z"),
        ("14/03/2025 14:30:15", "2025-03-14T14:30:15Z"),
        ("3/14/2025 2:30 PM", "2025-03-14T14:30:00Z"),
        ("3/14/2025 12:05 am", "2025-03-14T00:05:00Z"),
        ("3/14/2025 12:05 p.m.", "2025-03-14T12:05:00Z"),
        ("2025-03-14 09:05", "2025-03-14T09:05:00Z"),
        ("2025-03-14 9:05:07 AM", "2025-03-14T09:05:07Z"),
        ("14.03.2025", "2025-03-14T00:00:00Z"),
        ("2025-03-14T10:15:00+01:00", "2025-03-14T09:15:00Z"),
    ],
)
def test_datetimes_are_a_date_in_any_accepted_form_then_a_time(text, expected):
    assert value("frozen_at", text) == expected


@pytest.mark.parametrize("text", ["14/03/2025 13:30 PM", "14.03.2025 25:00", "14.03.2025 10:61", "yesterday"])
def test_a_time_that_does_not_exist_is_not_a_datetime(text):
    assert error("frozen_at", text)[0] == "not_a_datetime"


def test_typed_workbook_cells_are_read_as_they_are():
    rows = read(
        "collected_on",
        [dt.datetime(2025, 3, 14), None],
        more={"volume": [1234.5, None], "fasting": [True, 0], "cells": [12.0, 3]},
        delimiter=None,
    )

    assert [(row.errors, row.values) for row in rows] == [
        (
            [],
            {"tissue": "blood", "collected_on": "2025-03-14", "volume": 1234.5, "fasting": True, "cells": 12},
        ),
        ([], {"tissue": "blood", "fasting": False, "cells": 3}),
    ]


def test_the_dialect_says_how_the_dates_were_read():
    cells = FileCells(ReadingOptions(), delimiter=";", rows_again=no_rows)
    assert cells.dialect()["date_order"] is None
    headers = ["sample_id", "tissue", "collected_on"]
    checker = RowChecker(
        plan_columns(headers, VALIDATOR), VALIDATOR, mode=ImportMode.INSERT, max_rows=3, cells=cells
    )
    try:
        list(batches(iter([(2, ["S-1", "blood", "14.03.2025"])]), checker, size=10))
    finally:
        checker.seen_ids.close()

    assert cells.dialect() == {
        "delimiter": ";",
        "decimal_mark": ",",
        "date_order": "dmy",
        "na_values": ["#N/A", "N/A", "NA", "NULL", "n/a", "null"],
    }


def test_the_look_ahead_stops_at_the_imports_deadline(tmp_path):
    content = csv_bytes([["sample_id", "tissue", "collected_on"], ["S-1", "blood", "04/03/2025"]])
    sheet = SheetBatches(
        write_to(tmp_path, "dates.csv", content),
        filename="dates.csv",
        validator=VALIDATOR,
        mode=ImportMode.INSERT,
        deadline=time.monotonic() + 60,
    )
    sheet.open()
    try:
        sheet.deadline = time.monotonic() - 1  # passed while the first rows were being read
        with pytest.raises(TimeLimitReached):
            sheet.next_batch()
    finally:
        sheet.close()
