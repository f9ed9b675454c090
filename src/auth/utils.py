"""Pure helpers of the auth module: email normalization, password hashing, token values."""

import contextlib
import hashlib
import secrets
import uuid

from email_validator import EmailNotValidError, validate_email
from passlib.context import CryptContext

# argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane); hashes made with other
# parameters verify and are flagged for an upgrade.
password_context = CryptContext(
    schemes=["argon2"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
)
# A real hash of a random password: verifying against it costs what verifying a real user does.
DUMMY_PASSWORD_HASH = password_context.hash(secrets.token_urlsafe(16))


def normalize_email(email: str) -> str:
    """The one form an email is stored, looked up and throttled under, whoever typed it how.

    Unicode and domain normalization (email-validator's), then lower case; text that is not an
    email at all (a sign-in typo) is only trimmed and lowered, and simply matches no one.
    """
    text = email.strip()
    with contextlib.suppress(EmailNotValidError):
        text = validate_email(text, check_deliverability=False).normalized
    return text.lower()


def login_throttle_key(normalized_email: str) -> str:
    """A fixed-size key for the throttle: any string a client types fits, and none is stored."""
    return hashlib.sha256(normalized_email.encode()).hexdigest()


def address_throttle_scope(ip_address: str | None) -> str:
    """The throttle scope of one client address, hashed like the email: fixed size, nothing stored."""
    return "address:" + hashlib.sha256((ip_address or "").encode()).hexdigest()


def session_throttle_scope(session_id: uuid.UUID) -> str:
    return f"session:{session_id.hex}"


def hash_password(password: str) -> str:
    return password_context.hash(password)


def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Whether the password matches, and a fresh hash when the stored one has outdated parameters.

    Without a stored hash the dummy one is checked, so an unknown email costs as much as a known one.
    """
    if password_hash is None:
        password_context.verify(password, DUMMY_PASSWORD_HASH)
        return False, None
    return password_context.verify_and_update(password, password_hash)


def storable_text(text: str | None, max_length: int) -> str | None:
    """Client-supplied header text as it may be stored: no control characters, cut to the column."""
    if text is None:
        return None
    return "".join(char for char in text if char.isprintable())[:max_length] or None


def new_secret_token(nbytes: int) -> str:
    """A refresh token or a mailed link's token: `nbytes` random bytes, URL-safe."""
    return secrets.token_urlsafe(nbytes)


def hash_secret_token(token: str) -> str:
    """How such a token is stored and looked up. SHA-256 suffices: the tokens are long random
    strings, not guessable passwords, so no slow hash is needed to protect them."""
    return hashlib.sha256(token.encode()).hexdigest()
