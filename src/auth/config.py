"""Settings of the auth module (environment and `.env`, listed in `.env.sample`)."""

from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.constants import Environment
from src.workers import cores_per_worker


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    ENVIRONMENT: Environment = Environment.DEVELOPMENT

    # Zero would mean tokens dead on arrival or a lockout on the first typo: refused at start.
    ACCESS_TOKEN_EXPIRE_MINUTES: PositiveInt = 15
    REFRESH_TOKEN_EXPIRE_DAYS: PositiveInt = 14
    OPEN_REGISTRATION: bool = True
    # Per (account, client address): this many failures lock that address out of that account.
    LOGIN_MAX_FAILURES: PositiveInt = 5
    LOGIN_LOCKOUT_MINUTES: PositiveInt = 15
    # Per account, all addresses together: past this many failures, new addresses are slowed down.
    LOGIN_ACCOUNT_MAX_FAILURES: PositiveInt = 50
    LOGIN_SLOWDOWN_SECONDS: PositiveInt = 10
    # A mailed password-reset link works this long, once, and only while it is the newest.
    PASSWORD_RESET_TOKEN_MINUTES: PositiveInt = 30
    # Reset mails one email address (known or not) may ask for within LOGIN_LOCKOUT_MINUTES of
    # the last one; past that 429 PASSWORD_RESET_LIMITED, whoever asks.
    PASSWORD_RESET_MAX_REQUESTS: PositiveInt = 3
    # Whether an account must verify its address (the mailed link) before it creates studies or
    # accepts invitations. Unset: true in staging and production, false in development and test.
    REQUIRE_EMAIL_VERIFICATION: bool | None = None
    # A mailed verification link works this long, once, and only while it is the newest.
    EMAIL_VERIFICATION_TOKEN_HOURS: PositiveInt = 48
    # Verification mails an account may ask for again within LOGIN_LOCKOUT_MINUTES of the last one;
    # past that 429 VERIFICATION_MAIL_LIMITED.
    EMAIL_VERIFICATION_MAX_REQUESTS: PositiveInt = 3
    # Self-registrations one email address (new or already taken, alike) may make within
    # LOGIN_LOCKOUT_MINUTES of the last one; past that 429 REGISTRATION_LIMITED, whoever asks. Each
    # mails the address (a verification link, or "someone tried to create an account").
    REGISTRATION_MAX_REQUESTS: PositiveInt = 3
    # argon2 hashes one worker process runs at once; the default shares the cores among the workers.
    PASSWORD_HASH_CONCURRENCY: PositiveInt = Field(default_factory=cores_per_worker)

    @property
    def requires_email_verification(self) -> bool:
        if self.REQUIRE_EMAIL_VERIFICATION is not None:
            return self.REQUIRE_EMAIL_VERIFICATION
        return self.ENVIRONMENT in (Environment.STAGING, Environment.PRODUCTION)


auth_settings = AuthSettings()
