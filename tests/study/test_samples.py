"""Samples: validated against the study's fields, unique sample_ids, merges, filters, versions."""

import asyncio

import pytest
from sqlalchemy import select

from src.database import SessionFactory
from src.exceptions import PreconditionFailed
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.constants import StudyRole, StudyStatus
from src.study.models import Sample
from src.study.schemas import SampleRead, SampleUpdate
from tests.conftest import TEST_DATABASE_URL, assert_problem
from tests.study.conftest import FIELDS, StatementCounter, sample_url, study_url


@pytest.fixture
async def study(alice, make_study):
    return await make_study(owner=alice, sample_fields=FIELDS, status=StudyStatus.ACTIVE)


def samples_url(study) -> str:
    return study_url(study, "samples")


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["sample_id"] for item in response.json()["items"]]


async def sample_count(client, study, headers) -> int:
    return (await client.get(study_url(study), headers=headers)).json()["sample_count"]


# POST /samples


async def test_create_sample_normalises_values_and_answers_201(client, alice, alice_headers, study):
    payload = {
        "sample_id": " S-0001 ",
        "status": "received",
        "values": {
            "tissue": " blood ",
            "volume": "4,5",
            "age": "42",
            "fasting": "yes",
            "collected_on": "2026-11-20",
        },
    }

    response = await client.post(samples_url(study), json=payload, headers=alice_headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == sample_url_of(study, body["id"])
    assert response.headers["etag"] == '"1"'
    assert body["sample_id"] == "S-0001"
    assert body["status"] == "received"
    assert body["values"] == {
        "tissue": "blood",
        "volume": 4.5,
        "age": 42,
        "fasting": True,
        "collected_on": "2026-11-20",
    }
    assert (body["source_file_id"], body["created_by"], body["version"]) == (None, str(alice.id), 1)
    assert await sample_count(client, study, alice_headers) == 1


def sample_url_of(study, sample_pk: str) -> str:
    return study_url(study, "samples", sample_pk)


async def test_status_defaults_to_registered(client, alice_headers, study):
    response = await client.post(
        samples_url(study), json={"sample_id": "S1", "values": {"tissue": "blood"}}, headers=alice_headers
    )

    assert response.json()["status"] == "registered"


@pytest.mark.parametrize(
    ("name", "good", "stored"),
    [
        ("volume", 12, 12.0),
        ("age", 42.0, 42),
        ("label", "ABC", "ABC"),
        ("fasting", False, False),
        ("collected_on", "2026-01-31", "2026-01-31"),
        ("frozen_at", "2026-01-31T10:00:00+01:00", "2026-01-31T09:00:00Z"),
        ("tissue", "saliva", "saliva"),
    ],
)
async def test_each_type_accepts_a_good_value(client, alice_headers, study, name, good, stored):
    values = {"tissue": "blood", name: good}

    response = await client.post(
        samples_url(study), json={"sample_id": "S1", "values": values}, headers=alice_headers
    )

    assert response.status_code == 201, response.text
    assert response.json()["values"][name] == stored


@pytest.mark.parametrize(
    ("name", "bad", "code"),
    [
        ("age", "forty", "not_an_integer"),
        ("age", 4.5, "not_an_integer"),
        ("age", -1, "below_min"),
        ("age", 131, "above_max"),
        ("volume", "lots", "not_a_number"),
        ("volume", 100.5, "above_max"),
        ("label", "abc", "pattern_mismatch"),
        ("label", "ABCDEFGHIJK", "too_long"),
        ("fasting", "maybe", "not_a_boolean"),
        ("collected_on", "31/01/2026", "not_a_date"),
        ("frozen_at", "yesterday", "not_a_datetime"),
        ("tissue", "Blood", "not_a_choice"),
        ("tissue", None, "required"),
        ("colour", "red", "unknown_field"),
    ],
)
async def test_each_refused_value_is_a_422_naming_the_field_and_why(
    client, alice_headers, study, name, bad, code
):
    values = {"tissue": "blood", name: bad}

    response = await client.post(
        samples_url(study), json={"sample_id": "S1", "values": values}, headers=alice_headers
    )

    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    assert [(error["loc"], error["code"]) for error in body["errors"]] == [(["body", "values", name], code)]
    assert await sample_count(client, study, alice_headers) == 0


async def test_a_missing_required_field_and_a_bad_value_are_both_reported(client, alice_headers, study):
    response = await client.post(
        samples_url(study), json={"sample_id": "S1", "values": {"age": "x"}}, headers=alice_headers
    )

    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    assert sorted((error["loc"][-1], error["code"]) for error in body["errors"]) == [
        ("age", "not_an_integer"),
        ("tissue", "required"),
    ]


@pytest.mark.parametrize("duplicate", ["S-0001", "s-0001", "  S-0001  "])
async def test_sample_ids_are_unique_after_trimming_and_case_folding(
    client, alice_headers, study, make_sample, duplicate
):
    await make_sample(study, sample_id="S-0001", values={"tissue": "blood"})

    response = await client.post(
        samples_url(study),
        json={"sample_id": duplicate, "values": {"tissue": "blood"}},
        headers=alice_headers,
    )

    assert_problem(response, 409, "SAMPLE_ID_TAKEN")
    assert await sample_count(client, study, alice_headers) == 1


async def test_the_same_sample_id_may_be_used_in_another_study(
    client, alice, alice_headers, study, make_study, make_sample
):
    other = await make_study(owner=alice, sample_fields=FIELDS)
    await make_sample(other, sample_id="S-0001", values={"tissue": "blood"})

    response = await client.post(
        samples_url(study), json={"sample_id": "S-0001", "values": {"tissue": "blood"}}, headers=alice_headers
    )

    assert response.status_code == 201


@pytest.mark.parametrize("sample_id", ["", "   ", "a\tb", "x" * 101])
async def test_invalid_sample_ids_are_422(client, alice_headers, study, sample_id):
    response = await client.post(
        samples_url(study),
        json={"sample_id": sample_id, "values": {"tissue": "blood"}},
        headers=alice_headers,
    )

    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_samples_can_be_added_to_a_draft(client, alice, alice_headers, make_study):
    draft = await make_study(owner=alice, sample_fields=FIELDS)

    response = await client.post(
        samples_url(draft), json={"sample_id": "S1", "values": {"tissue": "blood"}}, headers=alice_headers
    )

    assert response.status_code == 201


# GET /samples/{pk}


async def test_read_sample(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood", "age": 3})

    response = await client.get(sample_url(sample), headers=alice_headers)

    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert response.json()["values"] == {"tissue": "blood", "age": 3}


async def test_a_sample_of_another_study_is_not_found_here(
    client, alice, alice_headers, study, make_study, make_sample
):
    other = await make_study(owner=alice, sample_fields=FIELDS)
    elsewhere = await make_sample(other, values={"tissue": "blood"})

    response = await client.get(sample_url_of(study, str(elsewhere.id)), headers=alice_headers)

    assert_problem(response, 404, "SAMPLE_NOT_FOUND")


# PATCH /samples/{pk}


async def test_patch_merges_values(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood", "age": 3, "volume": 1.5})

    response = await client.patch(
        sample_url(sample), json={"values": {"age": "4", "volume": None}}, headers=alice_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["values"] == {"tissue": "blood", "age": 4}
    assert (response.json()["version"], response.headers["etag"]) == (2, '"2"')


async def test_patch_status_and_sample_id_leave_values_alone(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.patch(
        sample_url(sample), json={"status": "stored", "sample_id": "RENAMED"}, headers=alice_headers
    )

    assert (response.json()["status"], response.json()["sample_id"], response.json()["values"]) == (
        "stored",
        "RENAMED",
        {"tissue": "blood"},
    )


async def test_patch_cannot_clear_a_required_value(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.patch(
        sample_url(sample), json={"values": {"tissue": None}}, headers=alice_headers
    )

    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    assert body["errors"][0]["loc"] == ["body", "values", "tissue"]


async def test_patch_with_a_bad_value_changes_nothing(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood", "age": 3})

    response = await client.patch(
        sample_url(sample), json={"status": "stored", "values": {"age": -5}}, headers=alice_headers
    )

    assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    unchanged = (await client.get(sample_url(sample), headers=alice_headers)).json()
    assert (unchanged["status"], unchanged["values"], unchanged["version"]) == (
        "registered",
        {"tissue": "blood", "age": 3},
        1,
    )


async def test_patch_to_a_taken_sample_id_is_409(client, alice_headers, study, make_sample):
    await make_sample(study, sample_id="TAKEN", values={"tissue": "blood"})
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.patch(sample_url(sample), json={"sample_id": " taken"}, headers=alice_headers)

    assert_problem(response, 409, "SAMPLE_ID_TAKEN")


async def test_patch_may_change_the_case_of_its_own_sample_id(client, alice_headers, study, make_sample):
    sample = await make_sample(study, sample_id="abc", values={"tissue": "blood"})

    response = await client.patch(sample_url(sample), json={"sample_id": "ABC"}, headers=alice_headers)

    assert response.json()["sample_id"] == "ABC"


@pytest.mark.parametrize(
    "payload", [{"values": None}, {"status": None}, {"sample_id": None}, {"source_file_id": None}]
)
async def test_patch_rejects_nulls_and_unknown_keys(client, alice_headers, study, make_sample, payload):
    sample = await make_sample(study, values={"tissue": "blood"})

    assert_problem(
        await client.patch(sample_url(sample), json=payload, headers=alice_headers), 422, "VALIDATION_ERROR"
    )


async def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    client, alice_headers, study, make_sample
):
    sample = await make_sample(study, values={"tissue": "blood"})
    await client.patch(sample_url(sample), json={"status": "received"}, headers=alice_headers)

    response = await client.patch(
        sample_url(sample), json={"status": "stored"}, headers={**alice_headers, "If-Match": '"1"'}
    )

    assert_problem(response, 412, "PRECONDITION_FAILED")
    current = await client.get(sample_url(sample), headers=alice_headers)
    assert (current.json()["status"], current.headers["etag"]) == ("received", '"2"')


async def test_patch_with_the_current_if_match_applies(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.patch(
        sample_url(sample), json={"status": "stored"}, headers={**alice_headers, "If-Match": '"1"'}
    )

    assert response.status_code == 200


@pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql"), reason="a race needs concurrent writers (PostgreSQL)"
)
async def test_two_patches_racing_with_the_same_if_match_let_exactly_one_through(
    client, alice_headers, study, make_sample
):
    sample = await make_sample(study, values={"tissue": "blood"})
    headers = {**alice_headers, "If-Match": '"1"'}

    responses = await asyncio.gather(
        client.patch(sample_url(sample), json={"values": {"age": 1}}, headers=headers),
        client.patch(sample_url(sample), json={"values": {"age": 2}}, headers=headers),
    )

    assert sorted(response.status_code for response in responses) == [200, 412]
    winner = next(response for response in responses if response.status_code == 200)
    current = await client.get(sample_url(sample), headers=alice_headers)
    assert current.json()["values"] == winner.json()["values"]
    assert current.json()["version"] == 2


async def test_a_key_that_cannot_be_encoded_is_refused_before_the_route(client, db, alice_headers, study):
    # A lone surrogate is valid JSON but not text: every JSON body with one is 400 (src/json_body.py).
    body = b'{"sample_id": "S-1", "values": {"tissue": "blood", "\\ud800": 1}}'

    response = await client.post(
        samples_url(study), content=body, headers={**alice_headers, "Content-Type": "application/json"}
    )

    assert_problem(response, 400, "MALFORMED_BODY")
    assert await db.scalar(select(Sample).where(Sample.study_id == study.id)) is None


# DELETE /samples/{pk}


async def test_delete_sample(client, db, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.delete(sample_url(sample), headers=alice_headers)

    assert response.status_code == 204
    assert await db.scalar(select(Sample).where(Sample.id == sample.id)) is None
    assert await sample_count(client, study, alice_headers) == 0
    assert_problem(await client.get(sample_url(sample), headers=alice_headers), 404, "SAMPLE_NOT_FOUND")


async def test_delete_sample_with_a_stale_if_match_is_412(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.delete(sample_url(sample), headers={**alice_headers, "If-Match": '"9"'})

    assert_problem(response, 412, "PRECONDITION_FAILED")
    assert await sample_count(client, study, alice_headers) == 1


async def test_a_deleted_sample_id_can_be_used_again(client, alice_headers, study, make_sample):
    sample = await make_sample(study, sample_id="AGAIN", values={"tissue": "blood"})
    await client.delete(sample_url(sample), headers=alice_headers)

    response = await client.post(
        samples_url(study), json={"sample_id": "again", "values": {"tissue": "blood"}}, headers=alice_headers
    )

    assert response.status_code == 201


# GET /samples


@pytest.fixture
async def listed(study, make_sample):
    await make_sample(
        study, sample_id="B-2", values={"tissue": "saliva", "age": 30, "fasting": True}, status="stored"
    )
    await make_sample(study, sample_id="a-1", values={"tissue": "blood", "age": 30, "volume": 2.5})
    await make_sample(
        study, sample_id="C-3", values={"tissue": "blood", "age": 50, "collected_on": "2026-01-02"}
    )
    await make_sample(study, sample_id="AB_9", values={"tissue": "tumour"})
    return study


async def test_list_samples_defaults_to_sample_id_order_with_the_maintained_total(
    client, alice_headers, listed
):
    with StatementCounter() as sql:
        response = await client.get(samples_url(listed), headers=alice_headers)

    assert ids_of(response) == ["a-1", "AB_9", "B-2", "C-3"]
    assert (response.json()["total"], response.json()["total_is_exact"]) == (4, True)
    assert not any("count(" in statement.lower() for statement in sql.statements)


async def test_a_listed_sample_is_exactly_the_sample_as_read_alone(client, alice_headers, listed):
    """The page is serialised from plain rows, the single read from the SampleRead model: the same JSON."""
    items = (await client.get(samples_url(listed), headers=alice_headers)).json()["items"]

    for item in items:
        alone = await client.get(study_url(str(listed.id), "samples", item["id"]), headers=alice_headers)
        assert item == alone.json()
    assert [list(item) for item in items] == [list(SampleRead.model_fields)] * 4


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"field.tissue": "blood"}, ["a-1", "C-3"]),
        ({"field.Tissue": "blood"}, ["a-1", "C-3"]),
        ({"field.age": "30"}, ["a-1", "B-2"]),
        ({"field.age": "30.0"}, ["a-1", "B-2"]),
        ({"field.tissue": "blood", "field.age": "50"}, ["C-3"]),
        ({"field.fasting": "true"}, ["B-2"]),
        ({"field.volume": "2.5"}, ["a-1"]),
        ({"field.collected_on": "2026-01-02"}, ["C-3"]),
        ({"field.tissue": "blood", "status": "stored"}, []),
        ({"status": "stored"}, ["B-2"]),
        ({"q": "a"}, ["a-1", "AB_9"]),
        ({"q": "AB_"}, ["AB_9"]),
        ({"q": "A%"}, []),
        ({"q": "c-3", "field.age": "50"}, ["C-3"]),
    ],
)
async def test_list_samples_filters(client, alice_headers, listed, params, expected):
    response = await client.get(samples_url(listed), params=params, headers=alice_headers)

    assert ids_of(response) == expected
    assert (response.json()["total"], response.json()["total_is_exact"]) == (len(expected), True)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"field.colour": "red"}, ["query", "field.colour"]),
        ({"field.age": "old"}, ["query", "field.age"]),
        ({"field.tissue": "plasma"}, ["query", "field.tissue"]),
        ({"field.fasting": "perhaps"}, ["query", "field.fasting"]),
        ({"field.age": ""}, ["query", "field.age"]),
    ],
)
async def test_list_samples_refuses_unknown_fields_and_bad_filter_values(
    client, alice_headers, listed, params, loc
):
    response = await client.get(samples_url(listed), params=params, headers=alice_headers)

    body = assert_problem(response, 422, "INVALID_FIELD_FILTER")
    assert body["errors"][0]["loc"] == loc


