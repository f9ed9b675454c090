"""Sheets as labs save them (issue 18): CSV and XLSX files written the way German, French, US and UK
Excel and LibreOffice write them, each imported with its exact stored values; the form fields that
decide what a file cannot say; the report; and the JSON API, which stays strict."""

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import select

from src.database import SessionFactory
from src.sampleFileUpload.router import UPLOAD_BODY
from src.study.constants import StudyStatus
from src.study.models import Sample
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import SAMPLE_FILES, files_url, upload
from tests.sampleFileUpload.files import (
    FRENCH_EXCEL,
    GERMAN_EXCEL,
    GERMAN_LIBREOFFICE,
    LOCALES,
    US_EXCEL,
    SavedAs,
    csv_bytes,
)
from tests.study.conftest import study_url

DIALECT_FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva", "tumour"]},
    {"name": "volume", "type": "number", "unit": "mL", "min": 0, "max": 100_000},
    {"name": "cells", "type": "integer", "min": 0},
    {"name": "fasting", "type": "boolean"},
    {"name": "collected_on", "type": "date", "required": True},
    {"name": "frozen_at", "type": "datetime"},
    {"name": "note", "type": "text"},
]
HEADER = ["sample_id", "tissue", "volume [mL]", "cells", "fasting", "collected_on", "frozen_at", "note"]


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=DIALECT_FIELDS, status=StudyStatus.ACTIVE)


def lab_rows(saved: SavedAs) -> list[list[object]]:
    """Three samples as `saved` writes them. The first row's dates could be day-first or month-first:
    the second row settles the column (14 March), read further down the file."""
    return [
        HEADER,
        ["S-2", "saliva", 0.25, 7, False, dt.date(2025, 3, 4), dt.datetime(2025, 3, 4, 9, 5), "NA"],
        [
            "S-1",
            "Blood",
            saved.number(1234.5, grouped=True),
            saved.number(1200, grouped=True),
            True,
            dt.date(2025, 3, 14),
            dt.datetime(2025, 3, 14, 14, 30),
            "Größe ok",
        ],
        ["S-3", "TUMOUR", None, "N/A", None, dt.date(2025, 12, 1), None, None],
    ]


STORED = {
    "S-1": {
        "tissue": "blood",
        "volume": 1234.5,
        "cells": 1200,
        "fasting": True,
        "collected_on": "2025-03-14",
        "frozen_at": "2025-03-14T14:30:00Z",
        "note": "Größe ok",
    },
    "S-2": {
        "tissue": "saliva",
        "volume": 0.25,
        "cells": 7,
        "fasting": False,
        "collected_on": "2025-03-04",
        "frozen_at": "2025-03-04T09:05:00Z",
    },
    "S-3": {"tissue": "tumour", "collected_on": "2025-12-01"},
}
# LibreOffice separates with commas whatever the locale: its decimal commas need the upload to say so.
FIELDS_FOR = {GERMAN_LIBREOFFICE.name: {"decimal_mark": ","}}


async def stored_values(study) -> dict[str, dict]:
    async with SessionFactory() as session:
        samples = await session.scalars(select(Sample).where(Sample.study_id == study.id))
        return {sample.sample_id: sample.values for sample in samples}


@pytest.mark.parametrize("saved", LOCALES, ids=lambda saved: saved.name)
async def test_a_csv_as_each_locales_spreadsheet_saves_it_is_imported_exactly(
    client, alice_headers, study, saved
):
    content = saved.csv(lab_rows(saved))

    response = await upload(client, study, alice_headers, content, fields=FIELDS_FOR.get(saved.name))

    assert response.status_code == 201, response.text
    assert await stored_values(study) == STORED
    assert response.json()["report"]["dialect"]["delimiter"] == saved.delimiter
    assert response.json()["encoding"] in ("cp1252", "utf-8", "utf-8-sig")


@pytest.mark.parametrize(
    ("saved", "fields"),
    [(GERMAN_EXCEL, {"decimal_mark": ","}), (FRENCH_EXCEL, {"decimal_mark": ","}), (US_EXCEL, {})],
    ids=lambda value: getattr(value, "name", ""),
)
async def test_a_workbook_of_text_cells_in_a_locales_style_is_imported_exactly(
    client, alice_headers, study, saved, fields
):
    content = saved.xlsx(lab_rows(saved))

    response = await upload(client, study, alice_headers, content, filename="lab.xlsx", fields=fields)

    assert response.status_code == 201, response.text
    assert await stored_values(study) == STORED


