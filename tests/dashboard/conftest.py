"""Fixtures of the dashboard tests: the study tests' users, and the sample-file upload helper."""

from tests.sampleFileUpload.conftest import empty_upload_dir  # noqa: F401 - autouse: no stored files leak
from tests.study import conftest as study_fixtures

alice = study_fixtures.alice
alice_headers = study_fixtures.alice_headers
admin = study_fixtures.admin

SUMMARY = "/api/v1/dashboard/summary"


def study_dashboard_url(study) -> str:
    return f"/api/v1/dashboard/studies/{study.id if not isinstance(study, str) else study}"
