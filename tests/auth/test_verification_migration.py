"""Migration 0013: accounts made before addresses were verified keep working as they did."""

import sqlite3
import uuid

from alembic import command

from tests.test_database import alembic_config

NOW = "2026-11-01 10:00:00.000000"


def test_migration_0013_counts_existing_accounts_as_verified_and_goes_back(tmp_path):
    path = tmp_path / "before.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path.as_posix()}")
    command.upgrade(config, "0012")
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO users (id, email, full_name, password_hash, role, is_active, created_at, updated_at)"
        " VALUES (?, 'old@example.org', 'Old', 'x', 'researcher', 1, ?, ?)",
        (uuid.uuid4().hex, NOW, NOW),
    )
    connection.commit()
    connection.close()

    command.upgrade(config, "head")

    connection = sqlite3.connect(path)
    assert connection.execute("SELECT email_verified_at FROM users").fetchall() == [(NOW,)]
    connection.close()
    command.downgrade(config, "0012")
    connection = sqlite3.connect(path)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(users)")]
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    connection.close()
    assert "email_verified_at" not in columns
    assert "study_invitations" not in tables