def blood_total(response) -> tuple[int, bool]:
    assert response.status_code == 200, response.text
    return response.json()["total"], response.json()["total_is_exact"]


async def test_one_choice_filter_takes_its_total_from_the_maintained_counter_not_a_count(
    client, alice_headers, listed
):
    url = samples_url(listed)
    with StatementCounter() as sql:
        response = await client.get(
            url, params={"field.tissue": "blood", "page_size": 1}, headers=alice_headers
        )

    assert blood_total(response) == (2, True)
    assert len(ids_of(response)) == 1
    assert not any("count(" in statement.lower() for statement in sql.statements)
    with StatementCounter() as sql:  # any other filter is still counted (up to the cap)
        await client.get(url, params={"field.age": "30"}, headers=alice_headers)
    assert any("count(" in statement.lower() for statement in sql.statements)


async def test_a_choice_filters_page_past_its_last_sample_still_has_the_exact_total(
    client, alice_headers, listed
):
    # The page's rows bring the counter along; a page with no row reads it on its own.
    params = {"field.tissue": "blood", "page_size": 1}
    for page, expected_items in ((2, 1), (3, 0)):
        response = await client.get(
            samples_url(listed), params={**params, "page": page}, headers=alice_headers
        )

        assert blood_total(response) == (2, True)
        assert len(ids_of(response)) == expected_items


