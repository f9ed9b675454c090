"""Backup and restore of an installation: the PostgreSQL database and the stored files, in one
directory with a manifest that proves the restore (`python main.py backup DIR`, `restore DIR`).

A backup directory holds `database.dump` (pg_dump's custom format), `files/<2 hex>/<key>` (every
file a sample-file record names) and `manifest.json`, written last: a directory without one is not a
backup (a run that stopped half-way), and restore refuses it.

Consistency without stopping the app: the manifest's row counts, the list of files and the dump all
come from one snapshot of the database (a repeatable-read transaction exports it, pg_dump reads
through it). Records are committed only after their file is stored, so every file the snapshot names
exists when it is copied, unless a user deleted it meanwhile: then the backup fails (run it again).
Files no record of the snapshot names (an upload in progress, or what `prune` removes) are left out.

The restore goes into a fresh database and a fresh file store (STORAGE_URL, or UPLOAD_DIR): it
checks the backup's files against the manifest first, puts the files back, then the database (so no
restored record ever names a missing file), and finally counts every table and hashes every file of
the restored installation against the manifest.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from src.exceptions import StorageUnavailable
from src.sampleFileUpload.storage import Storage

MANIFEST_NAME = "manifest.json"
DUMP_NAME = "database.dump"
FILES_DIR_NAME = "files"
# The manifest's layout; a restore refuses one it does not know.
MANIFEST_FORMAT = 1
_CHUNK_BYTES = 1024 * 1024
# What the store makes its keys of (src/sampleFileUpload/storage.py): 32 hex digits.
_STORAGE_KEY = re.compile(r"[0-9a-f]{32}")
# The keys of stored files, as the snapshot sees them (a record not yet stored has "").
_STORED_KEYS = "SELECT storage_key, errors_key FROM sample_files"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    alembic_revision: str | None
    tables: dict[str, int]
    files: dict[str, StoredFile]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "created_at": self.created_at,
            "database": {"dump": DUMP_NAME, "alembic_revision": self.alembic_revision, "tables": self.tables},
            "files": {
                key: {"sha256": stored.sha256, "size_bytes": stored.size_bytes}
                for key, stored in sorted(self.files.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Manifest":
        if data.get("format") != MANIFEST_FORMAT:
            raise BackupError(
                f"Not restored: the manifest's format {data.get('format')!r} is not {MANIFEST_FORMAT}."
            )
        try:
            manifest = cls(
                created_at=data["created_at"],
                alembic_revision=data["database"]["alembic_revision"],
                tables=dict(data["database"]["tables"]),
                files={
                    key: StoredFile(entry["sha256"], entry["size_bytes"])
                    for key, entry in data["files"].items()
                },
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise BackupError(f"Not restored: the manifest is not one `backup` wrote ({error!r}).") from None
        # Keys name paths in the backup and in the store: only the store's own kind of key.
        strange = [key for key in manifest.files if not _STORAGE_KEY.fullmatch(key)]
        if strange:
            raise BackupError(
                f"Not restored: the manifest names files that are not storage keys: {strange[:3]}."
            )
        return manifest


# ---------------------------------------------------------------------------------------------
# Backup


def back_up(directory: Path, *, database_url: str, storage: Storage) -> Manifest:
    """The database, then the files it names, then the manifest, into `directory` (new or empty)."""
    directory = Path(directory)
    _prepare_empty_directory(directory)
    with _snapshot(database_url) as (connection, snapshot_id):
        tables = _table_counts(connection)
        keys = _stored_keys(connection)
        revision = _alembic_revision(connection)
        _run_client(
            "pg_dump",
            "--format=custom",
            f"--snapshot={snapshot_id}",
            f"--file={directory / DUMP_NAME}",
            database_url=database_url,
        )
    with _store_answering():
        files = _copy_files_out(storage, keys, directory / FILES_DIR_NAME)
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        alembic_revision=revision,
        tables=tables,
        files=files,
    )
    _write_manifest(directory, manifest)
    return manifest


def _prepare_empty_directory(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"Not backed up: {directory} is not empty (each backup goes into a new directory).")
    directory.mkdir(parents=True, exist_ok=True)
    # It holds password hashes and every study's data: for its owner's eyes only.
    directory.chmod(0o700)


@contextlib.contextmanager
def _snapshot(database_url: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A read-only repeatable-read transaction, and the id of its snapshot for pg_dump to read through."""
    with _connect(database_url) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        (snapshot_id,) = connection.execute("SELECT pg_export_snapshot()").fetchone()
        try:
            yield connection, snapshot_id
        finally:
            # Held until pg_dump is done: the exported snapshot is valid only while this transaction lasts.
            connection.execute("ROLLBACK")


