"""Global settings, read from the environment and `.env` (see `.env.sample`)."""

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import PositiveFloat, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from src.constants import Environment

# The value shipped in `.env.sample`; good enough on a laptop, refused anywhere else.
SAMPLE_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"  # noqa: S105 (public on purpose)
MIN_SECRET_KEY_BYTES = 32


class Settings(BaseSettings):
    """General: the database, timeouts, secrets, the file store, logs and the job queue."""

    # hide_input_in_errors: a refused setting must not print the secrets (SECRET_KEY, DATABASE_URL) it saw.
    # use_attribute_docstrings: each setting's docstring is its description, which the docs site's
    # configuration reference shows (tests/test_docs_reference.py fails for a setting without one).
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    """Where this server runs. Outside `development` and `test` the app refuses to start with the sample
    SECRET_KEY or with a key shorter than 32 bytes; the other modules' defaults follow it too (mail
    written to the log, email verification)."""
    DATABASE_URL: str = "sqlite+aiosqlite:///./data/studybase.db"
    """Where the data lives. The default is an SQLite file created on first start; PostgreSQL is
    `postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME`."""
    DATABASE_CONNECT_TIMEOUT_SECONDS: PositiveInt = 2
    """PostgreSQL only: how long a request waits for a new connection before it answers 503
    DATABASE_UNAVAILABLE, so that a database that is down or swamped is reported within seconds instead
    of holding the request (libpq counts less than 2 s as 2)."""
    DATABASE_POOL_TIMEOUT_SECONDS: PositiveFloat = 2.0
    """PostgreSQL only: how long a request waits for a free connection from the pool before it answers
    503 DATABASE_UNAVAILABLE (a swamped database is reported within seconds, not by a hung request)."""
    DATABASE_POOL_SIZE: PositiveInt = 10
    """PostgreSQL connections one worker process keeps open, never more (no overflow): requests past it
    wait for one. Workers (WEB_CONCURRENCY) x this must stay below the server's max_connections."""
    DATABASE_LOCK_TIMEOUT_SECONDS: PositiveFloat = 2.0
    """No request waits on a lock without bound: a transaction that waits longer than this for a row or
    advisory lock is stopped, and the request answers 409 with Retry-After (STUDY_BUSY while an import
    holds the study). It is PostgreSQL's lock_timeout; SQLite's busy wait (its writers take turns for
    the whole database) is this or 5 s, whichever is longer, then 503 DATABASE_UNAVAILABLE."""
    DATABASE_STATEMENT_TIMEOUT_SECONDS: PositiveFloat = 30.0
    """PostgreSQL's statement_timeout for every statement a request runs: a query stuck for longer is
    cancelled by the server and the request answers 503. The migrations run without it."""
    REQUEST_TIMEOUT_SECONDS: PositiveFloat = 30.0
    """Every request's deadline (uploads have their own bounds): past it, before its answer has begun,
    it answers 503 REQUEST_TIMED_OUT at once and its work is cancelled; a write commits only before it.
    Keep it shorter than nginx's proxy_read_timeout (60 s), so that the client gets this answer and not
    the proxy's."""
    SECRET_KEY: SecretStr = SecretStr(SAMPLE_SECRET_KEY)
    """Signs the access tokens (HS256). At least 32 random bytes outside development and test; generate
    one with `python -c "import secrets; print(secrets.token_urlsafe(48))"`."""
    HOST: str = "127.0.0.1"
    """The address `python main.py` listens on (under gunicorn, GUNICORN_BIND decides)."""
    PORT: int = 8000
    """The port `python main.py` listens on."""
    UPLOAD_DIR: Path = Path("./data/uploads")
    """Where uploaded sample files are stored on this host's disk; with STORAGE_URL=s3://..., only this
    host's temporary files of uploads in progress."""
    STORAGE_URL: str | None = None
    """Where uploaded files are kept. Unset: the local directory UPLOAD_DIR; `file:///absolute/path`:
    that directory instead (the same layout); `s3://bucket/prefix`: objects of an S3-compatible store
    (AWS S3, MinIO, Ceph, R2, ...; S3_ENDPOINT_URL for one that is not AWS), which is what several API
    hosts must share, since each host's disk is its own. A store that does not answer makes the file
    routes answer 503 STORAGE_UNAVAILABLE."""
    S3_ENDPOINT_URL: str | None = None
    """The S3 store's address when it is not AWS S3, as `http(s)://HOST[:PORT]` (compose's `s3`
    profile: `http://minio:9000`)."""
    AWS_ACCESS_KEY_ID: str | None = None
    """The S3 store's access key. Unset: the AWS default chain (this variable from the environment,
    ~/.aws, an instance or task role)."""
    AWS_SECRET_ACCESS_KEY: SecretStr | None = None
    """The S3 store's secret key. Unset: the AWS default chain, as for AWS_ACCESS_KEY_ID."""
    AWS_DEFAULT_REGION: str | None = None
    """The S3 store's region. Unset: the AWS default chain, as for AWS_ACCESS_KEY_ID."""
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    """Browser origins allowed to call the API, comma-separated (`https://dashboard.example.org`).
    Empty: no cross-origin access. `*` allows any origin, but then never with credentials."""
    LOG_LEVEL: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL. Logs are JSON lines on stderr."""
    PRUNE_CRON: str = "17 * * * *"
    """When the job queue's worker (`python main.py worker`, on PostgreSQL) prunes what only grows, as
    `python main.py prune` does (src/pruning.py): a cron expression in UTC, five fields, or six with
    seconds last."""
    WORKER_STALLED_SECONDS: PositiveFloat = 30.0
    """A job queue worker silent (no heartbeat) this long is taken for dead: the jobs it was running are
    run again by the others (src/job_queue.py recover_stalled_jobs). It beats every third of it."""

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator(
        "STORAGE_URL",
        "S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        mode="before",
    )
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        """Compose passes an unset variable as empty (`${STORAGE_URL:-}`): the same as not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("STORAGE_URL")
    @classmethod
    def known_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "s3" and parts.netloc:
            return value
        if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.strip("/"):
            return value
        raise ValueError("STORAGE_URL must be file:///absolute/path or s3://bucket[/prefix]")

    @field_validator("S3_ENDPOINT_URL")
    @classmethod
    def endpoint_is_a_web_address(cls, value: str | None) -> str | None:
        if value is not None and not (urlsplit(value).scheme in ("http", "https") and urlsplit(value).netloc):
            raise ValueError("S3_ENDPOINT_URL must be http://HOST[:PORT] or https://HOST[:PORT]")
        return value

    @field_validator("LOG_LEVEL")
    @classmethod
    def known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("PRUNE_CRON")
    @classmethod
    def valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError("PRUNE_CRON must be a cron expression such as '17 * * * *'")
        return value

    @model_validator(mode="after")
    def strong_secret_outside_development(self) -> "Settings":
        if self.ENVIRONMENT.allows_sample_secret:
            return self
        secret = self.SECRET_KEY.get_secret_value()
        if secret == SAMPLE_SECRET_KEY:
            raise ValueError(f"SECRET_KEY is the sample value; set a random one in {self.ENVIRONMENT}")
        if len(secret.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes")
        return self


settings = Settings()
