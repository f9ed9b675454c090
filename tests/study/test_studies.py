"""Studies: create, list, read, change, delete, and the lifecycle."""

import threading

import pytest
import re2
from pydantic import ValidationError
from sqlalchemy import func, select

from src.auth.constants import Role
from src.study import sample_schema, sample_validation
from src.study import samples as study_samples
from src.study import schemas as study_schemas
from src.study import service as study_service
from src.study.constants import ALLOWED_TRANSITIONS, StudyRole, StudyStatus
from src.study.models import Study, StudyMember
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, STUDIES, StatementCounter, study_url


def codes_of(response) -> list[str]:
    return [item["code"] for item in response.json()["items"]]


# POST /studies


async def test_create_study_answers_201_with_location_etag_and_the_study(client, db, alice, alice_headers):
    payload = {"code": "ONC-2026-01", "title": " Tumour markers ", "description": "Line one\nline two"}

    response = await client.post(STUDIES, json={**payload, "sample_fields": FIELDS}, headers=alice_headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{STUDIES}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["code"] == "ONC-2026-01"
    assert body["title"] == "Tumour markers"
    assert body["description"] == "Line one\nline two"
    assert body["status"] == "draft"
    assert body["sample_fields"] == FIELDS
    assert body["sample_count"] == 0
    assert body["my_role"] == "owner"
    assert body["created_by"] == str(alice.id)
    assert body["version"] == 1
    owner = await db.scalar(
        select(StudyMember).where(StudyMember.study_id == Study.id, Study.code == "ONC-2026-01")
    )
    assert (owner.user_id, owner.role) == (alice.id, StudyRole.OWNER)


async def test_create_study_without_fields_has_an_empty_schema(client, alice_headers):
    response = await client.post(STUDIES, json={"code": "AB", "title": "T"}, headers=alice_headers)

    assert response.status_code == 201
    assert response.json()["sample_fields"] == []


async def test_a_study_is_answered_without_checking_or_compiling_its_fields_again(
    client, alice, alice_headers, make_study, monkeypatch
):
    study = await make_study(
        owner=alice, sample_fields=[{"name": "code", "type": "text", "pattern": "[A-Z]+"}]
    )

    def refuse(*_args):
        raise AssertionError("a read compiled a pattern")

    monkeypatch.setattr(sample_schema, "compile_text_pattern", refuse)
    monkeypatch.setattr(sample_validation, "compile_text_pattern", refuse)
    monkeypatch.setattr(sample_schema, "read_sample_field", refuse)
    monkeypatch.setattr(study_schemas, "compile_text_pattern", refuse, raising=False)
    one = await client.get(f"{STUDIES}/{study.id}", headers=alice_headers)
    listed = await client.get(STUDIES, headers=alice_headers)

    assert one.json()["sample_fields"] == [
        {"name": "code", "type": "text", "required": False, "pattern": "[A-Z]+"}
    ]
    assert listed.status_code == 200


async def test_the_study_list_counts_the_sample_fields_instead_of_carrying_them(
    client, alice, alice_headers, make_study
):
    await make_study(owner=alice, sample_fields=FIELDS)

    with StatementCounter() as sql:
        response = await client.get(STUDIES, headers=alice_headers)

    (item,) = response.json()["items"]
    assert "sample_fields" not in item
    assert item["sample_field_count"] == len(FIELDS)
    assert "studies.sample_fields," not in sql.statements[-1]


@pytest.mark.parametrize("route", ["create", "replace"])
async def test_patterns_of_a_submitted_schema_compile_off_the_event_loop(
    client, alice, alice_headers, make_study, monkeypatch, route
):
    fields = [
        {"name": f"f{n}", "type": "text", "pattern": f"[A-Z]{{{n + 1}}}-off-loop-{route}"} for n in range(3)
    ]
    study = await make_study(owner=alice)
    threads = []
    compile_pattern = re2.compile
    monkeypatch.setattr(
        re2, "compile", lambda *args: threads.append(threading.current_thread()) or compile_pattern(*args)
    )

    if route == "create":
        response = await client.post(
            STUDIES, json={"code": "AB", "title": "T", "sample_fields": fields}, headers=alice_headers
        )
    else:
        response = await client.put(study_url(study, "sample-fields"), json=fields, headers=alice_headers)

    assert response.status_code in (200, 201), response.text
    assert len(threads) == 3
    assert threading.main_thread() not in threads


async def test_a_study_body_that_is_not_json_is_refused_by_the_route_not_a_500(client, alice_headers):
    response = await client.post(
        STUDIES,
        content=b'{"code": "AB", "sample_fields": [',
        headers={**alice_headers, "Content-Type": "application/json"},
    )

    assert_problem(response, 422, "VALIDATION_ERROR")


def test_one_field_definition_is_checked_by_sample_schema_with_its_loc():
    with pytest.raises(ValidationError) as raised:
        study_schemas.SampleFieldDefinition.model_validate({"name": "f", "type": "integer", "max": 2**1023})

    assert [error["loc"] for error in raised.value.errors()] == [("max",)]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            [{"name": f"c{n}", "type": "choice", "choices": [str(i) for i in range(1000)]} for n in range(3)],
            "at most 2000 choices",
        ),
        (
            [
                {"name": f"c{n}", "type": "choice", "choices": [f"{i:0>190}" for i in range(50)]}
                for n in range(8)
            ],
            "at most 65536 characters",
        ),
    ],
)
async def test_a_schema_too_large_to_store_and_answer_is_422(client, alice_headers, fields, problem):
    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T", "sample_fields": fields}, headers=alice_headers
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", "sample_fields"]
    assert problem in body["errors"][0]["msg"]


