"""Settings of the sample-file module, read from the environment and `.env`."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.config import settings


class UploadSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The same limit as nginx's client_max_body_size for the upload route; the app enforces it too.
    MAX_UPLOAD_MB: int = Field(default=100, ge=1, le=10_000)
    MAX_UPLOAD_ROWS: int = Field(default=2_000_000, ge=1)
    # Imports (and dry runs) one worker runs at once; each holds a pooled connection for its whole
    # transaction, so by default they may take at most half the pool and reads always find one.
    IMPORTS_PER_WORKER: int | None = Field(default=None, ge=1)

    @property
    def max_upload_bytes(self) -> int:
        return self.MAX_UPLOAD_MB * 1024 * 1024

    @property
    def imports_per_worker(self) -> int:
        return self.IMPORTS_PER_WORKER or max(1, settings.DATABASE_POOL_SIZE // 2)


upload_settings = UploadSettings()
