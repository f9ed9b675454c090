"""Files back in the user's dialect (issue 18): the `dialect` of the CSV template, export and errors.csv,
errors.csv as its upload was read, typed XLSX, and a template that says what an upload reads."""

import codecs
import csv
import io
import re
import uuid
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook

from src.sampleFileUpload import exports, writers
from src.sampleFileUpload.constants import (
    BOOLEAN_FALSE_SPELLINGS,
    BOOLEAN_TRUE_SPELLINGS,
    DEFAULT_NA_VALUES,
    CsvDialect,
)
from src.sampleFileUpload.storage import LocalStorage
from src.sampleFileUpload.writers import EXCEL, EXCEL_EU
from src.study.constants import StudyStatus
from src.study.sample_validation import compile_sample_schema
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import SAMPLE_FILES, csv_bytes, upload
from tests.sampleFileUpload.files import xlsx_bytes
from tests.sampleFileUpload.test_files import XLSX_TYPE
from tests.study.conftest import FIELDS, study_url

TEMPLATE_HEADERS = "sample_id;status;tissue;volume [mL];age;label;fasting;collected_on;frozen_at"
SAMPLES = [
    ["sample_id", "tissue", "volume [mL]", "age", "fasting", "collected_on", "frozen_at"],
    ["S-2", "blood", "0.25", "40", "yes", "2025-03-14", "2025-03-14T10:30:00+01:00"],
    ["S-1", "saliva", "99.5", "", "no", "", ""],
]


def errors_url(file_id: str) -> str:
    return f"{SAMPLE_FILES}/{file_id}/errors.csv"


async def rejected_file(client, study, headers, content: bytes, **kwargs) -> str:
    response = await upload(client, study, headers, content, **kwargs)
    assert response.status_code == 422, response.text
    return response.json()["sample_file_id"]


# ---------------------------------------------------------------------------------------------
# The template and the export in either dialect


async def test_csv_template_in_excel_eu_is_semicolon_separated_with_a_bom(client, alice_headers, study):
    response = await client.get(
        study_url(study, "sample-template"), params={"dialect": "excel-eu"}, headers=alice_headers
    )

    assert response.status_code == 200
    assert response.content.startswith(codecs.BOM_UTF8)
    header, description = response.content.decode("utf-8-sig").splitlines()
    assert header == TEMPLATE_HEADERS
    assert description.startswith("# description;")
    assert next(csv.reader([description], delimiter=";"))[2].startswith("choice; required; one of: blood")


async def test_the_excel_eu_template_filled_in_uploads_with_its_description_row_skipped(
    client, alice_headers, study
):
    template = await client.get(
        study_url(study, "sample-template"), params={"dialect": "excel-eu"}, headers=alice_headers
    )

    response = await upload(client, study, alice_headers, template.content + b"S-1;;blood;;;;;;\r\n")

    assert response.status_code == 201, response.text
    assert response.json()["report"]["rows"] == 1


