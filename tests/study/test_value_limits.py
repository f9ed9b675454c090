"""Issue 16: what a sample value may hold, through the API and sheet uploads alike. Integers that
browsers read exactly, text of one line without control or direction-changing characters, a default
and a hard maximum length of text; and a schema measured as the study stores it."""

import json

import pytest

from src.study.constants import (
    MAX_SAFE_INTEGER,
    MAX_SCHEMA_JSON,
    TEXT_DEFAULT_MAX_LENGTH,
    TEXT_MAX_LENGTH_LIMIT,
    StudyStatus,
)
from tests.conftest import assert_problem
from tests.sampleFileUpload.conftest import empty_upload_dir, upload  # noqa: F401 - autouse: no stored files leak
from tests.study.conftest import study_url

FIELDS = [
    {"name": "count", "type": "integer", "required": False},
    {"name": "note", "type": "text", "required": False},
    {"name": "long_note", "type": "text", "required": False, "max_length": TEXT_MAX_LENGTH_LIMIT},
]


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)


async def post_values(client, study, headers, **values):
    return await client.post(
        study_url(study, "samples"), json={"sample_id": "S-1", "values": values}, headers=headers
    )


def value_errors(response) -> list[tuple[str, str]]:
    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    return [(error["loc"][-1], error["code"]) for error in body["errors"]]


@pytest.mark.parametrize(
    ("count", "code"),
    [(MAX_SAFE_INTEGER + 1, "above_max"), (-MAX_SAFE_INTEGER - 1, "below_min"), (2**63 - 1, "above_max")],
)
async def test_integers_beyond_what_a_browser_reads_exactly_are_refused(
    client, study, alice_headers, count, code
):
    assert value_errors(await post_values(client, study, alice_headers, count=count)) == [("count", code)]


@pytest.mark.parametrize("count", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
async def test_integers_up_to_the_safe_limit_are_stored_exactly(client, study, alice_headers, count):
    created = await post_values(client, study, alice_headers, count=count)

    assert created.status_code == 201, created.text
    assert created.json()["values"]["count"] == count


async def test_a_sheet_upload_refuses_integers_beyond_the_safe_limit_too(client, study, alice_headers):
    content = f"sample_id,count\r\nS-1,{MAX_SAFE_INTEGER}\r\nS-2,{MAX_SAFE_INTEGER + 1}\r\n".encode()

    response = await upload(client, study, alice_headers, content, dry_run=True)

    assert response.status_code == 200, response.text
    errors = response.json()["report"]["errors"]
    assert [(error["row"], error["column"], error["code"]) for error in errors] == [(3, "count", "above_max")]


@pytest.mark.parametrize(
    "text",
    [
        "a\tb",
        "line one\nline two",
        "a\rb",
        "ab\x7f",
        "a\x85b",
        "a\u202eb",
        "a\u2066b",
        "a\u200bb",
        "a\ufeffb",
    ],
    ids=[
        "tab",
        "newline",
        "carriage-return",
        "delete",
        "next-line",
        "rtl-override",
        "isolate",
        "zero-width",
        "bom",
    ],
)
async def test_control_invisible_and_direction_changing_characters_in_text_are_refused(
    client, study, alice_headers, text
):
    assert value_errors(await post_values(client, study, alice_headers, note=text)) == [
        ("note", "invalid_text")
    ]


@pytest.mark.parametrize(
    "text",
    ["Zoë Ångström", "\u05d3\u05d5\u05d3 (\u200fDavid)", "\u0645\u06cc\u200c\u062e", "👩\u200d🔬"],
    ids=["accents", "rtl-mark", "zero-width-non-joiner", "zero-width-joiner"],
)
async def test_text_in_any_script_is_kept(client, study, alice_headers, text):
    created = await post_values(client, study, alice_headers, note=text)

    assert created.status_code == 201, created.text
    assert created.json()["values"]["note"] == text


async def test_a_sheet_upload_refuses_direction_changing_characters_too(client, study, alice_headers):
    content = "sample_id,note\r\nS-1,fine\r\nS-2,invoice\u202egpj.exe\r\n".encode()

    response = await upload(client, study, alice_headers, content, dry_run=True)

    assert response.status_code == 200, response.text
    errors = response.json()["report"]["errors"]
    assert [(error["row"], error["column"], error["code"]) for error in errors] == [
        (3, "note", "invalid_text")
    ]


async def test_text_without_a_max_length_of_its_own_is_held_to_the_default(client, study, alice_headers):
    refused = await post_values(client, study, alice_headers, note="x" * (TEXT_DEFAULT_MAX_LENGTH + 1))
    assert value_errors(refused) == [("note", "too_long")]

    created = await post_values(client, study, alice_headers, note="x" * TEXT_DEFAULT_MAX_LENGTH)
    assert created.status_code == 201, created.text


async def test_a_field_may_set_a_max_length_up_to_the_hard_limit(client, study, alice_headers):
    refused = await post_values(client, study, alice_headers, long_note="x" * (TEXT_MAX_LENGTH_LIMIT + 1))
    assert value_errors(refused) == [("long_note", "too_long")]

    created = await post_values(client, study, alice_headers, long_note="x" * TEXT_MAX_LENGTH_LIMIT)
    assert created.status_code == 201, created.text


async def test_a_field_asking_for_more_than_the_hard_limit_is_refused(client, study, alice_headers):
    too_long = {"name": "essay", "type": "text", "max_length": TEXT_MAX_LENGTH_LIMIT + 1}

    response = await client.put(study_url(study, "sample-fields"), json=[too_long], headers=alice_headers)

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"][-1] == "max_length"


@pytest.mark.parametrize("bound", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1])
@pytest.mark.parametrize("field_type", ["integer", "number"])
async def test_field_bounds_beyond_the_safe_integers_are_refused(
    client, study, alice_headers, field_type, bound
):
    key = "max" if bound > 0 else "min"
    field = {"name": "count", "type": field_type, key: bound}

    response = await client.put(study_url(study, "sample-fields"), json=[field], headers=alice_headers)

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"][-1] == key


def compact_json(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


async def test_a_schema_is_measured_as_the_study_stores_it(client, study, alice_headers):
    """The study stores each definition with `required` said: a schema just under the limit as sent,
    but over it as stored, was taken and then failed every sample write with a 500."""
    fields = [{"name": f"f{number:03}", "type": "text", "description": "d" * 270} for number in range(200)]
    stored = [{**field, "required": False} for field in fields]
    assert compact_json(fields) <= MAX_SCHEMA_JSON < compact_json(stored)

    response = await client.put(study_url(study, "sample-fields"), json=fields, headers=alice_headers)

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert "characters of JSON" in body["errors"][0]["msg"]