async def test_a_studys_validator_is_compiled_once_per_version(
    client, alice, alice_headers, make_study, monkeypatch
):
    study = await make_study(owner=alice, sample_fields=FIELDS)
    compiled = []
    compile_schema = sample_validation.compile_sample_schema
    monkeypatch.setattr(
        sample_validation, "compile_sample_schema", lambda f: compiled.append(f) or compile_schema(f)
    )

    for _ in range(3):
        assert study_samples.validator_of(study) is study_samples.validator_of(study)
    study.version += 1
    study_samples.validator_of(study)

    assert len(compiled) == 2


async def test_openapi_documents_the_412_of_a_sample_insert_and_the_400_of_a_malformed_body(client):
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert "412" in paths["/api/v1/studies/{study_id}/samples"]["post"]["responses"]
    bad_body = paths["/api/v1/studies/{study_id}"]["patch"]["responses"]["400"]
    assert "MALFORMED_BODY" in bad_body["description"]
    assert "get" in paths["/api/v1/studies/{study_id}/members/{user_id}"]


async def test_sample_fields_are_answered_without_unset_constraints(client, alice_headers):
    field = {"name": "note", "type": "text"}

    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T", "sample_fields": [field]}, headers=alice_headers
    )

    assert response.json()["sample_fields"] == [{"name": "note", "type": "text", "required": False}]


async def test_a_viewer_cannot_create_studies(client, make_user, auth_headers):
    viewer = await make_user(role=Role.VIEWER)

    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T"}, headers=await auth_headers(viewer)
    )

    assert_problem(response, 403, "STUDY_CREATION_FORBIDDEN")


async def test_an_admin_can_create_studies(client, admin, auth_headers):
    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T"}, headers=await auth_headers(admin)
    )

    assert response.status_code == 201


@pytest.mark.parametrize("code", ["onc-2026-01", "ONC-2026-01", " Onc-2026-01 "])
async def test_codes_are_unique_case_insensitively(client, alice_headers, make_study, code):
    await make_study(code="ONC-2026-01")

    response = await client.post(STUDIES, json={"code": code, "title": "T"}, headers=alice_headers)

    assert_problem(response, 409, "STUDY_CODE_TAKEN")


@pytest.mark.parametrize("code", ["A", "x" * 33, "ONC_1", "ONC 1", "ÖNC-1", ""])
async def test_invalid_codes_are_422(client, alice_headers, code):
    response = await client.post(STUDIES, json={"code": code, "title": "T"}, headers=alice_headers)

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", "code"]


