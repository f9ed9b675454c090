"""Who is calling, and may they touch this user or session."""

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from src.auth import service
from src.auth.config import auth_settings
from src.auth.constants import Role
from src.auth.exceptions import (
    AdminRequired,
    AuthenticationRequired,
    EmailNotVerified,
    SessionNotFound,
    UserNotFound,
)
from src.auth.models import AuthSession, User
from src.auth.service import Authenticated
from src.constants import API_PREFIX
from src.database import DbSession


class ExactBearerToken(OAuth2PasswordBearer):
    """The bearer token exactly as sent. FastAPI's own str.strip() also drops Unicode spaces
    such as U+0085 and U+00A0, which would make `<token>\\x85` another spelling of `<token>`."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None


# auto_error=False: a missing token gets our problem+json 401, not FastAPI's plain one.
bearer_token = ExactBearerToken(
    tokenUrl=f"{API_PREFIX}/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)


async def get_authenticated(
    request: Request, token: Annotated[str | None, Depends(bearer_token)], db: DbSession
) -> Authenticated:
    if not token:
        raise AuthenticationRequired
    caller = await service.authenticate_access_token(db, token=token)
    request.state.user_id = str(caller.user.id)  # for the access log line
    return caller


CurrentCaller = Annotated[Authenticated, Depends(get_authenticated)]


async def get_current_user(caller: CurrentCaller) -> User:
    return caller.user


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
