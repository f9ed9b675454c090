"""Backup and restore (`python main.py backup DIR`, `restore DIR`): an installation made through the
API is backed up, restored into a FRESH database and a FRESH file store (a local directory, or an S3
bucket), and then holds the same rows in every table and the same bytes in every file; the restored
app, started as `python main.py`, serves the study and the uploaded file byte for byte. A damaged or
partial backup is refused, and a restore that lost rows or files does not verify."""

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import main
from scripts.local_stack import free_port, start_embedded, stop, wait_until_answering
from src import backup
from src.config import settings
from src.job_queue import libpq_conninfo
from src.sampleFileUpload.storage import LocalStorage
from tests.conftest import DEFAULT_PASSWORD, TEST_DATABASE_URL, assert_problem, bearer
from tests.s3_server import S3_CREDENTIALS
from tests.sampleFileUpload import test_s3_storage
from tests.sampleFileUpload.conftest import HEADER, sample_csv, upload
from tests.sampleFileUpload.files import csv_bytes
from tests.sampleFileUpload.test_faults import left_behind
from tests.study.conftest import FIELDS, STUDIES, study_url

# The S3 tests' fixture: the app stores in s3://<a new bucket>/PREFIX on the moto server.
s3_bucket = test_s3_storage.s3_bucket
PREFIX = test_s3_storage.PREFIX
on_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL.startswith("postgresql") or shutil.which("pg_restore") is None,
    reason="backup and restore are PostgreSQL's (pg_dump and pg_restore of its client)",
)
OWNER_EMAIL = "alice@example.org"
GOOD_FILE = sample_csv(5)
# A row whose tissue is not one of the choices: the upload is rejected and its errors file stored too.
REJECTED_FILE = csv_bytes([HEADER, ["S-9", "received", "plasma", "1.5", "40", "no", "2026-11-20"]])


@dataclass(frozen=True)
class Installation:
    study_id: str
    sample_file_id: str


@pytest.fixture(autouse=True)
def empty_upload_dir() -> None:
    """Each test starts with no stored file, so the files compared are this test's."""
    shutil.rmtree(settings.UPLOAD_DIR, ignore_errors=True)


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new, empty database on the test server (created as `createdb` would), dropped afterwards."""
    name = f"{make_url(TEST_DATABASE_URL).database}_restored_{uuid.uuid4().hex[:8]}"
    server = libpq_conninfo(TEST_DATABASE_URL)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
async def installation(client, make_user, auth_headers, join_by_invitation) -> Installation:
    """Two users, a study with typed fields that the second joined by invitation, one file imported
    (5 samples) and one rejected (its errors file stored too): every kind of stored file."""
    owner = await make_user(email=OWNER_EMAIL)
    editor = await make_user(email="bob@example.org")
    headers = await auth_headers(owner)
    created = await client.post(
        STUDIES, json={"code": "BK-1", "title": "Backed up", "sample_fields": FIELDS}, headers=headers
    )
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    activated = await client.post(study_url(study_id, "status"), json={"status": "active"}, headers=headers)
    assert activated.status_code == 200, activated.text
    await join_by_invitation(study_id, owner, editor, "editor")
    imported = await upload(client, study_id, headers, GOOD_FILE)
    assert imported.status_code == 201, imported.text
    assert_problem(
        await upload(client, study_id, headers, REJECTED_FILE, filename="rejected.csv"),
        422,
        "SAMPLE_FILE_REJECTED",
    )
    return Installation(study_id=study_id, sample_file_id=imported.json()["id"])


def table_counts(database_url: str) -> dict[str, int]:
    """Every table of the database and its rows, counted here (not by the code under test)."""
    with psycopg.connect(libpq_conninfo(database_url)) as connection:
        names = [
            name
            for (name,) in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return {
            name: connection.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            ).fetchone()[0]
            for name in names
        }


def local_file_hashes(root: Path) -> dict[str, str]:
    """The sha256 of every stored file under a local store's root, by key."""
    files = (root / "files").rglob("*") if (root / "files").exists() else ()
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files if path.is_file()}


