"""The JSON contract of the auth module."""

import uuid
from datetime import datetime
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from src.auth.constants import (
    EMAIL_MAX_LENGTH,
    FULL_NAME_MAX_LENGTH,
    LINK_TOKEN_MAX_LENGTH,
    OAUTH_FIELD_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    PASSWORD_RESET_REQUESTED,
    REGISTRATION_REQUESTED,
    VERIFICATION_MAIL_REQUESTED,
    Role,
)
from src.auth.utils import normalize_email
from src.schemas import (
    NUL_FREE_PATTERN,
    TRIMMED_LINE_PATTERN,
    DocumentedPattern,
    SingleLineText,
    any_case,
    at_most_as_sent,
    never_null,
    no_control_characters,
)


def _strip_if_text(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


# email-validator refuses a domain that is, or ends in, a special-use name (RFC 6761: `test`,
# `local`, `invalid`, ...), which `format: email` alone allows: said in the document's dialect,
# which has no case-insensitive flag.
_NO_SPECIAL_USE_DOMAIN = (
    "^(?![\\s\\S]*[@.](?:" + "|".join(any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES) + ")$)"
)
Email = Annotated[
    EmailStr,
    BeforeValidator(_strip_if_text),
    AfterValidator(normalize_email),
    DocumentedPattern(_NO_SPECIAL_USE_DOMAIN),
    Field(max_length=EMAIL_MAX_LENGTH, examples=["ada@example.org"]),
]


# The one-time token of a mailed link (reset, invitation, verification), as the page reads it
# from the link's fragment; one of impossible length is refused unread.
MailedToken = Annotated[
    str,
    Field(
        min_length=1,
        max_length=LINK_TOKEN_MAX_LENGTH,
        description="the `token` of the mailed link's fragment",
    ),
]


def _reject_nul(value: str) -> str:
    # Any other character may be part of a passphrase, but NUL cannot be typed, and C-based hashers
    # and clients cut the text short at it.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


PasswordText = Annotated[str, AfterValidator(_reject_nul), DocumentedPattern(NUL_FREE_PATTERN)]
Password = Annotated[
    PasswordText,
    Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH, examples=["correct horse battery"]),
]
FullName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=FULL_NAME_MAX_LENGTH),
    at_most_as_sent(FULL_NAME_MAX_LENGTH),
    no_control_characters,
    DocumentedPattern(TRIMMED_LINE_PATTERN),
    Field(examples=["Ada Lovelace"]),
]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "email": "grace@example.org",
                "password": "correct horse battery",
                "full_name": "Grace Hopper",
            }
        },
    )

    email: Email
    password: Password
    full_name: FullName
    invitation_token: MailedToken | None = Field(
        default=None,
        description="the token of an invitation's mailed link (`/invitations#token=...`): the account is "
        "made for the invited address with it verified, and joins the study at once. Registration closed "
        "(`OPEN_REGISTRATION` off) still takes an invited address.",
    )


class TokenForm(BaseModel):
    """The OAuth2 password grant (form fields), so Swagger's Authorize button works."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"username": "ada@example.org", "password": "correct horse battery"}}
    )

    grant_type: Annotated[str | None, Field(max_length=len("password"), pattern="^password$")] = None
    username: Annotated[SingleLineText, Field(max_length=EMAIL_MAX_LENGTH, description="the account's email")]
    password: Annotated[PasswordText, Field(max_length=PASSWORD_MAX_LENGTH)]
    scope: Annotated[str, Field(max_length=OAUTH_FIELD_MAX_LENGTH)] = ""
    client_id: Annotated[str | None, Field(max_length=OAUTH_FIELD_MAX_LENGTH)] = None
    client_secret: Annotated[str | None, Field(max_length=OAUTH_FIELD_MAX_LENGTH)] = None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"refresh_token": "q5vV0c1mQm4m3m8bqf0wqg7s9X1h2JkLwYp3Q6n0e1M"}},
    )

    refresh_token: Annotated[str, Field(min_length=1, max_length=256)]


class TokenPair(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                "refresh_token": "q5vV0c1mQm4m3m8bqf0wqg7s9X1h2JkLwYp3Q6n0e1M",
                "token_type": "bearer",
                "expires_in": 900,
            }
        }
    )

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int = Field(description="seconds until the access token expires")


class UserRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90",
                "email": "ada@example.org",
                "full_name": "Ada Lovelace",
                "role": "researcher",
                "is_active": True,
                "created_at": "2026-11-22T09:30:00Z",
                "email_verified_at": "2026-11-22T09:31:00Z",
            }
        },
    )

    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    created_at: datetime
    email_verified_at: datetime | None = Field(
        description="when the address was verified (its mailed link followed); null until then"
    )


class MeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"full_name": "Ada King"}})

    full_name: FullName


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"current_password": "correct horse battery", "new_password": "a new long passphrase"}
        },
    )

    current_password: Annotated[PasswordText, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
    new_password: Password


class UserUpdate(BaseModel):
    """An administrator's change to a user; fields left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=never_null(
            "full_name", "role", "is_active", example={"role": "viewer", "is_active": True}
        ),
    )

    full_name: FullName | None = None
    role: Role | None = None
    is_active: bool | None = None

    @field_validator("full_name", "role", "is_active", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        # Only fields that were sent get here: an explicit null is a mistake, not "leave it".
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class SessionRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "9b1d4c2e-1f3a-4b5c-8d6e-7f8091a2b3c4",
                "created_at": "2026-11-22T09:30:00Z",
                "last_used_at": "2026-11-22T10:05:00Z",
                "expires_at": "2026-12-06T10:05:00Z",
                "user_agent": "curl/8.5.0",
                "ip_address": "203.0.113.7",
                "current": True,
            }
        },
    )

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime = Field(description="when the session last signed in or refreshed its tokens")
    expires_at: datetime
    user_agent: str | None
    ip_address: str | None
    current: bool = Field(default=False, description="whether this is the session making the request")

    @classmethod
    def of(cls, auth_session: object, *, current_session_id: uuid.UUID) -> "SessionRead":
        read = cls.model_validate(auth_session)
        return read.model_copy(update={"current": read.id == current_session_id})


class PasswordResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"email": "ada@example.org"}})

    email: Email


class RegistrationRequested(BaseModel):
    """The one answer to every self-registration, whether the address was new or already taken."""

    model_config = ConfigDict(json_schema_extra={"example": {"detail": REGISTRATION_REQUESTED}})

    detail: str = REGISTRATION_REQUESTED


class PasswordResetRequested(BaseModel):
    """The one answer to every reset request, whether or not the address has an account."""

    model_config = ConfigDict(
        json_schema_extra={"example": {"detail": PASSWORD_RESET_REQUESTED}},
    )

    detail: str = PASSWORD_RESET_REQUESTED


class PasswordResetConfirm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "token": "Xq3v8kq0JmB2s1Yw7c5Zr4tH6nD9pL0aE2fG3hI4jK5",
                "new_password": "a new long passphrase",
            }
        },
    )

    token: MailedToken
    new_password: Password


class VerifyEmailRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "token": "Xq3v8kq0JmB2s1Yw7c5Zr4tH6nD9pL0aE2fG3hI4jK5",
                "password": "correct horse battery",
            }
        },
    )

    token: MailedToken
    # The new account's password for a registration's link (required there); ignored otherwise.
    password: Password | None = None


class VerificationMailRequested(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"detail": VERIFICATION_MAIL_REQUESTED}})

    detail: str = VERIFICATION_MAIL_REQUESTED
