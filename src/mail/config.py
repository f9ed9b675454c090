"""Settings of outgoing mail (environment and `.env`, listed in `.env.sample`)."""

from email.utils import parseaddr
from urllib.parse import urlsplit

from pydantic import PositiveFloat, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.constants import Environment
from src.mail.constants import MailDelivery
from src.third_party.mail import SmtpServer

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class MailSettings(BaseSettings):
    # hide_input_in_errors: a refused SMTP_URL must not print the password it holds.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    # smtp://user:password@host:587 (STARTTLS whenever offered) or smtps://...:465 (implicit TLS).
    # Unset: in development and test every mail is written to the log in full; in staging and
    # production no mail is sent and the routes that need one answer 503 MAIL_NOT_CONFIGURED.
    SMTP_URL: SecretStr | None = None
    MAIL_FROM: str = "Studybase <studybase@localhost>"
    # The base of every link a mail carries (the page's address as users reach it).
    PUBLIC_URL: str = DEFAULT_PUBLIC_URL
    # One SMTP attempt (connect, TLS, hand-over) gives up after this long and is retried later.
    SMTP_TIMEOUT_SECONDS: PositiveFloat = 10.0
    # The sender takes at most this many mails a round, then looks again after MAIL_POLL_SECONDS
    # (at once when this process has just queued one).
    MAIL_BATCH_SIZE: PositiveInt = 20
    MAIL_POLL_SECONDS: PositiveFloat = 5.0
    # A mail the server did not take is tried again after MAIL_RETRY_BASE_SECONDS, doubling each
    # time up to MAIL_RETRY_MAX_SECONDS; after MAIL_MAX_ATTEMPTS it is marked failed (logged as
    # an ERROR). The defaults ride out about six hours of an SMTP server being away.
    MAIL_RETRY_BASE_SECONDS: PositiveFloat = 5.0
    MAIL_RETRY_MAX_SECONDS: PositiveFloat = 900.0
    MAIL_MAX_ATTEMPTS: PositiveInt = 30
    # Finished outbox rows (sent, failed, dropped) are kept this many days, then pruned.
    MAIL_KEEP_DAYS: PositiveInt = 7
    # Who sends what the outbox holds: `process`, a sender in each API process (the embedded default,
    # and one host); `queue`, the job queue's workers (`python main.py worker`, PostgreSQL only): the
    # API processes send nothing themselves, they queue a `mail:deliver` job after each commit that
    # queued mail, and the workers also look every minute for mail due again after a failure.
    MAIL_SENDER: MailDelivery = MailDelivery.PROCESS

    @field_validator("SMTP_URL")
    @classmethod
    def readable_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        SmtpServer.from_url(value.get_secret_value())
        return value

    @field_validator("MAIL_FROM")
    @classmethod
    def one_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError("MAIL_FROM must be an address, as in `Studybase <studybase@example.org>`")
        return value

    @field_validator("PUBLIC_URL")
    @classmethod
    def base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("PUBLIC_URL must be an http(s) address without query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def links_point_somewhere_real(self) -> "MailSettings":
        # Mail that leaves the machine must not link to the default loopback address.
        if (
            self.SMTP_URL is not None
            and not self.ENVIRONMENT.logs_mail
            and self.PUBLIC_URL == DEFAULT_PUBLIC_URL
        ):
            raise ValueError(f"PUBLIC_URL must be set in {self.ENVIRONMENT} when SMTP_URL is")
        return self

    @property
    def smtp_url(self) -> str | None:
        return self.SMTP_URL.get_secret_value() if self.SMTP_URL else None

    @property
    def sends_mail(self) -> bool:
        """Whether mail goes anywhere: to the SMTP server, or to the log where that is allowed."""
        return self.SMTP_URL is not None or self.ENVIRONMENT.logs_mail


mail_settings = MailSettings()