@pytest.mark.parametrize(
    "payload",
    [
        {"code": "AB"},
        {"code": "AB", "title": ""},
        {"code": "AB", "title": "   "},
        {"code": "AB", "title": "a\nb"},
        {"code": "AB", "title": "x" * 201},
        {"code": "AB", "title": "T", "description": "nul\x00"},
        {"code": "AB", "title": "T", "owner": "me"},
    ],
)
async def test_invalid_study_bodies_are_422(client, alice_headers, payload):
    response = await client.post(STUDIES, json=payload, headers=alice_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")


# Sample field definitions


def field(**overrides) -> dict:
    return {"name": "f", "type": "text", "required": False, **overrides}


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ([field(name="sample_id")], ["body", "sample_fields", 0, "name"]),
        ([field(name="Status")], ["body", "sample_fields", 0, "name"]),
        ([field(name="1st")], ["body", "sample_fields", 0, "name"]),
        ([field(name="has space")], ["body", "sample_fields", 0, "name"]),
        ([field(name="x" * 65)], ["body", "sample_fields", 0, "name"]),
        ([field(type="colour")], ["body", "sample_fields", 0, "type"]),
        ([field(name="Tissue"), field(name="tissue")], ["body", "sample_fields", 1, "name"]),
        ([field(type="choice")], ["body", "sample_fields", 0, "choices"]),
        ([field(type="choice", choices=[])], ["body", "sample_fields", 0, "choices"]),
        ([field(type="choice", choices=["a", "a"])], ["body", "sample_fields", 0, "choices"]),
        ([field(type="choice", choices=["x" * 201])], ["body", "sample_fields", 0, "choices", 0]),
        ([field(type="choice", choices=["a\nb"])], ["body", "sample_fields", 0, "choices", 0]),
        (
            [field(type="choice", choices=[str(n) for n in range(1001)])],
            ["body", "sample_fields", 0, "choices"],
        ),
        ([field(type="integer", min=5, max=1)], ["body", "sample_fields", 0]),
        ([field(type="integer", min=1.5)], ["body", "sample_fields", 0, "min"]),
        ([field(type="integer", min=10**310)], ["body", "sample_fields", 0, "min"]),
        ([field(type="number", max=10**400)], ["body", "sample_fields", 0, "max"]),
        ([field(type="number", max=2**1023)], ["body", "sample_fields", 0, "max"]),
        ([field(type="integer", max=2**53 + 1)], ["body", "sample_fields", 0, "max"]),
        ([field(type="integer", max=2**53)], ["body", "sample_fields", 0, "max"]),
        ([field(type="number", min=-(2**53))], ["body", "sample_fields", 0, "min"]),
        ([field(max_length=10_001)], ["body", "sample_fields", 0, "max_length"]),
        ([field(unit=" mL")], ["body", "sample_fields", 0, "unit"]),
        ([field(description="a\u202eb")], ["body", "sample_fields", 0, "description"]),
        ([field(type="integer", max_length=3)], ["body", "sample_fields", 0]),
        ([field(type="text", min=1)], ["body", "sample_fields", 0]),
        ([field(type="boolean", choices=["a"])], ["body", "sample_fields", 0]),
        ([field(pattern="(unclosed")], ["body", "sample_fields", 0, "pattern"]),
        ([field(pattern="(a)\\1")], ["body", "sample_fields", 0, "pattern"]),
        ([field(max_length=0)], ["body", "sample_fields", 0, "max_length"]),
        ([field(colour="red")], ["body", "sample_fields", 0, "colour"]),
        ([field(name=f"f{n}") for n in range(201)], ["body", "sample_fields"]),
    ],
)
async def test_bad_field_definitions_are_422_with_their_location(client, alice_headers, fields, loc):
    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T", "sample_fields": fields}, headers=alice_headers
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert loc in [error["loc"] for error in body["errors"]], body["errors"]


async def test_two_hundred_fields_are_allowed(client, alice_headers):
    fields = [field(name=f"f{n}") for n in range(200)]

    response = await client.post(
        STUDIES, json={"code": "AB", "title": "T", "sample_fields": fields}, headers=alice_headers
    )

    assert response.status_code == 201


# GET /studies


