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
    """Outgoing mail: the SMTP server, the sender, the links, and the outbox's retries."""

    # hide_input_in_errors: a refused SMTP_URL must not print the password it holds.
    # use_attribute_docstrings: each setting's docstring is its description in the docs site.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    """The same variable as the general settings' ENVIRONMENT: here it decides what happens to mail
    while SMTP_URL is unset, and whether PUBLIC_URL must be set."""
    SMTP_URL: SecretStr | None = None
    """`smtp://USER:PASSWORD@HOST:587` (STARTTLS whenever the server offers it) or
    `smtps://USER:PASSWORD@HOST:465` (TLS from the first byte); %-encode special characters in USER and
    PASSWORD. Unset: in development and test every mail is written to the log in full (links included);
    in staging and production no mail is sent, and the routes that need one (password reset,
    self-registration, invitations) answer 503 MAIL_NOT_CONFIGURED. Compose's `dev` profile:
    `smtp://mailpit:1025`."""
    MAIL_FROM: str = "Studybase <studybase@localhost>"
    """The sender of every mail, as in `Studybase <studybase@example.org>`."""
    PUBLIC_URL: str = DEFAULT_PUBLIC_URL
    """The base of every link a mail carries (the page's address as users reach it); required outside
    development and test once SMTP_URL is set, so that mail leaving the machine never links to the
    loopback address."""
    SMTP_TIMEOUT_SECONDS: PositiveFloat = 10.0
    """One SMTP attempt (connect, TLS, hand-over) gives up after this long and is retried later."""
    MAIL_BATCH_SIZE: PositiveInt = 20
    """The sender takes at most this many mails a round, then looks again after MAIL_POLL_SECONDS (at
    once when this process has just queued one)."""
    MAIL_POLL_SECONDS: PositiveFloat = 5.0
    """How often a sender looks for mail other processes queued."""
    MAIL_RETRY_BASE_SECONDS: PositiveFloat = 5.0
    """A mail the server did not take is tried again after this long, doubling each time up to
    MAIL_RETRY_MAX_SECONDS; the defaults ride out about six hours of an SMTP server being away."""
    MAIL_RETRY_MAX_SECONDS: PositiveFloat = 900.0
    """The longest wait between two attempts at one mail."""
    MAIL_MAX_ATTEMPTS: PositiveInt = 30
    """After this many attempts a mail is marked failed (logged as an ERROR)."""
    MAIL_KEEP_DAYS: PositiveInt = 7
    """Finished outbox rows (sent, failed, dropped) are kept this many days, then pruned (`python main.py
    prune`, or the worker's PRUNE_CRON)."""
    MAIL_SENDER: MailDelivery = MailDelivery.PROCESS
    """Who sends what the outbox holds: `process`, a sender in each API process (the embedded default,
    what SQLite allows, and one host); `queue`, the job queue's workers (`python main.py worker`,
    PostgreSQL only; compose's default): the API processes send nothing themselves, they queue a
    `mail:deliver` job after each commit that queued mail, and the workers also look every minute for
    mail due again after a failure."""

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
