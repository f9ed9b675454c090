"""Where sample files live: a small interface, and its local-directory implementation.

Keys are generated here, never taken from a client: a key is 32 hex digits, so it cannot name a
path. An object-store implementation would implement the same methods.
"""

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from src.config import settings

_KEY = re.compile(r"^[0-9a-f]{32}$")


class Storage(Protocol):
    def temp_file(self) -> contextlib.AbstractContextManager[Path]:
        """A new empty file to write to; removed on leaving the block unless it was saved."""

    def save(self, temp_path: Path) -> str:
        """Stores the (complete) temporary file under a new key and returns the key."""

    def open(self, key: str) -> BinaryIO:
        """The stored file for reading; FileNotFoundError when there is none."""

    def delete(self, key: str) -> None:
        """Removes the stored file; nothing happens when there is none."""

    def remove_temp_files_older_than(self, cutoff: datetime, *, limit: int) -> int:
        """Removes at most `limit` temporary files last written before `cutoff`; returns how many."""

    def keys_older_than(self, cutoff: datetime) -> Iterator[str]:
        """The keys of stored files last written before `cutoff`."""


class LocalStorage:
    """Files under `root/files/<2 hex>/<key>`, temporary files under `root/tmp` on the same disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.temp_dir = self.root / "tmp"
        self.files_dir = self.root / "files"

    @contextlib.contextmanager
    def temp_file(self) -> Iterator[Path]:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        path = self.temp_dir / f"{uuid.uuid4().hex}.part"
        path.touch(mode=0o600, exist_ok=False)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def save(self, temp_path: Path) -> str:
        """fsync, then rename into place: a stored file is complete or absent, never half-written."""
        key = uuid.uuid4().hex
        target = self._path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp_path, target)
        _fsync_directory(target.parent)
        return key

    def open(self, key: str) -> BinaryIO:
        return open(self._path_of(key), "rb")

    def delete(self, key: str) -> None:
        self._path_of(key).unlink(missing_ok=True)

    def remove_temp_files_older_than(self, cutoff: datetime, *, limit: int) -> int:
        removed = 0
        for path in self.temp_dir.glob("*.part") if self.temp_dir.exists() else ():
            if removed >= limit:
                break
            if _written_before(path, cutoff):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def keys_older_than(self, cutoff: datetime) -> Iterator[str]:
        for path in self.files_dir.glob("*/*") if self.files_dir.exists() else ():
            if _KEY.fullmatch(path.name) and _written_before(path, cutoff):
                yield path.name

    def _path_of(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("not a storage key")
        return self.files_dir / key[:2] / key


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
    return LocalStorage(settings.UPLOAD_DIR)