async def test_the_choice_filters_total_follows_changes_and_deletions(client, alice_headers, listed):
    url, blood = samples_url(listed), {"field.tissue": "blood"}
    items = (await client.get(url, params=blood, headers=alice_headers)).json()["items"]
    first, second = (study_url(listed, "samples", item["id"]) for item in items)

    await client.patch(first, json={"values": {"tissue": "saliva"}}, headers=alice_headers)
    assert blood_total(await client.get(url, params=blood, headers=alice_headers)) == (1, True)
    await client.delete(second, headers=alice_headers)
    assert blood_total(await client.get(url, params=blood, headers=alice_headers)) == (0, True)
    assert blood_total(await client.get(url, params={"field.tissue": "saliva"}, headers=alice_headers)) == (
        2,
        True,
    )


async def test_a_field_filtered_on_twice_with_one_value_is_one_condition(client, alice_headers, listed):
    params = [("field.tissue", "blood"), ("field.Tissue", " blood ")]

    response = await client.get(samples_url(listed), params=params, headers=alice_headers)

    assert ids_of(response) == ["a-1", "C-3"]


async def test_a_field_filtered_on_with_two_values_is_422(client, alice_headers, listed):
    params = [("field.tissue", "blood"), ("field.tissue", "saliva")]

    response = await client.get(samples_url(listed), params=params, headers=alice_headers)

    body = assert_problem(response, 422, "VALIDATION_ERROR")  # no query parameter may repeat
    assert body["errors"][0] == {
        "loc": ["query", "field.tissue"],
        "msg": "may be given only once",
        "code": "repeated",
    }