async def test_list_shows_only_the_callers_studies(
    client, alice, alice_headers, make_study, add_member, make_user
):
    mine = await make_study(owner=alice, code="MINE")
    shared = await make_study(code="SHARED")
    await add_member(shared, alice, StudyRole.VIEWER)
    await make_study(code="OTHERS")

    response = await client.get(STUDIES, params={"sort": "code"}, headers=alice_headers)

    assert response.status_code == 200
    body = response.json()
    assert codes_of(response) == ["MINE", "SHARED"]
    assert [item["my_role"] for item in body["items"]] == ["owner", "viewer"]
    assert (body["total"], body["total_is_exact"], body["page"], body["page_size"]) == (2, True, 1, 20)
    assert mine.id


async def test_an_admin_lists_every_study_as_owner(client, admin, auth_headers, make_study):
    await make_study(code="A1")
    await make_study(code="A2")

    response = await client.get(STUDIES, headers=await auth_headers(admin))

    assert sorted(codes_of(response)) == ["A1", "A2"]
    assert {item["my_role"] for item in response.json()["items"]} == {"owner"}


async def test_archived_studies_are_listed_only_when_asked_for(client, alice, alice_headers, make_study):
    await make_study(owner=alice, code="LIVE", status=StudyStatus.ACTIVE)
    await make_study(owner=alice, code="OLD", status=StudyStatus.ARCHIVED)

    default = await client.get(STUDIES, headers=alice_headers)
    by_status = await client.get(STUDIES, params={"status": "archived"}, headers=alice_headers)
    included = await client.get(
        STUDIES, params={"include_archived": "true", "sort": "code"}, headers=alice_headers
    )

    assert codes_of(default) == ["LIVE"]
    assert codes_of(by_status) == ["OLD"]
    assert codes_of(included) == ["LIVE", "OLD"]


async def test_list_filters_by_status(client, alice, alice_headers, make_study):
    await make_study(owner=alice, code="D1")
    await make_study(owner=alice, code="L1", status=StudyStatus.LOCKED)

    response = await client.get(STUDIES, params={"status": "locked"}, headers=alice_headers)

    assert codes_of(response) == ["L1"]


@pytest.mark.parametrize(
    ("q", "expected"), [("onc", ["ONC-1"]), ("MARKERS", ["ONC-1"]), ("%", ["PCT-1"]), ("zzz", [])]
)
async def test_list_q_matches_code_or_title_case_insensitively(
    client, alice, alice_headers, make_study, q, expected
):
    await make_study(owner=alice, code="ONC-1", title="Tumour markers")
    await make_study(owner=alice, code="PCT-1", title="Up 5% in a year")
    await make_study(owner=alice, code="OTHER", title="Something else")

    response = await client.get(STUDIES, params={"q": q}, headers=alice_headers)

    assert codes_of(response) == expected


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("code", ["A-1", "b-2", "C-3"]),
        ("-code", ["C-3", "b-2", "A-1"]),
        ("title", ["C-3", "A-1", "b-2"]),
        ("-title", ["b-2", "A-1", "C-3"]),
        ("created_at", ["b-2", "A-1", "C-3"]),
        ("-created_at", ["C-3", "A-1", "b-2"]),
    ],
)
async def test_list_sorts(client, alice, alice_headers, make_study, sort, expected):
    await make_study(owner=alice, code="b-2", title="Zebra")
    await make_study(owner=alice, code="A-1", title="Mouse")
    await make_study(owner=alice, code="C-3", title="Ant")

    response = await client.get(STUDIES, params={"sort": sort}, headers=alice_headers)

    assert codes_of(response) == expected


async def test_list_sorts_by_last_update(client, alice, alice_headers, make_study):
    first = await make_study(owner=alice, code="FIRST")
    await make_study(owner=alice, code="SECOND")
    await client.patch(study_url(first), json={"title": "touched"}, headers=alice_headers)

    response = await client.get(STUDIES, params={"sort": "-updated_at"}, headers=alice_headers)

    assert codes_of(response) == ["FIRST", "SECOND"]
    assert codes_of(await client.get(STUDIES, params={"sort": "updated_at"}, headers=alice_headers)) == [
        "SECOND",
        "FIRST",
    ]