async def test_a_workbooks_text_cells_default_to_the_decimal_point_and_say_which_field_decides(
    client, alice_headers, study
):
    content = GERMAN_EXCEL.xlsx(lab_rows(GERMAN_EXCEL))

    body = assert_problem(
        await upload(client, study, alice_headers, content, filename="lab.xlsx"), 422, "SAMPLE_FILE_REJECTED"
    )

    refused = {(error["row"], error["column"]): error for error in body["report"]["errors"]}
    assert refused[(2, "volume [mL]")]["code"] == "not_a_number"
    assert "decimal_mark=," in refused[(2, "volume [mL]")]["message"]
    assert "workbook" in refused[(2, "volume [mL]")]["message"]


async def test_libreoffices_comma_separated_decimal_commas_are_refused_naming_decimal_mark(
    client, alice_headers, study
):
    content = GERMAN_LIBREOFFICE.csv(lab_rows(GERMAN_LIBREOFFICE))

    body = assert_problem(await upload(client, study, alice_headers, content), 422, "SAMPLE_FILE_REJECTED")

    messages = {error["message"] for error in body["report"]["errors"] if error["code"] == "not_a_number"}
    assert messages == {
        'is written with "," as its decimal mark, but this file is read with "." (the default for a file '
        "not separated by semicolons): send decimal_mark=, with the upload"
    }
    assert await stored_values(study) == {}


async def test_libreoffices_default_two_digit_years_are_refused_asking_for_four(client, alice_headers, study):
    rows = [HEADER, ["S-1", "blood", "", "", "", "14.03.25", "", ""]]

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes(rows, delimiter=";")),
        422,
        "SAMPLE_FILE_REJECTED",
    )

    [refused] = body["report"]["errors"]
    assert (refused["row"], refused["column"], refused["code"]) == (2, "collected_on", "not_a_date")
    assert refused["message"] == "has a two-digit year (25): write years with four digits"


# Dates whose order the file does not say


def slash_dates(*dates: str) -> bytes:
    return csv_bytes(
        [["sample_id", "tissue", "collected_on"], *([f"S-{n}", "blood", d] for n, d in enumerate(dates))]
    )


async def test_a_column_of_dates_that_could_be_either_order_is_refused_once_saying_how_to_choose(
    client, alice_headers, study
):
    response = await upload(
        client, study, alice_headers, slash_dates("04/03/2025", "05/06/2025", "01/02/2025")
    )

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    report = body["report"]
    assert (report["rows"], report["rejected"], report["errors_total"], report["column_errors"]) == (
        3,
        0,
        1,
        1,
    )
    [problem] = report["errors"]
    assert (problem["row"], problem["column"], problem["value"], problem["code"]) == (
        1,
        "collected_on",
        "04/03/2025",
        "ambiguous_date",
    )
    assert problem["message"] == (
        "every date of this column could be day-first or month-first, such as 04/03/2025: send "
        "date_order=dmy or date_order=mdy with the upload to say which (date_order=dmy reads 04/03/2025 as "
        "4 March 2025, date_order=mdy as April 3, 2025), or write the dates as YYYY-MM-DD"
    )
    errors_csv = await client.get(
        f"{SAMPLE_FILES}/{body['sample_file_id']}/errors.csv", headers=alice_headers
    )
    lines = list(csv.reader(io.StringIO(errors_csv.content.decode("utf-8-sig"))))
    assert lines[1][:2] == ["1", f"collected_on: {problem['message']} (ambiguous_date)"]


@pytest.mark.parametrize(
    ("date_order", "expected"),
    [("dmy", ["2025-03-04", "2025-06-05"]), ("mdy", ["2025-04-03", "2025-05-06"])],
)
async def test_date_order_says_how_to_read_them(client, alice_headers, study, date_order, expected):
    response = await upload(
        client,
        study,
        alice_headers,
        slash_dates("04/03/2025", "05/06/2025"),
        fields={"date_order": date_order},
    )

    assert response.status_code == 201, response.text
    assert response.json()["report"]["dialect"]["date_order"] == date_order
    assert sorted(values["collected_on"] for values in (await stored_values(study)).values()) == sorted(
        expected
    )