async def test_more_than_20_field_filters_are_422(client, alice_headers, listed):
    params = [(f"field.tissue{number}", "blood") for number in range(21)]

    response = await client.get(samples_url(listed), params=params, headers=alice_headers)

    assert_problem(response, 422, "INVALID_FIELD_FILTER")


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("sample_id", ["a-1", "AB_9", "B-2", "C-3"]),
        ("-sample_id", ["C-3", "B-2", "AB_9", "a-1"]),
        ("created_at", ["B-2", "a-1", "C-3", "AB_9"]),
        ("-created_at", ["AB_9", "C-3", "a-1", "B-2"]),
    ],
)
async def test_list_samples_sorts(client, alice_headers, listed, sort, expected):
    assert (
        ids_of(await client.get(samples_url(listed), params={"sort": sort}, headers=alice_headers))
        == expected
    )


async def test_list_samples_sorts_by_status_and_update(client, alice_headers, listed):
    by_status = ids_of(
        await client.get(samples_url(listed), params={"sort": "-status"}, headers=alice_headers)
    )
    first = (await client.get(samples_url(listed), params={"q": "c-3"}, headers=alice_headers)).json()[
        "items"
    ][0]
    await client.patch(sample_url_of(listed, first["id"]), json={"status": "received"}, headers=alice_headers)
    by_update = ids_of(
        await client.get(samples_url(listed), params={"sort": "-updated_at"}, headers=alice_headers)
    )

    assert by_status[0] == "B-2"  # stored sorts after registered
    assert by_update[0] == "C-3"


