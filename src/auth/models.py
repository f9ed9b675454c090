"""Tables of the auth module: users, their sessions, refresh tokens, login throttles and the
one-time tokens mailed in links."""

import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from src.auth.constants import (
    EMAIL_MAX_LENGTH,
    FULL_NAME_MAX_LENGTH,
    IP_ADDRESS_MAX_LENGTH,
    LINK_TOKEN_PURPOSE_MAX_LENGTH,
    LOGIN_THROTTLE_SCOPE_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    Role,
)
from src.database import Base, Timestamps, UUIDPrimaryKey, utcnow


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    # Stored normalized (trimmed, lower-case), so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    full_name: Mapped[str] = mapped_column(String(FULL_NAME_MAX_LENGTH))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            name="user_role",
            native_enum=False,
            create_constraint=True,
            length=20,
            values_callable=lambda roles: [role.value for role in roles],
        ),
        index=True,
    )
    is_active: Mapped[bool] = mapped_column(default=True, index=True)
    # When the owner of the address showed up (a mailed verification or invitation link followed);
    # None until then. Accounts made by an operator (create-admin) are verified when made.
    email_verified_at: Mapped[datetime | None]


class AuthSession(UUIDPrimaryKey, Base):
    """One sign-in on one device; every access and refresh token names it, so revoking it kills them."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH))
    ip_address: Mapped[str | None] = mapped_column(String(IP_ADDRESS_MAX_LENGTH))


class RefreshToken(UUIDPrimaryKey, Base):
    """Every refresh token a session was given, by hash; a rotated one shown again means theft."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]


class LoginThrottle(Base):
    """Password attempts per email (known or not, so a throttle reveals nothing about accounts) and scope.

    Scopes: the account across all addresses (a high budget, then slowed), one client address
    (a hard lock) or one session (wrong current passwords). Keyed by a hash of the normalized
    email and of the address: any string a client sends fits, and none is kept.
    """

    __tablename__ = "login_throttles"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(LOGIN_THROTTLE_SCOPE_MAX_LENGTH), primary_key=True)
    attempt_count: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A hard lock's end, or for a slowed account the earliest next attempt.
    locked_until: Mapped[datetime | None]


class LinkToken(UUIDPrimaryKey, Base):
    """A one-time token mailed in a link (a password reset), by hash: the token itself is only in
    the mail. Deleted when used, when a newer one of its purpose is mailed, when the password
    changes, and (by `python main.py prune`) once expired."""

    __tablename__ = "link_tokens"
    __table_args__ = (Index("ix_link_tokens_user_id_purpose", "user_id", "purpose"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(LINK_TOKEN_PURPOSE_MAX_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PendingRegistration(UUIDPrimaryKey, Base):
    """A self-registration waiting for its mailed link (where addresses must be verified): the
        account is made only when the link is followed, so until then signing in fails as for any
        address without an account. One per address: a newer registration replaces it (a new id, its
        link dead). Its token (the hash) is set when its mail is composed; deleted when the link is
        followed and (by `python main.py prune`) once expired. No password: the link's holder chooses it
    when following the link."""

    __tablename__ = "pending_registrations"

    # Normalized like User.email.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    full_name: Mapped[str] = mapped_column(String(FULL_NAME_MAX_LENGTH))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