async def test_a_date_that_contradicts_its_columns_order_is_refused_on_its_row(client, alice_headers, study):
    response = await upload(client, study, alice_headers, slash_dates("14/03/2025", "03/15/2025"))

    body = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")
    assert [(e["row"], e["value"], e["code"]) for e in body["report"]["errors"]] == [
        (3, "03/15/2025", "not_a_date")
    ]
    assert "14/03/2025 on row 2" in body["report"]["errors"][0]["message"]


# Missing values


async def test_missing_value_markers_are_empty_in_optional_fields_and_required_in_required_ones(
    client, alice_headers, study
):
    rows = [
        HEADER,
        ["S-1", "blood", "NA", "#N/A", "n/a", "2025-03-14", "NULL", "null"],
        ["S-2", "N/A", "", "", "", "NA", "", ""],
    ]

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes(rows)), 422, "SAMPLE_FILE_REJECTED"
    )

    assert [(e["row"], e["column"], e["value"], e["code"]) for e in body["report"]["errors"]] == [
        (3, "tissue", "N/A", "required"),
        (3, "collected_on", "NA", "required"),
    ]


async def test_the_upload_may_name_its_markers_or_turn_them_off(client, alice_headers, study):
    rows = [
        ["sample_id", "tissue", "collected_on", "volume [mL]", "note"],
        ["S-1", "blood", "2025-03-14", "-", "NA"],
    ]

    response = await upload(client, study, alice_headers, csv_bytes(rows), fields={"na_values": "-, missing"})

    assert response.status_code == 201, response.text
    assert (await stored_values(study))["S-1"] == {
        "tissue": "blood",
        "collected_on": "2025-03-14",
        "note": "NA",
    }
    assert response.json()["report"]["dialect"]["na_values"] == ["-", "missing"]


async def test_an_empty_na_values_turns_the_markers_off(client, alice_headers, study):
    rows = [["sample_id", "tissue", "collected_on", "note"], ["S-1", "blood", "2025-03-14", "NA"]]

    response = await upload(client, study, alice_headers, csv_bytes(rows), fields={"na_values": ""})

    assert response.status_code == 201, response.text
    assert (await stored_values(study))["S-1"]["note"] == "NA"