async def test_csv_export_in_excel_eu_writes_decimal_commas_and_day_first_dates(client, alice_headers, study):
    assert (await upload(client, study, alice_headers, csv_bytes(SAMPLES))).status_code == 201

    response = await client.get(
        study_url(study, "samples", "export"), params={"dialect": "excel-eu"}, headers=alice_headers
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(codecs.BOM_UTF8)
    assert response.content.decode("utf-8-sig").splitlines() == [
        TEMPLATE_HEADERS,
        "S-1;registered;saliva;99,5;;;false;;",
        "S-2;registered;blood;0,25;40;;true;14.03.2025;14.03.2025 09:30:00",  # stored and written in UTC
    ]


async def test_csv_export_is_excel_by_default_and_unchanged_by_typing_its_dates(client, alice_headers, study):
    assert (await upload(client, study, alice_headers, csv_bytes(SAMPLES))).status_code == 201

    response = await client.get(study_url(study, "samples", "export"), headers=alice_headers)

    assert response.content.decode("utf-8-sig").splitlines()[1:] == [
        "S-1,registered,saliva,99.5,,,false,,",
        "S-2,registered,blood,0.25,40,,true,2025-03-14,2025-03-14T09:30:00Z",
    ]


DIALECT_ROUTES = {
    "/api/v1/studies/{study_id}/sample-template": "excel",
    "/api/v1/studies/{study_id}/samples/export": "excel",
    "/api/v1/sample-files/{file_id}/errors.csv": None,  # none: as the upload was read
}


@pytest.mark.parametrize(("path", "default"), DIALECT_ROUTES.items())
async def test_the_dialect_parameter_is_documented_with_its_values_and_default(client, path, default):
    document = (await client.get("/openapi.json")).json()
    parameter = next(
        parameter
        for parameter in document["paths"][path]["get"]["parameters"]
        if parameter["name"] == "dialect"
    )
    references = [
        option["$ref"]
        for option in parameter["schema"].get("anyOf", [parameter["schema"]])
        if "$ref" in option
    ]
    schema = document["components"]["schemas"][references[0].rsplit("/", 1)[1]]

    assert parameter["in"] == "query"
    assert parameter["required"] is False
    assert schema["enum"] == [dialect.value for dialect in CsvDialect] == ["excel", "excel-eu"]
    assert parameter["schema"].get("default") == default
    assert "`excel-eu` (semicolon-separated, `,` decimals, dates 14.03.2025" in parameter["description"]


@pytest.mark.parametrize("route", ["sample-template", "samples/export"])
async def test_an_unknown_dialect_is_refused(client, alice_headers, study, route):
    response = await client.get(
        study_url(study, route), params={"dialect": "excel-us"}, headers=alice_headers
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["query", "dialect"]


# ---------------------------------------------------------------------------------------------
# XLSX: typed cells, date columns formatted as dates


async def test_xlsx_export_has_real_dates_numbers_and_booleans(client, alice_headers, study):
    assert (await upload(client, study, alice_headers, csv_bytes(SAMPLES))).status_code == 201

    response = await client.get(
        study_url(study, "samples", "export"), params={"format": "xlsx"}, headers=alice_headers
    )

    worksheet = load_workbook(io.BytesIO(response.content))["samples"]
    volume, age, fasting, collected_on, frozen_at = (
        worksheet[cell] for cell in ("D3", "E3", "G3", "H3", "I3")
    )
    assert (volume.value, age.value, fasting.value) == (0.25, 40, True)
    assert (volume.data_type, age.data_type, fasting.data_type) == ("n", "n", "b")
    assert (collected_on.is_date, collected_on.number_format) == (True, "yyyy-mm-dd")
    assert collected_on.value.isoformat() == "2025-03-14T00:00:00"
    assert (frozen_at.is_date, frozen_at.number_format) == (True, "yyyy-mm-dd h:mm:ss")
    assert frozen_at.value.isoformat() == "2025-03-14T09:30:00"  # UTC: Excel has no time zones
    assert worksheet.column_dimensions["H"].number_format == "yyyy-mm-dd"


async def test_xlsx_template_has_its_date_columns_formatted_as_dates(client, alice_headers, study):
    response = await client.get(
        study_url(study, "sample-template"), params={"format": "xlsx"}, headers=alice_headers
    )

    worksheet = load_workbook(io.BytesIO(response.content))["samples"]
    formats = {column: worksheet.column_dimensions[column].number_format for column in "ABCDEFGHI"}
    assert formats == {
        **dict.fromkeys("ABCDEFG", "General"),
        "H": "yyyy-mm-dd",  # collected_on
        "I": "yyyy-mm-dd h:mm:ss",  # frozen_at
    }


async def test_an_xlsx_export_of_dates_before_1900_and_fractions_of_a_second_reuploads_unchanged(
    client, alice_headers, study
):
    content = csv_bytes(
        [
            ["sample_id", "tissue", "collected_on", "frozen_at"],
            ["S-1", "blood", "1899-12-31", "2025-03-14T09:30:00.250Z"],
            ["S-2", "blood", "1900-01-01", "1850-06-01T12:00:00Z"],
        ]
    )
    assert (await upload(client, study, alice_headers, content)).status_code == 201
    export = await client.get(
        study_url(study, "samples", "export"), params={"format": "xlsx"}, headers=alice_headers
    )

    again = await upload(
        client,
        study,
        alice_headers,
        export.content,
        filename="export.xlsx",
        mode="upsert",
        content_type=XLSX_TYPE,
    )

    assert again.status_code == 201, again.text
    assert again.json()["report"]["unchanged"] == 2


# ---------------------------------------------------------------------------------------------
# The template says what an upload reads


def template_descriptions() -> dict[str, str]:
    validator = compile_sample_schema(FIELDS)
    return {row[0]: row[1] for row in exports.field_rows(validator)[1:]}


def words_of(text: str) -> set[str]:
    return set(re.split(r"[\s/,;()]+", text))


def test_the_template_names_every_boolean_spelling_an_upload_reads():
    described = words_of(template_descriptions()["fasting"])

    assert set(BOOLEAN_TRUE_SPELLINGS) | set(BOOLEAN_FALSE_SPELLINGS) <= described


def test_the_template_names_the_date_forms_the_choices_and_the_missing_values():
    descriptions = template_descriptions()

    assert "2025-03-14, 14.03.2025, or 14/03/2025 with date order" in descriptions["collected_on"]
    assert "09:30" in descriptions["frozen_at"]
    assert "UTC" in descriptions["frozen_at"]
    assert "one of: blood, saliva, tumour (any case)" in descriptions["tissue"]
    assert "1.234,5" in descriptions["volume [mL]"]
    assert "decimal mark" in descriptions["volume [mL]"]
    missing = ", ".join(DEFAULT_NA_VALUES)
    assert f"empty when unknown (so are {missing})" in descriptions["volume [mL]"]
    assert missing not in descriptions["tissue"]  # required: NA is no value


async def test_the_spellings_the_template_describes_are_read_as_it_says(
    client, alice_headers, make_study, alice
):
    fields = [
        {"name": "count", "type": "integer"},
        {"name": "amount", "type": "number"},
        {"name": "ok", "type": "boolean"},
        {"name": "on", "type": "date"},
        {"name": "at", "type": "datetime"},
        {"name": "kind", "type": "choice", "choices": ["blood", "saliva"]},
    ]
    study = await make_study(owner=alice, sample_fields=fields, status=StudyStatus.ACTIVE)
    comma_file = csv_bytes(
        [
            ["sample_id", "count", "amount", "ok", "on", "at", "kind"],
            ["S-1", "1,234", "1,234.5", "WAHR", "14.03.2025", "14.03.2025 09:30:15", "Blood"],
            ["S-2", "NA", "N/A", "nein", "14/03/2025", "2025-03-14 09:30", "saliva"],
            ["S-3", "", "#N/A", "sí", "2025-03-14", "", "SALIVA"],
        ]
    )
    semicolon_file = csv_bytes(
        [
            ["sample_id", "count", "amount", "ok"],
            ["S-4", "1.234", "1.234,5", "oui"],
            ["S-5", "7", "1,5", "non"],
        ],
        delimiter=";",
    )

    first = await upload(client, study, alice_headers, comma_file)
    second = await upload(client, study, alice_headers, semicolon_file)

    assert (first.status_code, second.status_code) == (201, 201), first.text + second.text
    export = await client.get(study_url(study, "samples", "export"), headers=alice_headers)
    assert export.content.decode("utf-8-sig").splitlines()[1:] == [
        "S-1,registered,1234,1234.5,true,2025-03-14,2025-03-14T09:30:15Z,blood",
        "S-2,registered,,,false,2025-03-14,2025-03-14T09:30:00Z,saliva",
        "S-3,registered,,,true,2025-03-14,,saliva",
        "S-4,registered,1234,1234.5,true,,,",
        "S-5,registered,7,1.5,false,,,",
    ]


# ---------------------------------------------------------------------------------------------
# errors.csv: as the upload was read, or in the dialect asked for


GERMAN_ROWS = [["sample_id", "tissue", "age"], ["S-1", "Blut", "4"], ["S-2", "blood", "-1"]]


async def test_errors_csv_of_a_german_excel_file_comes_back_semicolon_separated_in_windows_1252(
    client, alice_headers, study
):
    content = csv_bytes([*GERMAN_ROWS, ["S-3", "Speichel", "Größe"]], delimiter=";", encoding="cp1252")
    file_id = await rejected_file(client, study, alice_headers, content)

    response = await client.get(errors_url(file_id), headers=alice_headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=windows-1252"
    assert not response.content.startswith(codecs.BOM_UTF8)
    lines = response.content.decode("cp1252").splitlines()
    assert lines[0] == "# row;# errors;sample_id;tissue;age"
    assert lines[-1].startswith("4;")
    assert lines[-1].endswith(";S-3;Speichel;Größe")


async def test_an_unknown_errors_csv_dialect_is_refused(client, alice_headers, study):
    file_id = await rejected_file(client, study, alice_headers, csv_bytes(GERMAN_ROWS))

    response = await client.get(errors_url(file_id), params={"dialect": "tsv"}, headers=alice_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_errors_csv_asked_for_in_a_dialect_is_written_in_it(client, alice_headers, study):
    content = csv_bytes([*GERMAN_ROWS, ["S-3", "Speichel", "Größe"]], delimiter=";", encoding="cp1252")
    file_id = await rejected_file(client, study, alice_headers, content)

    response = await client.get(errors_url(file_id), params={"dialect": "excel"}, headers=alice_headers)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(codecs.BOM_UTF8)
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "# row,# errors,sample_id,tissue,age"
    assert lines[-1].endswith(",S-3,Speichel,Größe")


async def test_errors_csv_of_a_windows_1252_file_is_utf_8_when_a_character_does_not_fit(
    client, alice_headers, make_study, alice
):
    fields = [{"name": "tissue", "type": "choice", "required": True, "choices": ["血液", "saliva"]}]
    study = await make_study(owner=alice, sample_fields=fields, status=StudyStatus.ACTIVE)
    content = csv_bytes([["sample_id", "tissue"], ["S-1", "Blüt"]], delimiter=";", encoding="cp1252")
    file_id = await rejected_file(client, study, alice_headers, content)

    response = await client.get(errors_url(file_id), headers=alice_headers)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "# row;# errors;sample_id;tissue"
    assert "not one of: 血液, saliva" in lines[1]
    assert lines[1].endswith(";S-1;Blüt")


async def test_errors_csv_of_a_utf_8_comma_file_stays_comma_separated_utf_8(client, alice_headers, study):
    file_id = await rejected_file(client, study, alice_headers, csv_bytes(GERMAN_ROWS))

    response = await client.get(errors_url(file_id), headers=alice_headers)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.content.decode("utf-8-sig").splitlines()[0] == "# row,# errors,sample_id,tissue,age"


async def test_errors_csv_of_a_tsv_file_is_tab_separated_and_named_tsv(client, alice_headers, study):
    file_id = await rejected_file(
        client, study, alice_headers, csv_bytes(GERMAN_ROWS, delimiter="\t"), filename="samples.tsv"
    )

    response = await client.get(errors_url(file_id), headers=alice_headers)
    as_csv = await client.get(errors_url(file_id), params={"dialect": "excel-eu"}, headers=alice_headers)

    assert response.headers["content-type"] == "text/tab-separated-values; charset=utf-8"
    assert 'filename="samples-errors.tsv"' in response.headers["content-disposition"]
    assert response.content.decode("utf-8-sig").splitlines()[0] == "# row\t# errors\tsample_id\ttissue\tage"
    assert 'filename="samples-errors.csv"' in as_csv.headers["content-disposition"]
    assert as_csv.content.decode("utf-8-sig").splitlines()[0] == "# row;# errors;sample_id;tissue;age"


async def test_errors_csv_of_an_xlsx_file_is_excel_unless_asked_otherwise(client, alice_headers, study):
    rows = [["sample_id", "tissue", "volume [mL]"], ["S-1", "plasma", 2.5]]
    file_id = await rejected_file(
        client, study, alice_headers, xlsx_bytes(rows), filename="s.xlsx", content_type=XLSX_TYPE
    )

    excel = await client.get(errors_url(file_id), headers=alice_headers)
    excel_eu = await client.get(errors_url(file_id), params={"dialect": "excel-eu"}, headers=alice_headers)

    assert excel.content.decode("utf-8-sig").splitlines()[1].endswith(",S-1,plasma,2.5")
    assert excel_eu.content.decode("utf-8-sig").splitlines()[1].endswith(";S-1;plasma;2,5")


async def test_the_fixed_rows_of_a_semicolon_errors_csv_upload_as_they_are(client, alice_headers, study):
    content = csv_bytes(GERMAN_ROWS, delimiter=";", encoding="cp1252")
    file_id = await rejected_file(client, study, alice_headers, content)
    errors = await client.get(errors_url(file_id), headers=alice_headers)
    fixed = errors.content.replace(b"Blut", b"blood").replace(b";-1", b";1")

    response = await upload(client, study, alice_headers, fixed)

    assert response.status_code == 201, response.text
    assert response.json()["report"]["created"] == 2


# How the record's report notes the dialect its upload was read in (the reading side fills it in).


def stored_upload(tmp_path, content: bytes) -> tuple[LocalStorage, str]:
    storage = LocalStorage(tmp_path)
    with storage.temp_file() as path:
        path.write_bytes(content)
        return storage, storage.save(path)


@pytest.mark.parametrize(
    ("noted", "expected"),
    [
        ({"delimiter": ";", "decimal_mark": ",", "date_order": "dmy"}, (";", ",")),
        ({"delimiter": ",", "decimal_mark": ",", "date_order": None}, (",", ",")),
        ({"delimiter": ";", "decimal_mark": ".", "date_order": None}, (";", ".")),
        # nothing usable noted: found again in the stored upload, whose decimal mark follows it
        ({"delimiter": "|", "decimal_mark": "x"}, (";", ",")),
        (None, (";", ",")),
        ("not a dialect", (";", ",")),
    ],
)
async def test_errors_csv_follows_the_dialect_the_report_notes(tmp_path, noted, expected):
    storage, key = stored_upload(tmp_path, csv_bytes(GERMAN_ROWS, delimiter=";"))
    report = {"columns": [], **({"dialect": noted} if noted is not None else {})}
    record = SimpleNamespace(report=report, format="csv", encoding="utf-8", storage_key=key, errors_key=None)

    style = await exports.errors_csv_style(storage, record, dialect=None)

    assert (style.delimiter, style.decimal_mark) == expected
    assert style.encoding == "utf-8-sig"


async def test_errors_csv_of_an_upload_no_longer_stored_falls_back_to_excel(tmp_path):
    record = SimpleNamespace(
        report={"columns": []}, format="csv", encoding="utf-8", storage_key=uuid.uuid4().hex, errors_key=None
    )

    assert await exports.errors_csv_style(LocalStorage(tmp_path), record, dialect=None) == EXCEL


@pytest.mark.parametrize(("dialect", "style"), [(CsvDialect.EXCEL, EXCEL), (CsvDialect.EXCEL_EU, EXCEL_EU)])
async def test_a_dialect_asked_for_wins_over_the_uploads(tmp_path, dialect, style):
    storage, key = stored_upload(tmp_path, csv_bytes(GERMAN_ROWS, delimiter="\t"))
    record = SimpleNamespace(report={}, format="tsv", encoding="cp1252", storage_key=key, errors_key=None)

    assert await exports.errors_csv_style(storage, record, dialect=dialect) == style


# Stored date and date-time values of every shape: the validator's own (taken by the export's
# shortcut), other ISO forms, texts that are no date or are no real day or time, formula-like text,
# digits that are not ASCII, and values of other JSON types left by an earlier field type.
STORED_DATES = [
    "2025-03-14", "2024-02-29", "0001-01-01", "9999-12-31", "2025-02-30", "2023-02-29", "2025-13-01",
    "2025-00-10", "20250314", "2025-W11-5", "2025-03-14T10:30:00Z", "2025/03/14", "14.03.2025",
    "\uff12\uff10\uff12\uff15-03-14", "2025-0\uff13-14", "=2025-03-14", "'2025-03-14", "-2025-03-14",
    "", " 2025-03-14",
    "2025-03-1a", 20250314, 3.5, True, None, ["2025-03-14"], {"on": "2025-03-14"},
]  # fmt: skip
STORED_DATETIMES = [
    "2025-03-14T10:30:00Z", "2025-03-14 10:30:00Z", "2025-03-14T23:59:59Z", "2025-03-14T24:00:00Z",
    "2025-03-14T23:59:60Z", "2025-03-14T23:60:00Z", "2025-02-30T10:30:00Z", "2025-03-14T10:30:00z",
    "2025-03-14T10:30:00+01:00", "2025-03-14T10:30:00+00:00", "2025-03-14T10:30:00.5Z",
    "2025-03-14T103000.5Z", "2025-03-14T10:30Z", "2025-03-14T10:30:00", "2025-W11-5T10:30:00Z",
    "20250314T10:30:00:00Z", "2025-03-14T1\u0660:30:00Z", "0001-01-01T00:00:00Z", "=2025-03-14T10:30:00Z",
    "2025-03-14", "", 1741948200, 1.5, False, None, ["2025-03-14T10:30:00Z"],
]  # fmt: skip


@pytest.mark.parametrize(
    ("shortcut", "long_way", "stored_values"),
    [
        (exports._day_first_date, exports._stored_date, STORED_DATES),
        (exports._day_first_datetime, exports._stored_datetime, STORED_DATETIMES),
    ],
    ids=["date", "datetime"],
)
def test_a_day_first_csv_writes_every_stored_date_as_parsing_it_would(shortcut, long_way, stored_values):
    """The excel-eu export turns a stored value of the validator's shape into its cell's text without
    making a date of it: every stored value, of that shape or not, comes out byte for byte as it did
    when each was read into a date and written by csv_cell (and a formula-like one guarded once)."""
    taken = [[shortcut(value)] for value in stored_values]
    parsed = [[long_way(value)] for value in stored_values]
    assert b"".join(writers.csv_chunks(taken, style=EXCEL_EU)) == b"".join(
        writers.csv_chunks(parsed, style=EXCEL_EU)
    )
    assert [row[0] for row in taken[:2]] == (
        ["14.03.2025", "29.02.2024"] if shortcut is exports._day_first_date else ["14.03.2025 10:30:00"] * 2
    )