def bucket_hashes(s3_server, bucket: str) -> dict[str, str]:
    return {
        name: hashlib.sha256(s3_server.object_bytes(bucket, name)).hexdigest()
        for name in s3_server.object_names(bucket)
    }


def restore_into(monkeypatch, directory: Path, *, database_url: str, storage_url: str) -> None:
    """`python main.py restore DIR` with DATABASE_URL and STORAGE_URL naming the fresh installation."""
    monkeypatch.setattr(settings, "DATABASE_URL", database_url)
    monkeypatch.setattr(settings, "STORAGE_URL", storage_url)
    main.main(["restore", str(directory)])


def served_by_restored_app(
    installation: Installation, *, log: Path, environment: dict[str, str]
) -> tuple[dict, bytes]:
    """`python main.py` on the restored installation: the owner signs in with her password, reads the
    study and downloads the imported file."""
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), **environment}
    process = start_embedded(env=env, log=log)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base_url}/api/v1/health", process=process)
        with httpx.Client(base_url=base_url, timeout=10) as http:
            tokens = http.post(
                "/api/v1/auth/token", data={"username": OWNER_EMAIL, "password": DEFAULT_PASSWORD}
            )
            assert tokens.status_code == 200, tokens.text
            headers = bearer(tokens.json())
            study = http.get(study_url(installation.study_id), headers=headers)
            assert study.status_code == 200, study.text
            content = http.get(f"/api/v1/sample-files/{installation.sample_file_id}/content", headers=headers)
            assert content.status_code == 200, content.text
            return study.json(), content.content
    finally:
        stop(process)


@on_postgresql
async def test_a_restore_into_a_fresh_database_and_directory_has_every_row_and_file(
    installation, fresh_database, tmp_path, monkeypatch
):
    source_rows = table_counts(TEST_DATABASE_URL)
    source_files = local_file_hashes(Path(settings.UPLOAD_DIR))
    assert (source_rows["users"], source_rows["samples"], source_rows["sample_files"]) == (2, 5, 2)
    assert len(source_files) == 3  # the imported file, the rejected one and its errors file
    restored_files = tmp_path / "restored-files"

    main.main(["backup", str(tmp_path / "backup")])
    assert (tmp_path / "backup").stat().st_mode & 0o777 == 0o700  # for its owner's eyes only
    restore_into(
        monkeypatch, tmp_path / "backup", database_url=fresh_database, storage_url=restored_files.as_uri()
    )

    assert table_counts(fresh_database) == source_rows
    assert local_file_hashes(restored_files) == source_files
    study, content = served_by_restored_app(
        installation,
        log=tmp_path / "restored-app.log",
        environment={"DATABASE_URL": fresh_database, "STORAGE_URL": restored_files.as_uri()},
    )
    assert (study["code"], study["sample_count"], len(study["sample_fields"])) == ("BK-1", 5, len(FIELDS))
    assert content == GOOD_FILE


@on_postgresql
async def test_a_restore_into_a_fresh_database_and_bucket_has_every_row_and_object(
    s3_bucket, installation, fresh_database, s3_server, tmp_path, monkeypatch
):  # s3_bucket first: the installation's files go to the bucket
    source_rows = table_counts(TEST_DATABASE_URL)
    source_objects = bucket_hashes(s3_server, s3_bucket)
    assert len(source_objects) == 3
    fresh_bucket = s3_server.new_bucket()
    fresh_storage_url = f"s3://{fresh_bucket}/{PREFIX}"

    main.main(["backup", str(tmp_path / "backup")])
    restore_into(monkeypatch, tmp_path / "backup", database_url=fresh_database, storage_url=fresh_storage_url)

    assert table_counts(fresh_database) == source_rows
    assert bucket_hashes(s3_server, fresh_bucket) == source_objects
    _, content = served_by_restored_app(
        installation,
        log=tmp_path / "restored-app.log",
        environment={
            "DATABASE_URL": fresh_database,
            "STORAGE_URL": fresh_storage_url,
            "S3_ENDPOINT_URL": s3_server.endpoint_url,
            "AWS_ACCESS_KEY_ID": S3_CREDENTIALS.access_key_id,
            "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS.secret_access_key,
            "AWS_DEFAULT_REGION": S3_CREDENTIALS.region,
        },
    )
    assert content == GOOD_FILE