async def test_na_values_is_as_long_as_documented(client, alice_headers, study):
    documented = UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    longest = documented["na_values"]["maxLength"]
    markers = ",".join(["x" * 9] * (longest // 10 + 1))[:longest]

    taken = await upload(
        client, study, alice_headers, slash_dates("2025-01-01"), dry_run=True, fields={"na_values": markers}
    )
    refused = await upload(
        client,
        study,
        alice_headers,
        slash_dates("2025-01-01"),
        dry_run=True,
        fields={"na_values": markers + "x"},
    )

    assert taken.status_code == 200, taken.text
    assert "`na_values` is too long" in assert_problem(refused, 400, "MALFORMED_UPLOAD")["detail"]


# Thousands separators


@pytest.mark.parametrize(
    ("decimal_mark", "volume", "cells"),
    [
        (",", "1.234,5", "1.200"),
        (".", "1,234.5", "1,200"),
        (",", "1 234,5", "1 200"),
        (".", "1 234.5", "1 200"),
    ],
)
async def test_thousands_are_grouped_with_the_other_mark_or_a_space(
    client, alice_headers, study, decimal_mark, volume, cells
):
    rows = [
        ["sample_id", "tissue", "collected_on", "volume [mL]", "cells"],
        ["S-1", "blood", "2025-03-14", volume, cells],
    ]

    response = await upload(
        client, study, alice_headers, csv_bytes(rows), fields={"decimal_mark": decimal_mark}
    )

    assert response.status_code == 201, response.text
    stored = (await stored_values(study))["S-1"]
    assert (stored["volume"], stored["cells"]) == (1234.5, 1200)


# The form fields


@pytest.mark.parametrize(
    ("field", "value"), [("date_order", "european"), ("decimal_mark", ";"), ("na_values", "NA,\x01")]
)
async def test_an_unknown_date_order_decimal_mark_or_a_marker_with_a_control_character_is_422(
    client, alice_headers, study, field, value
):
    response = await upload(client, study, alice_headers, slash_dates("2025-01-01"), fields={field: value})

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", field]
    assert await stored_values(study) == {}


@pytest.mark.parametrize("field", ["date_order", "decimal_mark", "na_values"])
async def test_a_reading_field_sent_twice_is_400(client, alice_headers, study, field):
    response = await client.post(
        files_url(study),
        files=[
            ("file", ("s.csv", slash_dates("2025-01-01"), "text/csv")),
            (field, (None, b"")),
            (field, (None, b"")),
        ],
        headers=alice_headers,
    )

    assert f"`{field}` at most once" in assert_problem(response, 400, "MALFORMED_UPLOAD")["detail"]


@pytest.mark.parametrize("field", ["date_order", "decimal_mark"])
async def test_every_documented_choice_of_a_reading_field_is_taken(client, alice_headers, study, field):
    documented = UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"][field]

    for choice in documented["enum"]:
        response = await upload(
            client, study, alice_headers, slash_dates("2025-01-01"), dry_run=True, fields={field: choice}
        )
        assert response.status_code == 200, (choice, response.text)


async def test_the_report_says_how_the_file_was_read(client, alice_headers, study):
    content = GERMAN_EXCEL.csv(lab_rows(GERMAN_EXCEL))

    response = await upload(client, study, alice_headers, content, dry_run=True)

    assert response.status_code == 200, response.text
    assert response.json()["encoding"] == "cp1252"
    assert response.json()["report"]["dialect"] == {
        "delimiter": ";",
        "decimal_mark": ",",
        "date_order": "dmy",
        "na_values": ["#N/A", "N/A", "NA", "NULL", "n/a", "null"],
    }


# Reports: columns apart from rows, the header as the template writes it, the row an id came first on


async def test_a_missing_required_column_is_named_as_the_template_writes_it_and_counted_apart(
    client, alice_headers, make_study, alice
):
    fields = [{"name": "volume", "type": "number", "unit": "mL", "required": True}]
    study = await make_study(owner=alice, sample_fields=fields, status=StudyStatus.ACTIVE)

    response = await upload(client, study, alice_headers, csv_bytes([["sample_id"], ["S-1"]]))

    report = assert_problem(response, 422, "SAMPLE_FILE_REJECTED")["report"]
    assert [(e["row"], e["column"], e["code"]) for e in report["errors"]] == [
        (1, "volume [mL]", "missing_column")
    ]
    assert (report["rows"], report["rejected"], report["errors_total"], report["column_errors"]) == (
        1,
        0,
        1,
        1,
    )


async def test_a_sample_id_given_twice_names_the_row_it_came_on_first(client, alice_headers, study):
    rows = [
        ["sample_id", "tissue", "collected_on"],
        ["S-1", "blood", "2025-01-01"],
        ["S-2", "blood", "2025-01-01"],
        [" s-1", "blood", "2025-01-01"],
    ]

    body = assert_problem(
        await upload(client, study, alice_headers, csv_bytes(rows)), 422, "SAMPLE_FILE_REJECTED"
    )

    assert [(e["row"], e["code"], e["message"]) for e in body["report"]["errors"]] == [
        (4, "duplicate_in_file", "is on row 2 of this file already")
    ]


# The JSON API stays strict: these spellings are for files


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("collected_on", "14.03.2025", "not_a_date"),
        ("collected_on", "3/14/2025", "not_a_date"),
        ("volume", "1.234,5", "not_a_number"),
        ("volume", "NA", "not_a_number"),
        ("fasting", "WAHR", "not_a_boolean"),
        ("fasting", "oui", "not_a_boolean"),
        ("tissue", "Blood", "not_a_choice"),
        ("frozen_at", "3/14/2025 2:30 PM", "not_a_datetime"),
    ],
)
async def test_the_json_api_does_not_read_the_spellings_of_files(
    client, alice_headers, study, field, value, code
):
    values = {"tissue": "blood", "collected_on": "2025-03-14", field: value}

    response = await client.post(
        study_url(study, "samples"), json={"sample_id": "S-1", "values": values}, headers=alice_headers
    )

    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    assert [(error["loc"], error["code"]) for error in body["errors"]] == [(["body", "values", field], code)]