async def test_list_samples_pages(client, alice_headers, listed):
    response = await client.get(
        samples_url(listed), params={"page": 2, "page_size": 3}, headers=alice_headers
    )

    assert ids_of(response) == ["C-3"]
    assert response.json()["total"] == 4


@pytest.mark.parametrize("params", [{}, {"field.tissue": "blood"}])
async def test_list_samples_costs_the_same_statements_whatever_the_page_size(
    client, alice_headers, listed, params
):
    with StatementCounter() as small:
        await client.get(samples_url(listed), params={**params, "page_size": 1}, headers=alice_headers)
    with StatementCounter() as large:
        await client.get(samples_url(listed), params={**params, "page_size": 100}, headers=alice_headers)

    assert len(small.statements) == len(large.statements) <= 4


async def test_viewers_can_list_and_read_samples(client, make_user, add_member, auth_headers, listed):
    viewer = await make_user()
    await add_member(listed, viewer, StudyRole.VIEWER)

    assert len(ids_of(await client.get(samples_url(listed), headers=await auth_headers(viewer)))) == 4


async def test_the_version_check_is_inside_the_update_so_a_stale_loaded_sample_cannot_win(
    alice, study, make_sample
):
    sample = await make_sample(study, values={"tissue": "blood"})
    async with SessionFactory() as first, SessionFactory() as second:
        access_first = await study_service.get_study_access(first, study_id=study.id, user=alice)
        access_second = await study_service.get_study_access(second, study_id=study.id, user=alice)
        loaded_first = await study_samples.get_sample(first, study=study, sample_pk=sample.id)
        loaded_second = await study_samples.get_sample(second, study=study, sample_pk=sample.id)
        await second.commit()  # both read version 1; the second holds no lock while the first writes

        await study_samples.update_sample(
            first,
            access=access_first,
            sample=loaded_first,
            data=SampleUpdate(status="stored"),
            expected_version=1,
        )
        with pytest.raises(PreconditionFailed):
            await study_samples.update_sample(
                second,
                access=access_second,
                sample=loaded_second,
                data=SampleUpdate(status="consumed"),
                expected_version=1,
            )

    async with SessionFactory() as check:
        stored = await check.get(Sample, sample.id)
        assert (stored.status, stored.version) == ("stored", 2)