def backed_up(tmp_path: Path, name: str = "backup") -> Path:
    directory = tmp_path / name
    main.main(["backup", str(directory)])
    return directory


@on_postgresql
async def test_a_damaged_backup_is_refused_before_anything_is_restored(
    installation, fresh_database, tmp_path, monkeypatch
):
    directory = backed_up(tmp_path)
    damaged = next(path for path in (directory / "files").rglob("*") if path.is_file())
    damaged.write_bytes(damaged.read_bytes() + b"\n")
    restored_files = tmp_path / "restored-files"

    with pytest.raises(SystemExit, match="differ from the manifest"):
        restore_into(monkeypatch, directory, database_url=fresh_database, storage_url=restored_files.as_uri())

    assert table_counts(fresh_database) == {}
    assert local_file_hashes(restored_files) == {}


@on_postgresql
async def test_a_backup_without_its_manifest_is_refused(installation, fresh_database, tmp_path, monkeypatch):
    directory = backed_up(tmp_path)
    (directory / backup.MANIFEST_NAME).unlink()  # as a backup that stopped half-way leaves it

    with pytest.raises(SystemExit, match="not a complete backup"):
        restore_into(
            monkeypatch, directory, database_url=fresh_database, storage_url=(tmp_path / "r").as_uri()
        )

    assert table_counts(fresh_database) == {}


@on_postgresql
async def test_a_restore_over_a_database_in_use_is_refused(installation, tmp_path, monkeypatch):
    directory = backed_up(tmp_path)
    rows_before = table_counts(TEST_DATABASE_URL)
    restored_files = tmp_path / "restored-files"

    with pytest.raises(SystemExit, match="restore into a new, empty database"):
        restore_into(
            monkeypatch, directory, database_url=TEST_DATABASE_URL, storage_url=restored_files.as_uri()
        )

    assert table_counts(TEST_DATABASE_URL) == rows_before
    assert local_file_hashes(restored_files) == {}


@on_postgresql
async def test_a_restore_missing_a_row_or_a_file_does_not_verify(
    installation, fresh_database, tmp_path, monkeypatch
):
    directory = backed_up(tmp_path)
    restored_files = tmp_path / "restored-files"
    restore_into(monkeypatch, directory, database_url=fresh_database, storage_url=restored_files.as_uri())
    manifest = backup.read_manifest(directory)
    restored_storage = LocalStorage(restored_files)
    backup.verify(manifest, database_url=fresh_database, storage=restored_storage)

    with psycopg.connect(libpq_conninfo(fresh_database)) as connection:
        connection.execute("DELETE FROM samples WHERE id = (SELECT min(id::text)::uuid FROM samples)")
    with pytest.raises(backup.BackupError, match="table samples: 4 rows, the backup had 5"):
        backup.verify(manifest, database_url=fresh_database, storage=restored_storage)

    lost = next(iter(manifest.files))
    restored_storage.delete(lost)
    with pytest.raises(backup.BackupError, match=f"file {lost}: missing or different"):
        backup.verify(manifest, database_url=fresh_database, storage=restored_storage)


@on_postgresql
async def test_orphans_are_left_out_and_a_file_gone_fails_the_backup(installation, tmp_path):
    storage = LocalStorage(settings.UPLOAD_DIR)
    orphan = left_behind(storage, b"stored, its record never committed")

    manifest = backup.read_manifest(backed_up(tmp_path))

    assert len(manifest.files) == 3
    assert orphan not in manifest.files
    assert not list((tmp_path / "backup").rglob(orphan))

    storage.delete(next(iter(manifest.files)))  # a file the database names, lost
    with pytest.raises(SystemExit, match="1 stored files the database names are gone"):
        backed_up(tmp_path, "second")
    assert not (tmp_path / "second" / backup.MANIFEST_NAME).exists()


def test_backup_refuses_sqlite_and_a_directory_in_use(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "DATABASE_URL", f"sqlite+aiosqlite:///{(tmp_path / 'app.db').as_posix()}")
    with pytest.raises(SystemExit, match="need PostgreSQL"):
        backed_up(tmp_path)

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("kept")
    with pytest.raises(SystemExit, match="is not empty"):
        backed_up(tmp_path, "used")
    assert (tmp_path / "used" / "something").read_text() == "kept"


