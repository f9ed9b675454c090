"""Error codes, roles and limits of the auth module."""

from enum import StrEnum


class ErrorCode(StrEnum):
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    SESSION_REVOKED = "SESSION_REVOKED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    LOGIN_LOCKED = "LOGIN_LOCKED"
    LOGIN_SLOWED = "LOGIN_SLOWED"
    PASSWORD_CHANGE_LOCKED = "PASSWORD_CHANGE_LOCKED"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    REGISTRATION_CLOSED = "REGISTRATION_CLOSED"
    ADMIN_REQUIRED = "ADMIN_REQUIRED"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    LAST_ADMIN = "LAST_ADMIN"
    WRONG_PASSWORD = "WRONG_PASSWORD"
    RESET_TOKEN_INVALID = "RESET_TOKEN_INVALID"
    PASSWORD_RESET_LIMITED = "PASSWORD_RESET_LIMITED"
    EMAIL_NOT_VERIFIED = "EMAIL_NOT_VERIFIED"
    EMAIL_ALREADY_VERIFIED = "EMAIL_ALREADY_VERIFIED"
    VERIFICATION_TOKEN_INVALID = "VERIFICATION_TOKEN_INVALID"
    PASSWORD_REQUIRED = "PASSWORD_REQUIRED"
    VERIFICATION_MAIL_LIMITED = "VERIFICATION_MAIL_LIMITED"
    REGISTRATION_LIMITED = "REGISTRATION_LIMITED"


class Role(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    VIEWER = "viewer"


class LinkTokenPurpose(StrEnum):
    """What a mailed one-time token lets its holder do; a token works only for its purpose."""

    PASSWORD_RESET = "password_reset"
    EMAIL_VERIFICATION = "email_verification"


class UserSort(StrEnum):
    CREATED_AT = "created_at"
    NEWEST_FIRST = "-created_at"
    EMAIL = "email"
    EMAIL_DESC = "-email"
    FULL_NAME = "full_name"
    FULL_NAME_DESC = "-full_name"


TOKEN_TYPE_ACCESS = "access"
JWT_ALGORITHM = "HS256"
REQUIRED_ACCESS_CLAIMS = ("sub", "sid", "jti", "type", "iat", "exp")

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024
EMAIL_MAX_LENGTH = 320
FULL_NAME_MAX_LENGTH = 200
USER_AGENT_MAX_LENGTH = 512
IP_ADDRESS_MAX_LENGTH = 45  # the longest textual IPv6 address
# The OAuth2 form fields we accept but do not use (scope, client_id, client_secret).
OAUTH_FIELD_MAX_LENGTH = 255
REFRESH_TOKEN_BYTES = 32
# Tokens mailed in links (password reset): 32 random bytes, URL-safe (43 characters); only their
# SHA-256 is stored. A token sent back longer than the limit is refused unread.
LINK_TOKEN_BYTES = 32
LINK_TOKEN_MAX_LENGTH = 128
LINK_TOKEN_PURPOSE_MAX_LENGTH = 30
# The page's sign-in form (nginx/html, src/page.py).
SIGN_IN_PAGE = "/"
# The page that reads a reset token from its fragment (nginx/html, src/page.py).
RESET_PASSWORD_PAGE = "/reset-password"
# The page that reads a verification token from its fragment.
VERIFY_EMAIL_PAGE = "/verify-email"
VERIFICATION_MAIL_REQUESTED = "A new verification link is on its way to your address."
# The one answer to every self-registration, whether the address was new or already had an account:
# its mailbox gets the link that creates (or verifies) the account, or its owner a note that someone
# tried. Where addresses must be verified a new account exists only once its link is followed.
REGISTRATION_REQUESTED = (
    "Check your mail and follow the link in it, then sign in. (If the address already has an account, "
    "the message says how to sign in to it.)"
)
# What the page says once a mailed verification link worked (nginx/html/assets/invitations.js).
# The page's words once a registration's link, followed with a password, has made the account.
ACCOUNT_CREATED_NOTICE = (
    "Your account is created and its address verified. Sign in with the password you just chose."
)
EMAIL_VERIFIED_NOTICE = (
    "Your email address is verified. Thank you! If you just created your account, sign in with the "
    "password you chose."
)
# The one answer to every reset request, whether or not the address has an account.
PASSWORD_RESET_REQUESTED = (
    "If an account has this email address, a link to choose a new password is on its way to it."
)

# Login throttles count attempts per email hash and scope: the account (all addresses together),
# one client address ("address:" + its hash) or one session ("session:" + its id).
LOGIN_THROTTLE_ACCOUNT_SCOPE = "account"
# ... and password-reset requests per email (known or not), in the same table.
PASSWORD_RESET_THROTTLE_SCOPE = "password-reset"
# ... and verification mails asked for again per account.
VERIFICATION_THROTTLE_SCOPE = "verify-email"
# ... and self-registrations per email (new or taken alike).
REGISTRATION_THROTTLE_SCOPE = "register"
LOGIN_THROTTLE_SCOPE_MAX_LENGTH = 72

# `python main.py prune`: rows deleted per transaction (short locks), and at most this many per
# table in one run, so a scheduled run takes bounded time even after a long pause; the next run
# continues where this one stopped.
PRUNE_BATCH_ROWS = 1000
PRUNE_MAX_ROWS_PER_TABLE = 100_000
