"""Fixtures and helpers of the study module's tests."""

import pytest
from sqlalchemy import event

from src import database
from src.auth.constants import Role
from src.study.models import Sample, Study

STUDIES = "/api/v1/studies"

FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva", "tumour"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0, "max": 100},
    {"name": "age", "type": "integer", "required": False, "min": 0, "max": 130},
    {"name": "label", "type": "text", "required": False, "max_length": 10, "pattern": "[A-Z]+"},
    {"name": "fasting", "type": "boolean", "required": False},
    {"name": "collected_on", "type": "date", "required": False},
    {"name": "frozen_at", "type": "datetime", "required": False},
]


def study_url(study: Study | str, *rest: str) -> str:
    study_id = study if isinstance(study, str) else study.id
    return "/".join([STUDIES, str(study_id), *rest])


def sample_url(sample: Sample) -> str:
    return study_url(str(sample.study_id), "samples", str(sample.id))


@pytest.fixture
async def alice(make_user):
    return await make_user(email="alice@example.org")


@pytest.fixture
async def alice_headers(alice, auth_headers):
    return await auth_headers(alice)


@pytest.fixture
async def admin(make_user):
    return await make_user(email="admin@example.org", role=Role.ADMIN)


class StatementCounter:
    """Counts the SQL statements sent while it is active (`with StatementCounter() as sql:`)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def _count(self, _conn, _cursor, statement, *_args) -> None:
        self.statements.append(statement)

    def __enter__(self) -> "StatementCounter":
        event.listen(database.engine.sync_engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(database.engine.sync_engine, "before_cursor_execute", self._count)
