"""Access tokens: HS256 JWTs that name a user and the session they belong to."""

import base64
import binascii
import functools
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from jose import ExpiredSignatureError, JWTError, jwt

from src.auth.constants import JWT_ALGORITHM, REQUIRED_ACCESS_CLAIMS, TOKEN_TYPE_ACCESS
from src.auth.exceptions import InvalidToken, TokenExpired
from src.config import settings

# Tokens whose verified claims one worker remembers (~1 KB each): more than the callers one
# worker serves within a token's lifetime on a busy deployment; the least recently used go first.
VERIFIED_TOKENS_CACHED = 4096
_COMPACT_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    token_id: str


def _signing_key() -> str:
    return settings.SECRET_KEY.get_secret_value()


def create_access_token(
    *, user_id: uuid.UUID, session_id: uuid.UUID, issued_at: datetime, lifetime: timedelta
) -> str:
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "type": TOKEN_TYPE_ACCESS,
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + lifetime).timestamp()),
    }
    return jwt.encode(claims, _signing_key(), algorithm=JWT_ALGORITHM)


def _is_canonical_base64url(segment: str) -> bool:
    """True when the segment is the one unpadded base64url spelling of its bytes: no padding, and
    no set bits past the last byte (which decoders ignore, so flipping them would go unnoticed)."""
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment


def is_canonical_compact_jwt(token: str) -> bool:
    """python-jose accepts padded, non-ASCII-suffixed and low-bit-flipped spellings of one token;
    exactly one string is a given token here."""
    return _COMPACT_JWT.fullmatch(token) is not None and all(
        _is_canonical_base64url(segment) for segment in token.split(".")
    )


def decode_access_token(token: str) -> AccessClaims:
    """The token's claims, or InvalidToken/TokenExpired; only HS256 with our key is accepted."""
    claims, expires_at = _verified_claims(token, _signing_key())
    if expires_at < now_in_seconds():  # as python-jose decides: expired once `exp` is in the past
        raise TokenExpired
    return claims


def now_in_seconds() -> int:
    return int(time.time())


@functools.lru_cache(maxsize=VERIFIED_TOKENS_CACHED)
def _verified_claims(token: str, key: str) -> tuple[AccessClaims, int]:
    """The claims of a token whose signature and shape were checked, and when it expires.

    A pure function of the token and the key, so remembered (per process, a bounded number of
    tokens): checking the signature was a tenth of an authenticated request's CPU. It decides
    nothing about the session or user, which every request still reads from the database; expiry
    is checked on every call. Refused tokens raise, and exceptions are not remembered.
    """
    if not is_canonical_compact_jwt(token):
        raise InvalidToken
    try:
        claims = jwt.decode(token, key, algorithms=[JWT_ALGORITHM])
    except ExpiredSignatureError as exc:
        raise TokenExpired from exc
    except JWTError as exc:
        raise InvalidToken from exc
    if any(claim not in claims for claim in REQUIRED_ACCESS_CLAIMS):
        raise InvalidToken
    if claims["type"] != TOKEN_TYPE_ACCESS or not isinstance(claims["jti"], str):
        raise InvalidToken
    try:
        access_claims = AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            token_id=claims["jti"],
        )
        return access_claims, int(claims["exp"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidToken from exc
