"""Migration 0005 counts the samples already stored into the per-status and per-day counters."""

import sqlite3
import uuid

from alembic import command

from tests.test_database import alembic_config


def _insert_sample(connection, study_id: str, number: int, status: str, created_at: str) -> None:
    connection.execute(
        'INSERT INTO samples (id, study_id, sample_id, sample_id_normalized, status, "values", version,'
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, '{}', 1, ?, ?)",
        (uuid.uuid4().hex, study_id, f"S-{number}", f"S-{number}", status, created_at, created_at),
    )


def test_migration_0005_backfills_the_counters_from_existing_samples(tmp_path):
    path = tmp_path / "before.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "0004")
    study_id = uuid.uuid4().hex
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO studies (id, code, code_normalized, title, status, sample_fields, sample_count, version,"
        " created_at, updated_at) VALUES (?, 'MIG-1', 'MIG-1', 'M', 'active', '[]', 3, 1, ?, ?)",
        (study_id, "2026-11-01 10:00:00.000000", "2026-11-01 10:00:00.000000"),
    )
    _insert_sample(connection, study_id, 1, "stored", "2026-11-01 23:59:59.000000")
    _insert_sample(connection, study_id, 2, "stored", "2026-11-02 00:00:00.000000")
    _insert_sample(connection, study_id, 3, "received", "2026-11-02 12:00:00.000000")
    connection.commit()
    connection.close()

    command.upgrade(config, "head")

    connection = sqlite3.connect(path)
    by_status = dict(connection.execute("SELECT status, count FROM study_sample_counts").fetchall())
    by_day = dict(connection.execute("SELECT day, count FROM study_daily_sample_counts").fetchall())
    connection.close()
    assert by_status == {"stored": 2, "received": 1}
    assert by_day == {"2026-11-01": 1, "2026-11-02": 2}
