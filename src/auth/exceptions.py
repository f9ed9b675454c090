"""Errors of the auth module."""

from src.auth.constants import ErrorCode
from src.exceptions import (
    Conflict,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    UnprocessableEntity,
)


class AuthenticationRequired(NotAuthenticated):
    detail = "Send an access token as `Authorization: Bearer <token>`."


class InvalidToken(NotAuthenticated):
    code = ErrorCode.TOKEN_INVALID
    detail = "The access token is not valid."


class TokenExpired(NotAuthenticated):
    code = ErrorCode.TOKEN_EXPIRED
    detail = "The access token has expired; refresh it."


class SessionRevoked(NotAuthenticated):
    code = ErrorCode.SESSION_REVOKED
    detail = "The session behind this token has ended; sign in again."


class InvalidCredentials(NotAuthenticated):
    code = ErrorCode.INVALID_CREDENTIALS
    detail = "Incorrect email or password."


class LoginLocked(TooManyRequests):
    code = ErrorCode.LOGIN_LOCKED
    detail = "Too many failed sign-ins for this email from your address; try again later."


class LoginSlowed(TooManyRequests):
    code = ErrorCode.LOGIN_SLOWED
    detail = (
        "Too many failed sign-ins for this email from many addresses: sign-ins from new addresses "
        "are slowed; try again after Retry-After."
    )


class PasswordChangeLocked(TooManyRequests):
    code = ErrorCode.PASSWORD_CHANGE_LOCKED
    detail = "Too many wrong current passwords in this session; try again later."


class InvalidRefreshToken(NotAuthenticated):
    code = ErrorCode.REFRESH_TOKEN_INVALID
    detail = "The refresh token is not valid; sign in again."


class RefreshTokenReused(NotAuthenticated):
    code = ErrorCode.REFRESH_TOKEN_REUSED
    detail = "This refresh token was already used; the session has been ended. Sign in again."


class EmailTaken(Conflict):
    code = ErrorCode.EMAIL_TAKEN
    detail = "An account with this email already exists."


class RegistrationClosed(PermissionDenied):
    code = ErrorCode.REGISTRATION_CLOSED
    detail = "Registration is closed; ask an administrator for an account."


class AdminRequired(PermissionDenied):
    code = ErrorCode.ADMIN_REQUIRED
    detail = "Only administrators may do this."


class UserNotFound(NotFound):
    code = ErrorCode.USER_NOT_FOUND
    detail = "No such user."


class SessionNotFound(NotFound):
    code = ErrorCode.SESSION_NOT_FOUND
    detail = "No such active session."


class LastAdmin(Conflict):
    code = ErrorCode.LAST_ADMIN
    detail = "The last active administrator cannot be demoted or deactivated."


class WrongPassword(UnprocessableEntity):
    code = ErrorCode.WRONG_PASSWORD
    detail = "The current password is not correct."


class ResetTokenInvalid(UnprocessableEntity):
    # One answer for a token that never existed, was used, was replaced by a newer one, died with a
    # password change or expired: all the holder can do is ask for a new link.
    code = ErrorCode.RESET_TOKEN_INVALID
    detail = "This password-reset link is no longer valid (used, replaced or expired); ask for a new one."


class PasswordResetLimited(TooManyRequests):
    code = ErrorCode.PASSWORD_RESET_LIMITED
    detail = "Too many password-reset requests for this email; try again after Retry-After."


class EmailNotVerified(PermissionDenied):
    code = ErrorCode.EMAIL_NOT_VERIFIED
    detail = (
        "Verify your email address first (open the link mailed to it, or ask for a new one with "
        "POST /api/v1/auth/verify-email/resend); until then you can sign in and read."
    )


class EmailAlreadyVerified(Conflict):
    code = ErrorCode.EMAIL_ALREADY_VERIFIED
    detail = "Your email address is already verified."


class VerificationTokenInvalid(UnprocessableEntity):
    code = ErrorCode.VERIFICATION_TOKEN_INVALID
    detail = "This verification link is no longer valid (used, replaced or expired); ask for a new one."


class PasswordRequired(UnprocessableEntity):
    """A registration's link makes the account with the password sent along (the link's holder owns
    the mailbox), so it is refused without one; the link still works."""

    code = ErrorCode.PASSWORD_REQUIRED
    detail = "This link creates your account: choose its password (send it with the link's token)."


class VerificationMailLimited(TooManyRequests):
    code = ErrorCode.VERIFICATION_MAIL_LIMITED
    detail = "Too many verification mails asked for; try again after Retry-After."


class RegistrationLimited(TooManyRequests):
    code = ErrorCode.REGISTRATION_LIMITED
    detail = "Too many registrations for this email; try again after Retry-After."
