"""Migration 0016: entries written before it get the sample and the file they name (from their
details) into the columns a sample's log and the file's name are read by."""

import json
import sqlite3
import uuid

from alembic import command

from tests.test_database import alembic_config

BEFORE = "2026-11-01 09:00:00.000000"
CREATED = "2026-11-01 10:00:00.000000"
AFTER = "2026-11-01 11:00:00.000000"


def _insert_activity(connection, study_id: str, action: str, at: str, details: dict) -> str:
    entry_id = uuid.uuid4().hex
    connection.execute(
        "INSERT INTO study_activity (id, study_id, action, actor_id, at, details)"
        " VALUES (?, ?, ?, NULL, ?, ?)",
        (entry_id, study_id, action, at, json.dumps(details)),
    )
    return entry_id


def test_migration_0016_fills_the_sample_and_the_file_of_older_entries(tmp_path):
    path = tmp_path / "before.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "0015")
    study_id, other_study_id, sample_pk, file_id = (uuid.uuid4().hex for _ in range(4))
    connection = sqlite3.connect(path)
    for study in (study_id, other_study_id):
        connection.execute(
            "INSERT INTO studies (id, code, code_normalized, title, status, sample_fields, sample_count,"
            " version, created_at, updated_at) VALUES (?, ?, ?, 'M', 'active', '[]', 1, 1, ?, ?)",
            (study, study[:8], study[:8].upper(), BEFORE, BEFORE),
        )
    connection.execute(
        "INSERT INTO samples (id, study_id, created_at, updated_at, sample_id, sample_id_normalized, status,"
        " \"values\", version) VALUES (?, ?, ?, ?, 'S-1', 's-1', 'registered', '{}', 1)",
        (sample_pk, study_id, CREATED, CREATED),
    )
    created = _insert_activity(connection, study_id, "sample_created", CREATED, {"sample_id": "S-1"})
    updated = _insert_activity(connection, study_id, "sample_updated", AFTER, {"sample_id": "S-1"})
    # An earlier sample of the same id, deleted before this one was made: not this sample's.
    earlier = _insert_activity(connection, study_id, "sample_deleted", BEFORE, {"sample_id": "S-1"})
    elsewhere = _insert_activity(connection, other_study_id, "sample_created", AFTER, {"sample_id": "S-1"})
    imported = _insert_activity(
        connection,
        study_id,
        "sample_file_imported",
        AFTER,
        {"sample_file_id": str(uuid.UUID(file_id)), "filename": "week47.csv"},
    )
    connection.commit()
    connection.close()

    command.upgrade(config, "0016")

    connection = sqlite3.connect(path)
    columns = {
        entry_id: (sample, file)
        for entry_id, sample, file in connection.execute(
            "SELECT id, sample_pk, sample_file_id FROM study_activity"
        )
    }
    indexes = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    connection.close()
    assert columns == {
        created: (sample_pk, None),
        updated: (sample_pk, None),
        earlier: (None, None),
        elsewhere: (None, None),
        imported: (None, file_id),
    }
    assert "ix_study_activity_study_id_sample_pk_at_id" in indexes
    command.downgrade(config, "0015")
