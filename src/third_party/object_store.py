"""An S3-compatible object store (AWS S3, MinIO, Ceph RGW, Cloudflare R2, ...): files put, read,
deleted and listed by name under one bucket and prefix.

Only this file imports the S3 client (boto3). The sample-file storage (src/sampleFileUpload/storage.py)
decides what is stored under which name; this decides how. Every failure to reach the store, or a
store that refuses us (unknown bucket, wrong credentials), is `ObjectStoreUnavailable`; an object that
is not there is FileNotFoundError, as for a local file.

boto3 because it is the official, maintained SDK that every S3-compatible server is tested against,
and its client is synchronous, which fits the sync Storage interface: the app already calls every
storage method in a worker thread (anyio.to_thread.run_sync, or Starlette's thread pool for a
streamed body), so no call blocks the event loop. Its client is thread-safe: one per process.
"""

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("studybase.storage")

# Seconds to open a connection, and to wait for each read of an answer, before the attempt fails.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
# Attempts of one request in all (botocore's "standard" retries, with backoff): a store that is away
# answers 503 within seconds instead of holding the request.
MAX_ATTEMPTS = 3
# Files above the threshold go up in parts of this size, a few at a time: a 100 MB upload holds at
# most about MULTIPART_CONCURRENCY parts in memory, never the file. S3 wants parts of 5 MB or more.
MULTIPART_BYTES = 8 * 1024 * 1024
MULTIPART_CONCURRENCY = 4
# Threads of one process that may talk to the store at once (uploads' parts, downloads, deletes).
MAX_POOL_CONNECTIONS = 32
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class ObjectStoreUnavailable(Exception):
    """The store could not be reached, or refused the request (bucket, credentials, its own error)."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where objects go, from STORAGE_URL `s3://bucket/prefix` (the prefix may be empty)."""

    bucket: str
    prefix: str

    @classmethod
    def from_url(cls, url: str) -> "S3Location":
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("an S3 STORAGE_URL is s3://BUCKET or s3://BUCKET/PREFIX")
        prefix = parts.path.strip("/")
        return cls(bucket=parts.netloc, prefix=f"{prefix}/" if prefix else "")


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Explicit credentials (from the settings); None each: the AWS default chain decides (its
    environment variables, ~/.aws, an instance or task role)."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None


class S3ObjectStore:
    def __init__(
        self,
        location: S3Location,
        *,
        endpoint_url: str | None = None,
        credentials: S3Credentials = S3Credentials(),
        max_attempts: int | None = None,
    ) -> None:
        self.location = location
        try:
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url or None,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                region_name=credentials.region,
                config=_client_config(endpoint_url, max_attempts or MAX_ATTEMPTS),
            )
        except ValueError as error:  # an endpoint it cannot use, such as from AWS_DEFAULT_REGION=""
            logger.warning("object_store_misconfigured", extra={"detail": str(error)[:300]})
            raise ObjectStoreUnavailable(f"configure: {error}") from error
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_BYTES,
            multipart_chunksize=MULTIPART_BYTES,
            max_concurrency=MULTIPART_CONCURRENCY,
        )

    def put_file(self, path: Path, name: str) -> None:
        """Streams the file up (in parts when large); the object exists whole or not at all."""
        with _unavailable_on_failure("put"):
            self._client.upload_file(
                str(path),
                self.location.bucket,
                self._object_key(name),
                ExtraArgs={"ContentType": "application/octet-stream"},
                Config=self._transfer,
            )

    def open(self, name: str) -> BinaryIO:
        """The object for reading, streamed as it is read (lines too); FileNotFoundError when absent."""
        with _unavailable_on_failure("get"):
            try:
                answer = self._client.get_object(Bucket=self.location.bucket, Key=self._object_key(name))
            except ClientError as error:
                if _error_code(error) in _NOT_FOUND:
                    raise FileNotFoundError(name) from None
                raise
        return io.BufferedReader(_ObjectBody(answer["Body"]), buffer_size=256 * 1024)

    def delete(self, name: str) -> None:
        """Removes the object; nothing happens when there is none."""
        with _unavailable_on_failure("delete"):
            self._client.delete_object(Bucket=self.location.bucket, Key=self._object_key(name))

    def names_older_than(self, cutoff: datetime) -> Iterator[str]:
        """The names (without the prefix) of objects last written before `cutoff`, page by page."""
        prefix = self.location.prefix
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix
        )
        with _unavailable_on_failure("list"):
            for page in pages:
                for entry in page.get("Contents", ()):
                    if entry["LastModified"] < cutoff:
                        yield entry["Key"][len(prefix) :]

    def _object_key(self, name: str) -> str:
        return f"{self.location.prefix}{name}"


def _client_config(endpoint_url: str | None, max_attempts: int) -> Config:
    options: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "retries": {"max_attempts": max_attempts, "mode": "standard"},
        "max_pool_connections": MAX_POOL_CONNECTIONS,
    }
    if endpoint_url:
        # Other S3 servers: `bucket.host` names rarely resolve (a compose service, an IP), so the
        # bucket goes in the path; and checksums only where S3 requires them, since servers that
        # predate the SDK's default ones (2025) refuse uploads that carry them.
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    return Config(**options)


class _ObjectBody(io.RawIOBase):
    """An object's streamed body as a raw file, so that io.BufferedReader gives `read(n)` and lines."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with _unavailable_on_failure("read"):
            data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _unavailable_on_failure(operation: str) -> Iterator[None]:
    """Turns the client's failures into ObjectStoreUnavailable, logged with what was tried."""
    try:
        yield
    except (BotoCoreError, ClientError, S3UploadFailedError) as error:
        logger.warning(
            "object_store_unavailable",
            extra={"operation": operation, "error": type(error).__name__, "detail": str(error)[:300]},
        )
        raise ObjectStoreUnavailable(f"{operation}: {type(error).__name__}") from error
