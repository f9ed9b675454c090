"""Where sample files live: a small interface, a local directory and an S3-compatible store behind it.

Keys are generated here, never taken from a client: a key is 32 hex digits, so it cannot name a
path or an object outside ours. Whichever the store, the temporary files an upload is received into
are on this host's disk (under UPLOAD_DIR/tmp); only `save` hands a complete file to the store.
"""

import contextlib
import functools
import os
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from src.config import settings
from src.exceptions import StorageUnavailable

if TYPE_CHECKING:
    from src.third_party.object_store import S3ObjectStore

_KEY = re.compile(r"^[0-9a-f]{32}$")


class Storage(Protocol):
    def temp_file(self) -> contextlib.AbstractContextManager[Path]:
        """A new empty file to write to; removed on leaving the block unless it was saved."""

    def save(self, temp_path: Path) -> str:
        """Stores the (complete) temporary file under a new key and returns the key."""

    def save_as(self, temp_path: Path, key: str) -> None:
        """Stores the (complete) temporary file under `key`: a restore putting back what it backed up."""

    def open(self, key: str) -> BinaryIO:
        """The stored file for reading; FileNotFoundError when there is none."""

    def delete(self, key: str) -> None:
        """Removes the stored file; nothing happens when there is none."""

    def remove_temp_files_older_than(self, cutoff: datetime, *, limit: int) -> int:
        """Removes at most `limit` temporary files last written before `cutoff`; returns how many."""

    def keys_older_than(self, cutoff: datetime) -> Iterator[str]:
        """The keys of stored files last written before `cutoff`."""


class HostTempFiles:
    """The temporary files of uploads in progress, under `temp_dir` on this host's disk."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = Path(temp_dir)

    @contextlib.contextmanager
    def temp_file(self) -> Iterator[Path]:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        path = self.temp_dir / f"{uuid.uuid4().hex}.part"
        path.touch(mode=0o600, exist_ok=False)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def remove_temp_files_older_than(self, cutoff: datetime, *, limit: int) -> int:
        removed = 0
        for path in self.temp_dir.glob("*.part") if self.temp_dir.exists() else ():
            if removed >= limit:
                break
            if _written_before(path, cutoff):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class LocalStorage(HostTempFiles):
    """Files under `root/files/<2 hex>/<key>`, temporary files under `root/tmp` on the same disk."""

    def __init__(self, root: Path) -> None:
        super().__init__(Path(root) / "tmp")
        self.root = Path(root)
        self.files_dir = self.root / "files"

    def save(self, temp_path: Path) -> str:
        key = uuid.uuid4().hex
        self.save_as(temp_path, key)
        return key

    def save_as(self, temp_path: Path, key: str) -> None:
        """fsync, then rename into place: a stored file is complete or absent, never half-written."""
        target = self._path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp_path, target)
        _fsync_directory(target.parent)

    def open(self, key: str) -> BinaryIO:
        return open(self._path_of(key), "rb")

    def delete(self, key: str) -> None:
        self._path_of(key).unlink(missing_ok=True)

    def keys_older_than(self, cutoff: datetime) -> Iterator[str]:
        for path in self.files_dir.glob("*/*") if self.files_dir.exists() else ():
            if _KEY.fullmatch(path.name) and _written_before(path, cutoff):
                yield path.name

    def _path_of(self, key: str) -> Path:
        return self.files_dir / key[:2] / _checked(key)


class S3Storage(HostTempFiles):
    """Files as objects `<prefix><key>` of an S3-compatible store; temporary files on this host.

    A store that cannot be reached, or refuses us, is StorageUnavailable (503) at once: `save` then
    leaves no object behind (a multipart upload that fails is aborted), and the callers commit a
    record only after its file is saved, so no record names an object that is not there."""

    def __init__(self, store: "S3ObjectStore", *, temp_dir: Path) -> None:
        super().__init__(temp_dir)
        self.store = store

    def save(self, temp_path: Path) -> str:
        key = uuid.uuid4().hex
        self.save_as(temp_path, key)
        return key

    def save_as(self, temp_path: Path, key: str) -> None:
        with _unavailable_as_503():
            self.store.put_file(temp_path, _checked(key))

    def open(self, key: str) -> BinaryIO:
        with _unavailable_as_503():
            return self.store.open(_checked(key))

    def delete(self, key: str) -> None:
        with _unavailable_as_503():
            self.store.delete(_checked(key))

    def keys_older_than(self, cutoff: datetime) -> Iterator[str]:
        """Only names that are keys: anything else in the bucket under the prefix is not ours."""
        with _unavailable_as_503():
            for name in self.store.names_older_than(cutoff):
                if _KEY.fullmatch(name):
                    yield name


@contextlib.contextmanager
def _unavailable_as_503() -> Iterator[None]:
    # Imported here, as in storage_for: a process on local files never loads the S3 client.
    from src.third_party.object_store import ObjectStoreUnavailable

    try:
        yield
    except ObjectStoreUnavailable as error:
        raise StorageUnavailable from error


def _checked(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError("not a storage key")
    return key


def _written_before(path: Path, cutoff: datetime) -> bool:
    try:
        return path.stat().st_mtime < cutoff.timestamp()
    except FileNotFoundError:  # removed meanwhile (an upload that just finished)
        return False


def _fsync_directory(directory: Path) -> None:
    """The rename itself is durable only once its directory is synced (POSIX; Windows cannot open one)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def get_storage() -> Storage:
    """The store STORAGE_URL names (unset: the directory UPLOAD_DIR). One per process and setting."""
    secret = settings.AWS_SECRET_ACCESS_KEY
    return storage_for(
        settings.STORAGE_URL,
        upload_dir=settings.UPLOAD_DIR,
        endpoint_url=settings.S3_ENDPOINT_URL,
        access_key_id=settings.AWS_ACCESS_KEY_ID,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        region=settings.AWS_DEFAULT_REGION,
    )


@functools.cache
def storage_for(
    url: str | None,
    *,
    upload_dir: Path,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
) -> Storage:
    """Cached: an S3 client costs tens of milliseconds to build and is safe to share between threads."""
    if url is None:
        return LocalStorage(upload_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(url2pathname(parts.path)))
    from src.third_party.object_store import S3Credentials, S3Location, S3ObjectStore

    with _unavailable_as_503():
        store = S3ObjectStore(
            S3Location.from_url(url),
            endpoint_url=endpoint_url,
            credentials=S3Credentials(access_key_id, secret_access_key, region),
        )
    return S3Storage(store, temp_dir=Path(upload_dir) / "tmp")
