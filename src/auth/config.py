"""Settings of the auth module (environment and `.env`, listed in `.env.sample`)."""

from pydantic import Field, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.constants import Environment
from src.workers import cores_per_worker


class AuthSettings(BaseSettings):
    """Sign-in: tokens, registration, lockouts, password reset and email verification."""

    # use_attribute_docstrings: each setting's docstring is its description in the docs site.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", use_attribute_docstrings=True
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    """The same variable as the general settings' ENVIRONMENT: here it decides REQUIRE_EMAIL_VERIFICATION's
    default."""

    ACCESS_TOKEN_EXPIRE_MINUTES: PositiveInt = 15
    """Access tokens (JWT) live this many minutes. Zero would mean tokens dead on arrival: refused at
    start."""
    REFRESH_TOKEN_EXPIRE_DAYS: PositiveInt = 14
    """Refresh tokens (sliding: each use gives a new one) live this many days."""
    OPEN_REGISTRATION: bool = True
    """Whether anyone may create an account with POST /api/v1/auth/register (an invited address may
    always register with its invitation's token). It needs mail (SMTP_URL outside development and test):
    the answer, the same for a new address and a taken one, sends the caller to the mailbox."""
    LOGIN_MAX_FAILURES: PositiveInt = 5
    """Per (account, client address): after this many failed sign-ins for one email from one address,
    that address (only) is locked out of that account (429 LOGIN_LOCKED with Retry-After) for
    LOGIN_LOCKOUT_MINUTES. The same bound applies to wrong current passwords at POST
    /auth/me/password, per session. Zero would mean a lockout on the first typo: refused at start."""
    LOGIN_LOCKOUT_MINUTES: PositiveInt = 15
    """How long a lockout lasts; also the window PASSWORD_RESET_MAX_REQUESTS,
    EMAIL_VERIFICATION_MAX_REQUESTS and REGISTRATION_MAX_REQUESTS count in."""
    LOGIN_ACCOUNT_MAX_FAILURES: PositiveInt = 50
    """Per account, all addresses together: past this many failed sign-ins (within LOGIN_LOCKOUT_MINUTES
    of each other), addresses that have not signed in to that account during the last
    REFRESH_TOKEN_EXPIRE_DAYS are slowed down (LOGIN_SLOWDOWN_SECONDS); the owner's known addresses are
    not."""
    LOGIN_SLOWDOWN_SECONDS: PositiveInt = 10
    """While an account is slowed down, new addresses share one attempt per this many seconds (429
    LOGIN_SLOWED in between)."""
    PASSWORD_RESET_TOKEN_MINUTES: PositiveInt = 30
    """A mailed password-reset link (POST /api/v1/auth/password-reset) works this long, once, and only
    while it is the newest."""
    PASSWORD_RESET_MAX_REQUESTS: PositiveInt = 3
    """Reset mails one email address (known or not) may ask for within LOGIN_LOCKOUT_MINUTES of the last
    one; past that 429 PASSWORD_RESET_LIMITED, whoever asks."""
    REQUIRE_EMAIL_VERIFICATION: bool | None = None
    """Whether an account must verify its address (the mailed link) before it creates studies or accepts
    invitations; until then it signs in and reads (403 EMAIL_NOT_VERIFIED). Where it is true,
    self-registration makes no account until the mailed link is followed (signing in fails as with a
    wrong password until then), so registering then signing in cannot tell who is registered; false
    makes the account at once, which cannot hide that. Unset: true in staging and production, false in
    development and test (docker-compose.yml: true)."""
    EMAIL_VERIFICATION_TOKEN_HOURS: PositiveInt = 48
    """A mailed verification link works this long, once, and only while it is the newest."""
    EMAIL_VERIFICATION_MAX_REQUESTS: PositiveInt = 3
    """Verification mails an account may ask for again (POST /api/v1/auth/verify-email/resend) within
    LOGIN_LOCKOUT_MINUTES of the last one; past that 429 VERIFICATION_MAIL_LIMITED."""
    REGISTRATION_MAX_REQUESTS: PositiveInt = 3
    """Self-registrations one email address (new or already taken, alike) may make within
    LOGIN_LOCKOUT_MINUTES of the last one; past that 429 REGISTRATION_LIMITED, whoever asks. Each mails
    the address (a verification link, or "someone tried to create an account")."""
    PASSWORD_HASH_CONCURRENCY: PositiveInt = Field(default_factory=cores_per_worker)
    """Password hashes (argon2id, 19 MiB each) one worker process computes at once. The default shares
    the usable cores among the workers (cores / WEB_CONCURRENCY, at least 1), so that all workers
    together use each core once."""

    @property
    def requires_email_verification(self) -> bool:
        if self.REQUIRE_EMAIL_VERIFICATION is not None:
            return self.REQUIRE_EMAIL_VERIFICATION
        return self.ENVIRONMENT in (Environment.STAGING, Environment.PRODUCTION)


auth_settings = AuthSettings()
