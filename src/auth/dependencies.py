"""Who is calling, and may they touch this user or session."""

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from src.auth import jwt, service
from src.auth.config import auth_settings
from src.auth.constants import Role
from src.auth.exceptions import (
    AdminRequired,
    AuthenticationRequired,
    EmailNotVerified,
    SessionNotFound,
    UserNotFound,
)
from src.auth.jwt import AccessClaims
from src.auth.models import AuthSession, User
from src.auth.service import Authenticated
from src.constants import API_PREFIX
from src.database import DbSession


class AccessTokenClaims(OAuth2PasswordBearer):
    """The claims of the caller's bearer token, its signature and expiry checked (no database); 401
    without one. The token is taken exactly as sent: FastAPI's own str.strip() also drops Unicode
    spaces such as U+0085 and U+00A0, which would make `<token>\\x85` another spelling of `<token>`.
    One dependency for the OpenAPI security scheme and the token's check: every level of dependency
    costs every authenticated request."""

    async def __call__(self, request: Request) -> AccessClaims:  # type: ignore[override]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationRequired  # our problem+json 401, not FastAPI's plain one
        return jwt.decode_access_token(token)


access_token_claims = AccessTokenClaims(
    tokenUrl=f"{API_PREFIX}/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)
AccessClaimsOf = Annotated[AccessClaims, Depends(access_token_claims)]


def remember_caller(request: Request, caller: Authenticated) -> Authenticated:
    """The caller, read once for this request: a later dependency of the same request takes it from
    `request.state` (this request's, never another's) instead of reading it again."""
    request.state.caller = caller
    request.state.user_id = str(caller.user.id)  # for the access log line
    return caller


def caller_read_in(request: Request) -> Authenticated | None:
    """The caller if a dependency of this request read it already (with its study, say)."""
    return getattr(request.state, "caller", None)


async def get_authenticated(request: Request, claims: AccessClaimsOf, db: DbSession) -> Authenticated:
    """The caller: their session and user read from the database once per request, whichever
    dependency asks first (never from a cache across requests: a revoked session or a deactivated
    user is refused on the next request, on any worker)."""
    caller = caller_read_in(request)
    if caller is None:
        caller, _ = await service.read_caller(db, claims=claims)
        remember_caller(request, caller)
    return caller


CurrentCaller = Annotated[Authenticated, Depends(get_authenticated)]


async def get_current_user(request: Request, claims: AccessClaimsOf, db: DbSession) -> User:
    # Not a dependency on get_authenticated: one level less for every route that needs only the user.
    return (await get_authenticated(request, claims, db)).user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_verified_user(user: CurrentUser) -> User:
    """The caller, if their address is verified or verification is not required
    (REQUIRE_EMAIL_VERIFICATION); else 403 EMAIL_NOT_VERIFIED. For what an unverified account may
    not do: create studies, and accept invitations or see those sent to its address."""
    if auth_settings.requires_email_verification and user.email_verified_at is None:
        raise EmailNotVerified
    return user


VerifiedUser = Annotated[User, Depends(get_verified_user)]


async def get_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise AdminRequired
    return user


AdminUser = Annotated[User, Depends(get_admin)]


async def valid_user_for_admin(user_id: uuid.UUID, _admin: AdminUser, db: DbSession) -> User:
    user = await service.get_user(db, user_id=user_id)
    if user is None:
        raise UserNotFound
    return user


async def valid_own_session(session_id: uuid.UUID, caller: CurrentCaller, db: DbSession) -> AuthSession:
    """An active session of the caller's; anyone else's is reported as not found."""
    auth_session = await service.get_active_session(db, user=caller.user, session_id=session_id)
    if auth_session is None:
        raise SessionNotFound
    return auth_session


async def client_info(request: Request) -> service.ClientInfo:
    return service.ClientInfo(
        user_agent=request.headers.get("user-agent"),
        ip_address=request.client.host if request.client else None,
    )


Client = Annotated[service.ClientInfo, Depends(client_info)]
