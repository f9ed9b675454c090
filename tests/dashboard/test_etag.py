"""The dashboards' answers are serialised once: the figures for the tag, the timestamp appended.
The bytes must be exactly what pydantic writes for the whole answer, for a member and an
administrator (whose summary has `users`), and the tag must cover everything but the timestamp."""

from datetime import UTC, datetime

import pytest

from src.dashboard.schemas import DashboardSummary, StudyDashboard
from src.dashboard.utils import figures_etag, with_generated_at
from src.study.constants import StudyStatus
from tests.dashboard.conftest import SUMMARY, study_dashboard_url
from tests.study.conftest import FIELDS


def pydantics_own_dump(model, content: bytes) -> bytes:
    return model.model_validate_json(content).model_dump_json(exclude_unset=True).encode()


@pytest.mark.parametrize("who", ["member", "admin"])
async def test_the_summary_is_the_bytes_pydantic_writes(
    client, alice_headers, auth_headers, admin, make_user, who
):
    headers = alice_headers if who == "member" else await auth_headers(admin)
    response = await client.get(SUMMARY, headers=headers)

    assert response.status_code == 200
    assert response.content == pydantics_own_dump(DashboardSummary, response.content)
    assert ("users" in response.json()) is (who == "admin")
    figures = response.content.rsplit(b',"generated_at":', 1)[0] + b"}"
    assert response.headers["ETag"] == figures_etag(figures)


async def test_a_study_dashboard_is_the_bytes_pydantic_writes(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice, code="ETAG-1", sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    response = await client.get(study_dashboard_url(study), headers=alice_headers)

    assert response.status_code == 200
    assert response.content == pydantics_own_dump(StudyDashboard, response.content)


@pytest.mark.parametrize("model", [DashboardSummary, StudyDashboard])
def test_the_timestamp_is_the_last_field_of_each_answer(model):
    """with_generated_at appends the timestamp: a field added after it would be written in the wrong place."""
    assert list(model.model_fields)[-1] == "generated_at"


def test_with_generated_at_writes_what_pydantic_writes_for_the_timestamp():
    at = datetime(2026, 12, 7, 8, 30, 15, 123456, tzinfo=UTC)

    assert with_generated_at(b'{"a":1}', at) == b'{"a":1,"generated_at":"2026-12-07T08:30:15.123456Z"}'
