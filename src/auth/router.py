"""Routes of the auth module, under /api/v1/auth."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, status
from fastapi.responses import JSONResponse

from src.auth import password_reset, registration, service, throttles
from src.auth.constants import Role, UserSort
from src.auth.dependencies import (
    AdminUser,
    Client,
    CurrentCaller,
    CurrentUser,
    valid_own_session,
    valid_user_for_admin,
)
from src.auth.exceptions import (
    AdminRequired,
    AuthenticationRequired,
    EmailAlreadyVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    LastAdmin,
    LoginLocked,
    LoginSlowed,
    PasswordChangeLocked,
    PasswordRequired,
    PasswordResetLimited,
    RefreshTokenReused,
    RegistrationClosed,
    RegistrationLimited,
    ResetTokenInvalid,
    SessionNotFound,
    SessionRevoked,
    TokenExpired,
    UserNotFound,
    VerificationMailLimited,
    VerificationTokenInvalid,
    WrongPassword,
)
from src.auth.models import AuthSession, User
from src.auth.schemas import (
    MeUpdate,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    PasswordResetRequested,
    RefreshRequest,
    RegisterRequest,
    RegistrationRequested,
    SessionRead,
    TokenForm,
    TokenPair,
    UserRead,
    UserUpdate,
    VerificationMailRequested,
    VerifyEmailRequest,
)
from src.constants import API_PREFIX
from src.database import DbSession
from src.dependencies import Pagination
from src.exceptions import BodyTooComplex, MalformedBody, ValidationFailed, problem_responses
from src.invitations import service as invitation_service
from src.invitations.exceptions import InvitationForAnotherAddress, InvitationTokenInvalid
from src.mail.exceptions import MailNotConfigured
from src.schemas import Page, SingleLineText

router = APIRouter(prefix="/auth", tags=["auth"])
# What any route behind an access token can answer with.
TOKEN_ERRORS = (AuthenticationRequired, InvalidToken, TokenExpired, SessionRevoked)
ADMIN_ERRORS = (*TOKEN_ERRORS, AdminRequired, ValidationFailed)
# Routes that read a body: one that cannot be read (not JSON, not UTF-8), or past the JSON limits.
BODY = (MalformedBody, BodyTooComplex)


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RegistrationRequested,
    response_description="The one answer to every self-registration, for a new and a taken address "
    "alike: check your mail, then sign in",
    summary="Create an account",
    description="Self-registration (when `OPEN_REGISTRATION` is on; else 403 for every address). Always 202 "
    "with the same body, headers and about the same time, whether or not the address already has an account: "
    "nothing here says who is registered, and there is no user id or `Location` to read. A new address is "
    "mailed a link (`{PUBLIC_URL}/verify-email#token=...`): where addresses must be verified "
    "(`REQUIRE_EMAIL_VERIFICATION`, the default in staging and production) the account does not exist "
    "until the link is followed (`POST /auth/verify-email` makes it, role `researcher`, verified, with the "
    "password sent there: `password` here is checked but not kept, so nobody but the mailbox's owner "
    "sets it; signing in before that is 401 `INVALID_CREDENTIALS`, as for a taken address with another "
    "password; a newer "
    "registration of the address replaces the older and kills its link); otherwise the account (address "
    "unverified) is made at once. An address that has an account gets no second one, and its owner is "
    "mailed that someone tried (with links to sign in and to reset the password). Then sign in with "
    "`POST /auth/token`. Emails are trimmed and compared case-insensitively. An address may be registered "
    "`REGISTRATION_MAX_REQUESTS` times within `LOGIN_LOCKOUT_MINUTES` (then 429 `REGISTRATION_LIMITED` for "
    "any address); 503 `MAIL_NOT_CONFIGURED` where the server sends no mail. With `invitation_token` (from "
    "an invitation's mailed link; registration closed or not) the answer is 201 with the account and its "
    "`Location`: the account is made for the invited address, verified, and joins the study; the link's "
    "holder owns that mailbox, so an address with an account is 409 `EMAIL_TAKEN`, a dead token 422 "
    "`INVITATION_TOKEN_INVALID`, another address 403 `INVITATION_FOR_ANOTHER_ADDRESS`.",
    responses={
        status.HTTP_201_CREATED: {
            "model": UserRead,
            "description": "Registered with `invitation_token`: the account (its `Location` header names it)",
        },
        **problem_responses(
            *BODY,
            RegistrationClosed,
            EmailTaken,
            ValidationFailed,
            InvitationTokenInvalid,
            InvitationForAnotherAddress,
            RegistrationLimited,
            MailNotConfigured,
        ),
    },
)
async def register(data: RegisterRequest, db: DbSession) -> RegistrationRequested | JSONResponse:
    if data.invitation_token is not None:
        user = await invitation_service.register_invitee(db, data=data, token=data.invitation_token)
        return JSONResponse(
            UserRead.model_validate(user).model_dump(mode="json"),
            status_code=status.HTTP_201_CREATED,
            headers={"Location": f"{API_PREFIX}/auth/users/{user.id}"},
        )
    await registration.register(db, data=data)
    return RegistrationRequested()


@router.post(
    "/token",
    response_model=TokenPair,
    summary="Sign in (OAuth2 password grant)",
    description="Form fields `username` (the email) and `password`. Returns an access token "
    "(a short-lived JWT) and an opaque refresh token. After repeated failures for one email from "
    "your address, further attempts from it get 429 `LOGIN_LOCKED` with `Retry-After`; after many "
    "failures for one email from everywhere, addresses that have not signed in to it recently get "
    "429 `LOGIN_SLOWED` between attempts.",
    responses=problem_responses(
        MalformedBody, InvalidCredentials, LoginLocked, LoginSlowed, ValidationFailed
    ),
)
async def token(form: Annotated[TokenForm, Form()], client: Client, db: DbSession) -> TokenPair:
    return await service.login(db, email=form.username, password=form.password, client=client)


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token for a new token pair",
    description="Refresh tokens are single-use: each call returns a new one. Presenting one that was "
    "already used ends the whole session (its access tokens stop working too).",
    responses=problem_responses(*BODY, InvalidRefreshToken, RefreshTokenReused, ValidationFailed),
)
async def refresh(data: RefreshRequest, db: DbSession) -> TokenPair:
    return await service.refresh_tokens(db, refresh_token=data.refresh_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End this session",
    description="The session's access and refresh tokens stop working at once.",
    responses=problem_responses(*TOKEN_ERRORS),
)
async def logout(caller: CurrentCaller, db: DbSession) -> None:
    await service.revoke_session(db, auth_session=caller.session)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of the current user",
    description="Signs you out everywhere: every access and refresh token of yours stops working at once, "
    "this one included.",
    responses=problem_responses(*TOKEN_ERRORS),
)
async def logout_all(user: CurrentUser, db: DbSession) -> None:
    await service.revoke_all_sessions(db, user=user)


@router.get(
    "/sessions",
    response_model=list[SessionRead],
    summary="List the current user's active sessions",
    description="One entry per signed-in device that has not signed out or expired, most recently used "
    "first. `current` marks the session making this request; `last_used_at` is its last sign-in or "
    "token refresh.",
    responses=problem_responses(*TOKEN_ERRORS),
)
async def list_sessions(caller: CurrentCaller, db: DbSession) -> list[SessionRead]:
    sessions = await service.list_active_sessions(db, user=caller.user)
    return [SessionRead.of(s, current_session_id=caller.session.id) for s in sessions]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End one of the current user's sessions",
    description="Its tokens stop working at once (for example a lost phone). A session that is not "
    "yours, or already ended, is 404.",
    responses=problem_responses(*TOKEN_ERRORS, SessionNotFound, ValidationFailed),
)
async def delete_session(
    auth_session: Annotated[AuthSession, Depends(valid_own_session)], db: DbSession
) -> None:
    await service.revoke_session(db, auth_session=auth_session)


@router.get(
    "/me",
    response_model=UserRead,
    summary="The current user",
    description="Your account as the server sees it now, role included.",
    responses=problem_responses(*TOKEN_ERRORS),
)
async def read_me(user: CurrentUser) -> User:
    return user


@router.patch(
    "/me",
    response_model=UserRead,
    summary="Change your name",
    description="Only `full_name` can be changed here; email and role are not yours to change.",
    responses=problem_responses(*BODY, *TOKEN_ERRORS, ValidationFailed),
)
async def update_me(data: MeUpdate, user: CurrentUser, db: DbSession) -> User:
    return await service.update_me(db, user=user, data=data)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your password",
    description="Needs the current password; every other session of yours is ended. Failed sign-ins "
    "elsewhere never block this; repeated wrong current passwords lock it for this session (429).",
    responses=problem_responses(*BODY, *TOKEN_ERRORS, WrongPassword, ValidationFailed, PasswordChangeLocked),
)
async def change_password(data: PasswordChange, caller: CurrentCaller, db: DbSession) -> None:
    await service.change_password(db, caller=caller, data=data)


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PasswordResetRequested,
    summary="Ask for a password-reset link by mail",
    description="Always 202 with the same body, whether or not the address has an account, and in about "
    "the same time: nothing here says who is registered. If it has an active account, a mail with a link "
    "(`{PUBLIC_URL}/reset-password#token=...`) follows shortly; the link works once, for "
    "`PASSWORD_RESET_TOKEN_MINUTES`, and a newer request's link replaces it. An address may ask "
    "`PASSWORD_RESET_MAX_REQUESTS` times within `LOGIN_LOCKOUT_MINUTES` (then 429 for any address). "
    "503 `MAIL_NOT_CONFIGURED` where the server sends no mail.",
    responses=problem_responses(*BODY, ValidationFailed, PasswordResetLimited, MailNotConfigured),
)
async def request_password_reset(data: PasswordResetRequest, db: DbSession) -> PasswordResetRequested:
    await password_reset.request_password_reset(db, email=data.email)
    return PasswordResetRequested()


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a mailed reset token",
    description="`token` is the `token` of the mailed link's fragment. The password rules of registration "
    "apply. Every session of the account ends, every other reset link dies, sign-in locks on the account "
    "are lifted, and a notice is mailed. A token that is unknown, used, replaced by a newer request, "
    "outlived by a password change or expired is one and the same 422 `RESET_TOKEN_INVALID`.",
    responses=problem_responses(*BODY, ValidationFailed, ResetTokenInvalid),
)
async def confirm_password_reset(data: PasswordResetConfirm, db: DbSession) -> None:
    await password_reset.confirm_password_reset(db, data=data)


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Verify your address with a mailed token",
    description="`token` is the `token` of the mailed link's fragment (`/verify-email#token=...`); no "
    "sign-in needed; 204 with no body. A registration's link (where addresses must be verified) creates "
    "the account, verified, with `password` (the same rules as registration's; the link's holder owns the "
    "mailbox, so only they choose it; without it 422 `PASSWORD_REQUIRED` and the link still works), then "
    "sign in; a link mailed to an account marks its address verified (`password` is ignored). The "
    "link works once, for `EMAIL_VERIFICATION_TOKEN_HOURS`, and only while it is the newest one mailed "
    "for the address; a dead one (also a registration's link once the address has an account some other "
    "way) is 422 `VERIFICATION_TOKEN_INVALID`.",
    responses=problem_responses(*BODY, ValidationFailed, VerificationTokenInvalid, PasswordRequired),
)
async def verify_email(data: VerifyEmailRequest, db: DbSession) -> None:
    await registration.verify_email(db, token=data.token, password=data.password)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=VerificationMailRequested,
    summary="Mail a new verification link",
    description="For your own account: a new link replaces the older ones. At most "
    "`EMAIL_VERIFICATION_MAX_REQUESTS` within `LOGIN_LOCKOUT_MINUTES` (then 429 "
    "`VERIFICATION_MAIL_LIMITED` with Retry-After); 409 `EMAIL_ALREADY_VERIFIED` once verified; 503 "
    "`MAIL_NOT_CONFIGURED` where the server sends no mail.",
    responses=problem_responses(
        *TOKEN_ERRORS, EmailAlreadyVerified, VerificationMailLimited, MailNotConfigured
    ),
)
async def resend_verification_mail(user: CurrentUser, db: DbSession) -> VerificationMailRequested:
    await service.request_verification_mail(db, user=user)
    return VerificationMailRequested()


@router.get(
    "/users",
    response_model=Page[UserRead],
    summary="List users (admin)",
    description="`q` matches email or name (case-insensitive substring, `%` and `_` literal); `role` and "
    "`is_active` filter; `sort` orders (prefix `-` for descending). Paged with `page` and `page_size`.",
    responses=problem_responses(*ADMIN_ERRORS),
)
async def list_users(
    _admin: AdminUser,
    db: DbSession,
    page: Pagination,
    q: Annotated[SingleLineText | None, Query(max_length=200, description="search in email and name")] = None,
    role: Role | None = None,
    is_active: bool | None = None,
    sort: UserSort = UserSort.NEWEST_FIRST,
) -> Page[UserRead]:
    users, total, total_is_exact = await service.list_users(
        db, page=page, search=q, role=role, is_active=is_active, sort=sort
    )
    return Page[UserRead](
        items=users, total=total, total_is_exact=total_is_exact, page=page.page, page_size=page.page_size
    )


@router.get(
    "/users/{user_id}",
    response_model=UserRead,
    summary="One user (admin)",
    description="Any account, active or not.",
    responses=problem_responses(*ADMIN_ERRORS, UserNotFound),
)
async def read_user(user: Annotated[User, Depends(valid_user_for_admin)]) -> User:
    return user


@router.patch(
    "/users/{user_id}",
    response_model=UserRead,
    summary="Change a user's name, role or active flag (admin)",
    description="Deactivating a user ends all their sessions at once. The last active admin "
    "cannot be demoted or deactivated (409).",
    responses=problem_responses(*BODY, *ADMIN_ERRORS, UserNotFound, LastAdmin),
)
async def update_user(
    data: UserUpdate, user: Annotated[User, Depends(valid_user_for_admin)], db: DbSession
) -> User:
    return await service.update_user(db, user=user, data=data)


@router.delete(
    "/users/{user_id}/login-lock",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Lift a user's sign-in locks (admin)",
    description="Clears every sign-in lock and slowdown of the user's email (from every address) and "
    "every session's password-change lock. 204 also when there was none.",
    responses=problem_responses(*ADMIN_ERRORS, UserNotFound),
)
async def clear_login_lock(user: Annotated[User, Depends(valid_user_for_admin)], db: DbSession) -> None:
    await throttles.clear_login_throttles(db, user=user)