def _stored_keys(connection: psycopg.Connection) -> list[str]:
    return sorted({key for row in connection.execute(_STORED_KEYS) for key in row if key})


def _copy_files_out(storage: Storage, keys: list[str], files_dir: Path) -> dict[str, StoredFile]:
    copied: dict[str, StoredFile] = {}
    vanished = []
    for key in keys:
        target = _backup_path(files_dir, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with storage.open(key) as source, open(target, "wb") as copy:
                copied[key] = _copy_hashing(source, copy)
        except FileNotFoundError:
            vanished.append(key)
    if vanished:
        # No manifest is written: this directory is not a backup.
        raise BackupError(
            f"Not backed up: {len(vanished)} stored files the database names are gone (deleted while the "
            f"backup ran, or lost): {', '.join(vanished[:10])}. Run the backup again."
        )
    return copied


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    """Written to a temporary name and renamed: a manifest is whole or absent."""
    temporary = directory / f".{MANIFEST_NAME}.part"
    temporary.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, directory / MANIFEST_NAME)


# ---------------------------------------------------------------------------------------------
# Restore


def restore(directory: Path, *, database_url: str, storage: Storage) -> Manifest:
    """The backup in `directory` into an empty database and file store, then checked against its
    manifest; BackupError when anything differs."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    _check_backup_files(directory, manifest)
    _require_empty_database(database_url)
    with _store_answering():
        _copy_files_in(storage, directory / FILES_DIR_NAME, manifest)
    _run_client(
        "pg_restore",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        str(directory / DUMP_NAME),
        database_url=database_url,
    )
    with _store_answering():
        verify(manifest, database_url=database_url, storage=storage)
    return manifest


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise BackupError(f"Not restored: {path} is missing, so {directory} is not a complete backup.")
    if not (Path(directory) / DUMP_NAME).is_file():
        raise BackupError(f"Not restored: {DUMP_NAME} is missing from {directory}.")
    return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))


def _check_backup_files(directory: Path, manifest: Manifest) -> None:
    """Before anything is written: a damaged backup is refused whole, not half-restored."""
    files_dir = directory / FILES_DIR_NAME
    damaged = [
        key
        for key, expected in manifest.files.items()
        if _hash_of_path(_backup_path(files_dir, key)) != expected
    ]
    if damaged:
        raise BackupError(
            f"Not restored: {len(damaged)} files of the backup are missing or differ from the manifest: "
            f"{', '.join(damaged[:10])}."
        )


def _require_empty_database(database_url: str) -> None:
    with _connect(database_url) as connection:
        tables = _table_names(connection)
    if tables:
        raise BackupError(
            f"Not restored: the database already has {len(tables)} tables; restore into a new, empty "
            "database (createdb), never over a live one."
        )


def _copy_files_in(storage: Storage, files_dir: Path, manifest: Manifest) -> None:
    for key in manifest.files:
        with storage.temp_file() as temporary:
            shutil.copyfile(_backup_path(files_dir, key), temporary)
            storage.save_as(temporary, key)


def verify(manifest: Manifest, *, database_url: str, storage: Storage) -> None:
    """The installation at `database_url` and `storage` holds what the manifest says: every table's
    row count, and every file with its sha256."""
    with _connect(database_url) as connection:
        tables = _table_counts(connection)
    problems = [
        f"table {name}: {tables.get(name)} rows, the backup had {count}"
        for name, count in sorted(manifest.tables.items())
        if tables.get(name) != count
    ]
    problems += [f"table {name}: not in the backup" for name in sorted(set(tables) - set(manifest.tables))]
    problems += [
        f"file {key}: missing or different"
        for key, expected in sorted(manifest.files.items())
        if _hash_of_stored(storage, key) != expected
    ]
    if problems:
        raise BackupError("The restored installation differs from the backup: " + "; ".join(problems[:20]))


# ---------------------------------------------------------------------------------------------
# Shared


def _require_postgresql(database_url: str) -> None:
    if not make_url(database_url).drivername.startswith("postgresql"):
        raise BackupError(
            "Backup and restore need PostgreSQL (DATABASE_URL). For the embedded SQLite database, stop "
            "the app and copy its file and UPLOAD_DIR."
        )


@contextlib.contextmanager
def _store_answering() -> Iterator[None]:
    """The store's 503 (an app error) as what the command says: it stopped, and why."""
    try:
        yield
    except StorageUnavailable as error:
        raise BackupError(
            f"Stopped: the file store (STORAGE_URL) is not answering or refuses us ({error.__cause__}). "
            "Nothing was verified; run the command again (a restore into a fresh database and store)."
        ) from None