async def test_patch_without_changes_keeps_the_version(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood", "age": 3})

    response = await client.patch(
        sample_url(sample), json={"values": {"age": "3"}, "status": "registered"}, headers=alice_headers
    )

    assert (response.json()["version"], response.headers["etag"]) == (1, '"1"')


async def test_patch_or_delete_of_an_unknown_sample_is_404(client, alice_headers, study):
    unknown = sample_url_of(study, "0d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a")

    assert_problem(
        await client.patch(unknown, json={"status": "stored"}, headers=alice_headers), 404, "SAMPLE_NOT_FOUND"
    )
    assert_problem(await client.delete(unknown, headers=alice_headers), 404, "SAMPLE_NOT_FOUND")


async def test_delete_sample_with_the_current_if_match(client, alice_headers, study, make_sample):
    sample = await make_sample(study, values={"tissue": "blood"})

    response = await client.delete(sample_url(sample), headers={**alice_headers, "If-Match": '"1"'})

    assert response.status_code == 204


async def test_a_sample_id_taken_by_a_concurrent_insert_is_409_not_500(
    client, alice_headers, study, make_sample, monkeypatch
):
    await make_sample(study, sample_id="RACE", values={"tissue": "blood"})

    async def looks_free(*_args, **_kwargs) -> bool:
        return False  # as if the other insert committed just after this request's check

    monkeypatch.setattr(study_samples, "_sample_id_taken", looks_free)
    response = await client.post(
        samples_url(study), json={"sample_id": "race", "values": {"tissue": "blood"}}, headers=alice_headers
    )

    assert_problem(response, 409, "SAMPLE_ID_TAKEN")
    assert await sample_count(client, study, alice_headers) == 1
