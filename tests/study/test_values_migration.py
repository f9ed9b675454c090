"""Migration 0008: activity details written before they were bounded are cut by the same rule, and
stored field definitions beyond today's limits are brought to them (issue 16, finding 5 and 13)."""

import json
import sqlite3
import uuid

from alembic import command

from src.study.constants import ACTIVITY_CUT_MARK, MAX_SAFE_INTEGER, TEXT_MAX_LENGTH_LIMIT
from src.study.sample_validation import compile_sample_schema
from tests.test_database import alembic_config

NOW = "2026-11-01 10:00:00.000000"
OLD_FIELDS = [
    {"name": "essay", "type": "text", "required": False, "max_length": 100_000},
    {"name": "note", "type": "text", "required": False, "max_length": 50},
    {"name": "count", "type": "integer", "required": False, "min": -(2**53), "max": 2**53},
    {"name": "volume", "type": "number", "required": False, "max": 2.0**53},
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood"]},
]
SMALL = {"old": {"title": "a"}, "new": {"title": "b"}}
HUGE = {
    "sample_id": "S1",
    "old": {"values": {"essay": "x" * 900_000}},
    "new": {"values": {"essay": "y" * 900_000}},
}


def _insert_study(connection, study_id: str, fields: list[dict]) -> None:
    connection.execute(
        "INSERT INTO studies (id, code, code_normalized, title, status, sample_fields, sample_count, version,"
        " created_at, updated_at) VALUES (?, ?, ?, 'M', 'active', ?, 0, 3, ?, ?)",
        (study_id, study_id[:8], study_id[:8].upper(), json.dumps(fields), NOW, NOW),
    )


def _insert_activity(connection, study_id: str, details: dict) -> str:
    entry_id = uuid.uuid4().hex
    connection.execute(
        "INSERT INTO study_activity (id, study_id, action, actor_id, at, details)"
        " VALUES (?, ?, ?, NULL, ?, ?)",
        (entry_id, study_id, "sample_updated", NOW, json.dumps(details)),
    )
    return entry_id


def test_migration_0008_cuts_old_activity_and_brings_fields_within_the_limits(tmp_path):
    path = tmp_path / "before.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "0007")
    study_id, plain_id = uuid.uuid4().hex, uuid.uuid4().hex
    connection = sqlite3.connect(path)
    _insert_study(connection, study_id, OLD_FIELDS)
    _insert_study(connection, plain_id, OLD_FIELDS[1:2])
    small = _insert_activity(connection, study_id, SMALL)
    huge = _insert_activity(connection, study_id, HUGE)
    connection.commit()
    connection.close()

    command.upgrade(config, "head")

    connection = sqlite3.connect(path)
    details = dict(connection.execute("SELECT id, details FROM study_activity").fetchall())
    studies = {
        row[0]: row[1:] for row in connection.execute("SELECT id, sample_fields, version FROM studies")
    }
    connection.close()
    assert json.loads(details[small]) == SMALL
    cut = json.loads(details[huge])
    assert len(details[huge]) < 1_000
    assert cut["old"]["values"]["essay"] == "x" * 199 + ACTIVITY_CUT_MARK
    assert cut["truncated"] == ["/old/values/essay", "/new/values/essay"]
    fields, version = json.loads(studies[study_id][0]), studies[study_id][1]
    assert fields == [
        {**OLD_FIELDS[0], "max_length": TEXT_MAX_LENGTH_LIMIT},
        OLD_FIELDS[1],
        {**OLD_FIELDS[2], "min": -MAX_SAFE_INTEGER, "max": MAX_SAFE_INTEGER},
        {**OLD_FIELDS[3], "max": MAX_SAFE_INTEGER},
        OLD_FIELDS[4],
    ]
    assert version == 4
    compile_sample_schema(fields)  # compiles again
    assert (json.loads(studies[plain_id][0]), studies[plain_id][1]) == (OLD_FIELDS[1:2], 3)