async def test_list_pages(client, alice, alice_headers, make_study):
    for n in range(5):
        await make_study(owner=alice, code=f"P-{n}")

    response = await client.get(
        STUDIES, params={"sort": "code", "page": 2, "page_size": 2}, headers=alice_headers
    )

    assert codes_of(response) == ["P-2", "P-3"]
    assert response.json()["total"] == 5


async def test_a_page_past_the_end_still_has_the_total(client, alice, alice_headers, make_study):
    for n in range(3):
        await make_study(owner=alice, code=f"P-{n}")

    response = await client.get(STUDIES, params={"page": 3, "page_size": 2}, headers=alice_headers)

    assert (response.json()["items"], response.json()["total"], response.json()["total_is_exact"]) == (
        [],
        3,
        True,
    )


async def test_an_empty_first_page_totals_zero(client, alice_headers):
    response = await client.get(STUDIES, params={"q": "nothing"}, headers=alice_headers)

    assert (response.json()["items"], response.json()["total"], response.json()["total_is_exact"]) == (
        [],
        0,
        True,
    )


async def test_filtered_pages_count_what_the_filter_keeps(client, alice, admin, auth_headers, make_study):
    for n in range(3):
        await make_study(owner=alice, code=f"KEEP-{n}", title="kept")
    await make_study(owner=alice, code="OTHER", title="other")
    params = {"q": "kep", "status": "draft", "page_size": 2, "sort": "-code"}

    for caller in (alice, admin):
        response = await client.get(STUDIES, params=params, headers=await auth_headers(caller))

        assert (codes_of(response), response.json()["total"]) == (["KEEP-2", "KEEP-1"], 3)


@pytest.mark.parametrize("params", [{"sort": "id"}, {"status": "gone"}, {"page_size": 101}, {"q": "a\x00"}])
async def test_list_rejects_bad_parameters(client, alice_headers, params):
    assert_problem(await client.get(STUDIES, params=params, headers=alice_headers), 422, "VALIDATION_ERROR")


async def test_list_costs_the_same_statements_whatever_the_page_size(
    client, alice, alice_headers, make_study
):
    for n in range(6):
        await make_study(owner=alice, code=f"N-{n}")

    with StatementCounter() as small:
        assert (
            len((await client.get(STUDIES, params={"page_size": 1}, headers=alice_headers)).json()["items"])
            == 1
        )
    with StatementCounter() as large:
        assert (
            len((await client.get(STUDIES, params={"page_size": 50}, headers=alice_headers)).json()["items"])
            == 6
        )

    assert len(small.statements) == len(large.statements) == 2  # caller, then the page with its count


# GET /studies/{id}


async def test_read_study_sends_its_version_as_etag(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, sample_fields=FIELDS)

    response = await client.get(study_url(study), headers=alice_headers)

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["sample_fields"] == FIELDS


async def test_read_study_shows_the_callers_role(client, make_user, make_study, add_member, auth_headers):
    editor = await make_user()
    study = await make_study()
    await add_member(study, editor, StudyRole.EDITOR)

    response = await client.get(study_url(study), headers=await auth_headers(editor))

    assert response.json()["my_role"] == "editor"


async def test_read_study_with_a_malformed_id_is_422(client, alice_headers):
    assert_problem(await client.get(f"{STUDIES}/not-a-uuid", headers=alice_headers), 422, "VALIDATION_ERROR")