store_away = test_s3_storage.store_away


@on_postgresql
async def test_a_store_that_is_away_stops_the_backup_with_a_reason(
    s3_bucket, installation, store_away, tmp_path
):
    store_away()

    with pytest.raises(SystemExit, match=r"the file store \(STORAGE_URL\) is not answering"):
        backed_up(tmp_path)
    assert not (tmp_path / "backup" / backup.MANIFEST_NAME).exists()


def a_backup_by_hand(
    directory: Path, content: bytes, *, manifest_format: int = backup.MANIFEST_FORMAT
) -> str:
    """A backup directory laid out as `backup` writes one: a file, its manifest entry, a dump."""
    key = uuid.uuid4().hex
    stored = directory / "files" / key[:2] / key
    stored.parent.mkdir(parents=True)
    stored.write_bytes(content)
    (directory / backup.DUMP_NAME).write_bytes(b"PGDMP")
    manifest = backup.Manifest(
        created_at="2026-12-07T02:15:03+00:00",
        alembic_revision="0017",
        tables={"users": 1},
        files={key: backup.StoredFile(hashlib.sha256(content).hexdigest(), len(content))},
    ).to_json()
    (directory / backup.MANIFEST_NAME).write_text(json.dumps({**manifest, "format": manifest_format}))
    return key


def test_the_backup_is_checked_against_its_manifest_before_the_database(tmp_path, monkeypatch):
    """On any database: a backup's files are checked first, and nothing is written to the database
    (SQLite here: a valid backup gets as far as refusing it) nor to the store."""
    directory = tmp_path / "backup"
    key = a_backup_by_hand(directory, b"sample_id\r\nS-1\r\n")
    restored_files = tmp_path / "restored-files"
    sqlite_url = f"sqlite+aiosqlite:///{(tmp_path / 'app.db').as_posix()}"
    stored = directory / "files" / key[:2] / key

    stored.write_bytes(b"sample_id\r\nS-2\r\n")
    with pytest.raises(SystemExit, match=f"differ from the manifest: {key}"):
        restore_into(monkeypatch, directory, database_url=sqlite_url, storage_url=restored_files.as_uri())
    stored.unlink()
    with pytest.raises(SystemExit, match=f"differ from the manifest: {key}"):
        restore_into(monkeypatch, directory, database_url=sqlite_url, storage_url=restored_files.as_uri())
    stored.write_bytes(b"sample_id\r\nS-1\r\n")
    with pytest.raises(SystemExit, match="need PostgreSQL"):
        restore_into(monkeypatch, directory, database_url=sqlite_url, storage_url=restored_files.as_uri())
    assert local_file_hashes(restored_files) == {}
    assert not (tmp_path / "app.db").exists()

    a_backup_by_hand(tmp_path / "newer", b"x", manifest_format=backup.MANIFEST_FORMAT + 1)
    with pytest.raises(SystemExit, match="format 2 is not 1"):
        restore_into(
            monkeypatch, tmp_path / "newer", database_url=sqlite_url, storage_url=restored_files.as_uri()
        )


@pytest.mark.parametrize(
    "files", [{"../../etc/passwd": {"sha256": "0" * 64, "size_bytes": 1}}, {"a" * 32: "not an entry"}]
)
def test_a_manifest_that_backup_did_not_write_is_refused(files, tmp_path, monkeypatch):
    a_backup_by_hand(tmp_path / "backup", b"x")
    manifest = json.loads((tmp_path / "backup" / backup.MANIFEST_NAME).read_text())
    (tmp_path / "backup" / backup.MANIFEST_NAME).write_text(json.dumps({**manifest, "files": files}))

    with pytest.raises(SystemExit, match="Not restored: the manifest"):
        restore_into(
            monkeypatch,
            tmp_path / "backup",
            database_url=f"sqlite+aiosqlite:///{(tmp_path / 'app.db').as_posix()}",
            storage_url=(tmp_path / "restored-files").as_uri(),
        )