def _libpq_url(database_url: str) -> str:
    """DATABASE_URL as libpq reads it, without the password (pg_dump's command line is visible to
    every user of the host; the password goes in PGPASSWORD)."""
    url = make_url(database_url).set(drivername="postgresql", password=None)
    return url.render_as_string(hide_password=False)


def _password(database_url: str) -> str | None:
    password = make_url(database_url).password
    return None if password is None else str(password)


def _connect(database_url: str) -> psycopg.Connection:
    _require_postgresql(database_url)
    try:
        return psycopg.connect(_libpq_url(database_url), password=_password(database_url), autocommit=True)
    except psycopg.OperationalError as error:
        raise BackupError(f"The database cannot be reached: {error}") from None


def _run_client(program: str, *arguments: str, database_url: str) -> None:
    """pg_dump or pg_restore from PATH (PostgreSQL's client, of the server's major version or newer)."""
    if shutil.which(program) is None:
        raise BackupError(
            f"{program} is not installed: install PostgreSQL's client (the server's major version)."
        )
    environment = dict(os.environ)
    password = _password(database_url)
    if password is not None:
        environment["PGPASSWORD"] = password
    finished = subprocess.run(  # noqa: S603 (a fixed program and our own arguments)
        [program, *arguments, f"--dbname={_libpq_url(database_url)}"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise BackupError(f"{program} failed ({finished.returncode}): {finished.stderr.strip()[-2000:]}")


def _table_names(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    )
    return [name for (name,) in rows]


def _table_counts(connection: psycopg.Connection) -> dict[str, int]:
    """Every table of the schema, the job queue's and alembic's included: exact counts."""
    counts = {}
    for name in _table_names(connection):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
        (counts[name],) = connection.execute(query).fetchone()
    return counts


def _alembic_revision(connection: psycopg.Connection) -> str | None:
    if "alembic_version" not in _table_names(connection):
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else row[0]


def _backup_path(files_dir: Path, key: str) -> Path:
    """As LocalStorage lays files out (`<2 hex>/<key>`), so a backup's files/ is browsable the same way."""
    return files_dir / key[:2] / key


def _copy_hashing(source: BinaryIO, target: BinaryIO) -> StoredFile:
    """The file written to `target` (synced: a backup is on disk once it says so), and its hash."""
    stored = _hash_of(source, copy_to=target)
    target.flush()
    os.fsync(target.fileno())
    return stored


def _hash_of(source: BinaryIO, *, copy_to: BinaryIO | None = None) -> StoredFile:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(_CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return StoredFile(digest.hexdigest(), size)


def _hash_of_path(path: Path) -> StoredFile | None:
    try:
        with open(path, "rb") as source:
            return _hash_of(source)
    except FileNotFoundError:
        return None


def _hash_of_stored(storage: Storage, key: str) -> StoredFile | None:
    try:
        with storage.open(key) as source:
            return _hash_of(source)
    except FileNotFoundError:
        return None
