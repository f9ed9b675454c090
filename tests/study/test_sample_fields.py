"""PUT /studies/{id}/sample-fields: anything while empty, only compatible changes once there are samples."""

import pytest

from src.database import SessionFactory
from src.exceptions import PreconditionFailed
from src.study import samples as study_samples
from src.study import service as study_service
from src.study.models import Study
from src.study.schemas import SampleCreate, SampleFieldDefinition
from tests.conftest import assert_problem
from tests.study.conftest import FIELDS, study_url

TISSUE = {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]}
AGE = {"name": "age", "type": "integer", "required": False, "min": 0, "max": 100}
NOTE = {"name": "note", "type": "text", "required": False, "max_length": 20}


def fields_url(study) -> str:
    return study_url(study, "sample-fields")


async def test_replace_fields_of_a_study_without_samples_accepts_anything(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, sample_fields=[TISSUE, AGE])
    incompatible = [{"name": "age", "type": "text", "required": True}]

    response = await client.put(fields_url(study), json=incompatible, headers=alice_headers)

    assert response.status_code == 200, response.text
    assert response.json()["sample_fields"] == [{"name": "age", "type": "text", "required": True}]
    assert (response.json()["version"], response.headers["etag"]) == (2, '"2"')


@pytest.mark.parametrize(
    "new_fields",
    [
        [TISSUE, AGE, NOTE],  # an optional field added
        [{**TISSUE, "choices": ["blood", "saliva", "urine"]}, AGE],  # a choice added
        [TISSUE, {**AGE, "min": -10, "max": 200}],  # bounds loosened
        [TISSUE, {k: v for k, v in AGE.items() if k != "max"}],  # a bound dropped
        [{**TISSUE, "description": "where it came from"}, {**AGE, "unit": "years"}],  # description and unit
        [TISSUE, {**AGE, "required": False}],  # unchanged
    ],
)
async def test_compatible_changes_are_allowed_with_samples(
    client, alice, alice_headers, make_study, make_sample, new_fields
):
    study = await make_study(owner=alice, sample_fields=[TISSUE, AGE])
    await make_sample(study, values={"tissue": "blood", "age": 40})

    response = await client.put(fields_url(study), json=new_fields, headers=alice_headers)

    assert response.status_code == 200, response.text
    assert response.json()["sample_fields"] == new_fields


@pytest.mark.parametrize(
    ("new_fields", "expected"),
    [
        ([TISSUE], ["age: removed"]),
        ([TISSUE, AGE, {**NOTE, "required": True}], ["note: added as a required field"]),
        ([{**TISSUE, "choices": ["blood"]}, AGE], ["tissue: choice saliva removed"]),
        ([TISSUE, {**AGE, "type": "number"}], ["age: type changed from integer to number"]),
        ([TISSUE, {**AGE, "required": True}], ["age: made required"]),
        ([TISSUE, {**AGE, "min": 18, "max": 65}], ["age: min raised to 18", "age: max lowered to 65"]),
        ([TISSUE, {**AGE, "name": "Age"}], ["age: renamed to Age"]),
    ],
)
async def test_incompatible_changes_with_samples_are_409_listing_each(
    client, alice, alice_headers, make_study, make_sample, new_fields, expected
):
    study = await make_study(owner=alice, sample_fields=[TISSUE, AGE])
    await make_sample(study, values={"tissue": "blood", "age": 40})

    response = await client.put(fields_url(study), json=new_fields, headers=alice_headers)

    body = assert_problem(response, 409, "INCOMPATIBLE_SAMPLE_FIELDS")
    assert [error["msg"] for error in body["errors"]] == expected
    unchanged = await client.get(study_url(study), headers=alice_headers)
    assert (unchanged.json()["sample_fields"], unchanged.json()["version"]) == ([TISSUE, AGE], 1)


async def test_after_the_last_sample_is_deleted_anything_goes_again(
    client, alice, alice_headers, make_study, make_sample
):
    study = await make_study(owner=alice, sample_fields=[TISSUE, AGE])
    sample = await make_sample(study, values={"tissue": "blood"})
    await client.delete(study_url(study, "samples", str(sample.id)), headers=alice_headers)

    response = await client.put(fields_url(study), json=[], headers=alice_headers)

    assert response.status_code == 200


async def test_bad_definitions_in_the_list_are_422_at_their_index(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.put(
        fields_url(study), json=[TISSUE, {**AGE, "name": "status"}], headers=alice_headers
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", 1, "name"]


async def test_the_body_must_be_a_list(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)

    response = await client.put(fields_url(study), json={"fields": FIELDS}, headers=alice_headers)

    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_replace_fields_with_a_stale_if_match_is_412(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, sample_fields=[TISSUE])
    await client.patch(study_url(study), json={"title": "bumped"}, headers=alice_headers)

    response = await client.put(fields_url(study), json=[], headers={**alice_headers, "If-Match": '"1"'})

    assert_problem(response, 412, "PRECONDITION_FAILED")
    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_fields"] == [TISSUE]


async def test_new_fields_apply_to_the_next_sample(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, sample_fields=[TISSUE])
    await client.put(fields_url(study), json=[TISSUE, {**NOTE, "required": True}], headers=alice_headers)

    response = await client.post(
        study_url(study, "samples"),
        json={"sample_id": "S1", "values": {"tissue": "blood"}},
        headers=alice_headers,
    )

    body = assert_problem(response, 422, "INVALID_SAMPLE_VALUES")
    assert body["errors"] == [{"loc": ["body", "values", "note"], "msg": "is required", "code": "required"}]


# The schema and samples written at the same time: neither may slip past the other's check.


async def test_a_sample_validated_against_fields_that_changed_meanwhile_is_not_written(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice, sample_fields=[TISSUE])
    async with SessionFactory() as session:
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        await session.commit()
        changed = await client.put(
            fields_url(study), json=[{**TISSUE, "choices": ["urine"]}], headers=alice_headers
        )
        assert changed.status_code == 200

        with pytest.raises(PreconditionFailed):
            await study_samples.create_sample(
                session, access=stale, data=SampleCreate(sample_id="S1", values={"tissue": "blood"})
            )

    assert (await client.get(study_url(study), headers=alice_headers)).json()["sample_count"] == 0


async def test_fields_checked_against_an_empty_study_are_not_written_once_it_has_samples(
    alice, make_study, make_sample
):
    study = await make_study(owner=alice, sample_fields=[TISSUE, AGE])
    async with SessionFactory() as session:
        stale = await study_service.get_study_access(session, study_id=study.id, user=alice)
        await session.commit()
        await make_sample(study, values={"tissue": "blood"})

        with pytest.raises(PreconditionFailed):
            await study_service.replace_sample_fields(
                session, access=stale, fields=[SampleFieldDefinition(**TISSUE)], expected_version=None
            )

    async with SessionFactory() as session:
        assert (await session.get(Study, study.id)).sample_fields == [TISSUE, AGE]