async def test_read_study_is_one_query_with_the_caller(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    with StatementCounter() as sql:
        assert (await client.get(study_url(study), headers=alice_headers)).status_code == 200

    assert len(sql.statements) == 1  # the caller (user + session) with the study and their membership
    assert "auth_sessions" in sql.statements[0]
    assert "study_members" in sql.statements[0]


# PATCH /studies/{id}


async def test_update_study_changes_what_was_sent_and_bumps_the_version(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, code="OLD-1", title="Old", description="keep me")

    response = await client.patch(
        study_url(study), json={"code": "NEW-1", "title": " New "}, headers=alice_headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["code"], body["title"], body["description"]) == ("NEW-1", "New", "keep me")
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'


async def test_update_study_description_null_clears_it(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, description="gone soon")

    response = await client.patch(study_url(study), json={"description": None}, headers=alice_headers)

    assert response.json()["description"] is None


async def test_update_study_without_changes_keeps_the_version(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, title="Same")

    response = await client.patch(study_url(study), json={"title": "Same"}, headers=alice_headers)

    assert response.json()["version"] == 1


async def test_update_study_to_a_taken_code_is_409(client, alice, alice_headers, make_study):
    await make_study(code="TAKEN")
    study = await make_study(owner=alice)

    response = await client.patch(study_url(study), json={"code": "taken"}, headers=alice_headers)

    assert_problem(response, 409, "STUDY_CODE_TAKEN")


async def test_update_study_may_change_the_case_of_its_own_code(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, code="MINE")

    response = await client.patch(study_url(study), json={"code": "mine"}, headers=alice_headers)

    assert response.json()["code"] == "mine"


@pytest.mark.parametrize("payload", [{"title": None}, {"code": None}, {"status": "active"}, {"title": ""}])
async def test_update_study_rejects_invalid_changes(client, alice, alice_headers, make_study, payload):
    study = await make_study(owner=alice)

    assert_problem(
        await client.patch(study_url(study), json=payload, headers=alice_headers), 422, "VALIDATION_ERROR"
    )


async def test_update_study_with_a_stale_if_match_is_412_and_changes_nothing(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, title="Original")
    await client.patch(study_url(study), json={"title": "Second"}, headers=alice_headers)

    response = await client.patch(
        study_url(study), json={"title": "Third"}, headers={**alice_headers, "If-Match": '"1"'}
    )

    assert_problem(response, 412, "PRECONDITION_FAILED")
    current = await client.get(study_url(study), headers=alice_headers)
    assert (current.json()["title"], current.headers["etag"]) == ("Second", '"2"')


async def test_update_study_with_the_current_if_match_applies(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.patch(
        study_url(study), json={"title": "Next"}, headers={**alice_headers, "If-Match": '"1"'}
    )

    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'


async def test_update_study_with_a_weak_if_match_is_412_and_changes_nothing(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice)

    response = await client.patch(
        study_url(study), json={"title": "Next"}, headers={**alice_headers, "If-Match": 'W/"1"'}
    )

    assert_problem(response, 412, "PRECONDITION_FAILED")
    assert (await client.get(study_url(study), headers=alice_headers)).json()["title"] == "A study"


async def test_update_study_with_a_malformed_if_match_is_400(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.patch(
        study_url(study), json={"title": "x"}, headers={**alice_headers, "If-Match": "1"}
    )

    assert_problem(response, 400, "INVALID_IF_MATCH")


# DELETE /studies/{id}


async def test_delete_a_draft_without_samples(client, db, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.delete(study_url(study), headers=alice_headers)

    assert response.status_code == 204
    assert await db.scalar(select(func.count()).select_from(Study)) == 0
    assert await db.scalar(select(func.count()).select_from(StudyMember)) == 0
    assert_problem(await client.get(study_url(study), headers=alice_headers), 404, "STUDY_NOT_FOUND")


async def test_delete_a_draft_with_samples_is_409(client, alice, alice_headers, make_study, make_sample):
    study = await make_study(owner=alice, sample_fields=FIELDS)
    await make_sample(study, values={"tissue": "blood"})

    body = assert_problem(
        await client.delete(study_url(study), headers=alice_headers), 409, "STUDY_NOT_DELETABLE"
    )
    assert "archive" in body["detail"]


@pytest.mark.parametrize("status", [StudyStatus.ACTIVE, StudyStatus.LOCKED, StudyStatus.ARCHIVED])
async def test_delete_a_study_that_is_not_a_draft_is_409(client, alice, alice_headers, make_study, status):
    study = await make_study(owner=alice, status=status)

    assert_problem(await client.delete(study_url(study), headers=alice_headers), 409, "STUDY_NOT_DELETABLE")


async def test_delete_study_with_a_stale_if_match_is_412(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)
    await client.patch(study_url(study), json={"title": "changed"}, headers=alice_headers)

    response = await client.delete(study_url(study), headers={**alice_headers, "If-Match": '"1"'})

    assert_problem(response, 412, "PRECONDITION_FAILED")
    assert (await client.get(study_url(study), headers=alice_headers)).status_code == 200


# POST /studies/{id}/status


ALL_TRANSITIONS = [(source, target) for source in StudyStatus for target in StudyStatus if source != target]


@pytest.mark.parametrize(("source", "target"), ALL_TRANSITIONS)
async def test_status_transitions(client, alice, alice_headers, make_study, source, target):
    study = await make_study(owner=alice, status=source)

    response = await client.post(study_url(study, "status"), json={"status": target}, headers=alice_headers)

    if target in ALLOWED_TRANSITIONS[source]:
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["version"]) == (target, 2)
        assert response.headers["etag"] == '"2"'
    else:
        body = assert_problem(response, 409, "INVALID_STATUS_TRANSITION")
        for allowed in ALLOWED_TRANSITIONS[source]:
            assert allowed in body["detail"]
        assert (await client.get(study_url(study), headers=alice_headers)).json()["status"] == source


async def test_the_lifecycle_end_to_end(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    for status in ("active", "locked", "active", "archived", "locked"):
        response = await client.post(
            study_url(study, "status"), json={"status": status}, headers=alice_headers
        )
        assert response.json()["status"] == status


async def test_status_change_with_a_stale_if_match_is_412(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.post(
        study_url(study, "status"), json={"status": "active"}, headers={**alice_headers, "If-Match": '"7"'}
    )

    assert_problem(response, 412, "PRECONDITION_FAILED")


async def test_unknown_status_is_422(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.post(study_url(study, "status"), json={"status": "frozen"}, headers=alice_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")


# Read-only states


@pytest.mark.parametrize("status", [StudyStatus.LOCKED, StudyStatus.ARCHIVED])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "", {"title": "x"}),
        ("PUT", "/sample-fields", []),
        ("POST", "/samples", {"sample_id": "S-NEW", "values": {"tissue": "blood"}}),
        ("PATCH", "/samples/{sample}", {"status": "stored"}),
        ("DELETE", "/samples/{sample}", None),
    ],
)
async def test_locked_and_archived_studies_are_read_only(
    client, alice, alice_headers, make_study, make_sample, db, status, method, path, body
):
    study = await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    sample = await make_sample(study, values={"tissue": "blood"})
    await client.post(study_url(study, "status"), json={"status": status}, headers=alice_headers)
    before = (await client.get(study_url(study, "samples"), headers=alice_headers)).json()

    response = await client.request(
        method, study_url(study) + path.format(sample=sample.id), json=body, headers=alice_headers
    )

    assert_problem(response, 409, "STUDY_READ_ONLY")
    assert (await client.get(study_url(study, "samples"), headers=alice_headers)).json() == before


@pytest.mark.parametrize("status", [StudyStatus.LOCKED, StudyStatus.ARCHIVED])
async def test_read_only_studies_still_read_and_manage_members(
    client, alice, alice_headers, make_study, make_user, status
):
    study = await make_study(owner=alice, status=status)
    newcomer = await make_user()

    assert (await client.get(study_url(study), headers=alice_headers)).status_code == 200
    invited = await client.post(
        study_url(study, "members"),
        json={"email": newcomer.email, "role": "viewer"},
        headers=alice_headers,
    )
    assert invited.status_code == 202


async def test_delete_study_with_the_current_if_match(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.delete(study_url(study), headers={**alice_headers, "If-Match": '"1"'})

    assert response.status_code == 204


async def test_a_code_taken_by_a_concurrent_create_is_409_not_500(
    client, alice_headers, make_study, monkeypatch
):
    await make_study(code="RACE-1")
    real_code_taken = study_service._code_taken
    calls = []

    async def free_at_first(*args, **kwargs) -> bool:
        calls.append(args)
        return False if len(calls) == 1 else await real_code_taken(*args, **kwargs)

    monkeypatch.setattr(study_service, "_code_taken", free_at_first)
    response = await client.post(STUDIES, json={"code": "race-1", "title": "T"}, headers=alice_headers)

    assert_problem(response, 409, "STUDY_CODE_TAKEN")
    assert len(calls) == 2
