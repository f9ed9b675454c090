"""The error base class and the handlers that render every error as problem+json."""

import errno
import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.constants import (
    MAX_ERROR_LOC_PARTS,
    MAX_ERROR_TEXT,
    MAX_PROBLEM_ERRORS,
    MAX_PROBLEM_ERRORS_BYTES,
    ErrorCode,
)
from src.logging import current_request_id, database_outage
from src.schemas import Problem

PROBLEM_CONTENT_TYPE = "application/problem+json"
logger = logging.getLogger("studybase.errors")


class AppError(Exception):
    """Base of every error the API answers with; subclasses set status, code and title."""

    status_code: int = 500
    code: str = ErrorCode.INTERNAL_ERROR
    title: str = "Internal server error"
    detail: str = "The server could not complete the request."
    headers: Mapping[str, str] | None = None
    # Per-item problems (`[{"loc", "msg", "code"}]`), for errors that concern parts of the request.
    errors: Sequence[Mapping[str, Any]] | None = None
    # RFC 9457 extension members added to the body (such as an import's `report`).
    extensions: Mapping[str, Any] | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail
        if headers is not None:
            self.headers = headers
        if errors is not None:
            self.errors = errors


class NotAuthenticated(AppError):
    """The request needs a signed-in caller and has no valid access token (its subclasses say why)."""

    status_code = 401
    code = ErrorCode.NOT_AUTHENTICATED
    title = "Not authenticated"
    headers = MappingProxyType({"WWW-Authenticate": "Bearer"})


class PermissionDenied(AppError):
    """The caller is known but may not do this; the subclasses name the rule."""

    status_code = 403
    code = ErrorCode.FORBIDDEN
    title = "Forbidden"


class NotFound(AppError):
    """No such resource (or none the caller may see); an unknown path answers the same code."""

    status_code = 404
    code = ErrorCode.NOT_FOUND
    title = "Not found"


class Conflict(AppError):
    """The request cannot be applied to the resource as it stands; the subclasses say what is in the way."""

    status_code = 409
    code = ErrorCode.CONFLICT
    title = "Conflict"


class BadRequest(AppError):
    """The request could not be read at all (a body that is not what the route takes, broken multipart)."""

    status_code = 400
    code = ErrorCode.MALFORMED_BODY
    title = "Bad request"


class InvalidIfMatch(BadRequest):
    code = ErrorCode.INVALID_IF_MATCH
    detail = 'If-Match must be one entity tag as sent in ETag, such as "3".'


class PreconditionFailed(AppError):
    status_code = 412
    code = ErrorCode.PRECONDITION_FAILED
    title = "Precondition failed"
    detail = "It was changed since you read it (If-Match is stale); nothing was changed. Read it again."


class UnprocessableEntity(AppError):
    """The request was read but its content is refused; the subclasses say which rule it breaks."""

    status_code = 422
    code = ErrorCode.VALIDATION_ERROR
    title = "Unprocessable content"


class ValidationFailed(UnprocessableEntity):
    """What a request the schemas refuse gets (raised by FastAPI as RequestValidationError)."""

    title = "Validation failed"
    detail = "The request is not valid; see `errors`."


class MalformedBody(AppError):
    status_code = 400
    code = ErrorCode.MALFORMED_BODY
    title = "Malformed body"
    detail = "The request body could not be read."


class BodyTooComplex(UnprocessableEntity):
    """A JSON body past a structural limit, refused before any schema spends time on it."""

    code = ErrorCode.BODY_TOO_COMPLEX
    title = "Body too complex"
    detail = "The JSON body is nested too deeply, or has too many keys, items or digits."


class PayloadTooLarge(AppError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE
    title = "Payload too large"
    detail = "The request body is larger than this endpoint accepts."


class ResourceBusy(Conflict):
    """Someone else holds what this request must change, for longer than a request may wait for it
    (DATABASE_LOCK_TIMEOUT_SECONDS): nothing was changed; retrying shortly succeeds."""

    code = ErrorCode.RESOURCE_BUSY
    detail = "Someone else is changing this right now; nothing was changed. Try again in a few seconds."
    headers = MappingProxyType({"Retry-After": "5"})


class IdempotencyKeyReused(UnprocessableEntity):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    detail = (
        "This Idempotency-Key was used with a different request (another body or path): a retry must "
        "repeat its request exactly; a new request needs a new key."
    )


class IdempotentRequestInProgress(Conflict):
    code = ErrorCode.IDEMPOTENT_REQUEST_IN_PROGRESS
    detail = "The first request with this Idempotency-Key is still running: retry shortly to get its answer."
    headers = MappingProxyType({"Retry-After": "2"})


class IdempotentRequestApplied(Conflict):
    code = ErrorCode.IDEMPOTENT_REQUEST_APPLIED
    detail = (
        "The first request with this Idempotency-Key was applied, but its answer could not be kept: "
        "read the resource (or the list it belongs to) instead of retrying."
    )


class IdempotentReplay(Exception):
    """Not an error: the answer a request with this Idempotency-Key got the first time, given again."""

    def __init__(self, *, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__("idempotent replay")
        self.status, self.headers, self.body = status, dict(headers), body


# What a POST that takes an Idempotency-Key may answer besides its own outcomes.
IDEMPOTENCY_ERRORS = (IdempotencyKeyReused, IdempotentRequestInProgress, IdempotentRequestApplied)


class TooManyRequests(AppError):
    """A limit on how often something may be done was reached: wait for Retry-After, then try again."""

    status_code = 429
    code = ErrorCode.RATE_LIMITED
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailable(AppError):
    """The server cannot serve this right now (something it needs is away, busy or not configured)."""

    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
    title = "Service unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    code = ErrorCode.DATABASE_UNAVAILABLE
    detail = "The database is not answering; try again shortly."
    headers = MappingProxyType({"Retry-After": "5"})


class StorageUnavailable(ServiceUnavailable):
    """The file store (STORAGE_URL's S3 server) cannot be reached or refuses us: nothing was stored."""

    code = ErrorCode.STORAGE_UNAVAILABLE
    detail = "The file store is not answering; nothing was stored. Try again shortly."
    headers = MappingProxyType({"Retry-After": "5"})


class InsufficientStorage(AppError):
    status_code = 507
    code = ErrorCode.INSUFFICIENT_STORAGE
    title = "Insufficient storage"
    detail = "The server has no room to store this right now; nothing was stored. Try again later."


# The errors of a full disk or an exhausted quota; any other OSError stays an unexpected 500.
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def problem_type(code: str) -> str:
    return f"urn:studybase:problem:{code.lower().replace('_', '-')}"


def problem_response(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if errors is not None:
        body["errors"] = errors_within_budget(errors)
        body["errors_total"] = len(errors)
        body["errors_truncated"] = len(body["errors"]) < len(errors)
    return ProblemResponse(body, status_code=status, headers=headers)


class ProblemResponse(JSONResponse):
    """problem+json in ASCII: text that cannot be UTF-8 (a lone surrogate a client sent as a key,
    echoed in `loc`) is escaped, never a failure to answer."""

    media_type = PROBLEM_CONTENT_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def shortened(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One error with every part a client could have made long (a 900 KB key in `loc`) cut short."""
    loc = [part if isinstance(part, int) else shortened(str(part), MAX_ERROR_TEXT) for part in entry["loc"]]
    return {
        **entry,
        "loc": loc[:MAX_ERROR_LOC_PARTS],
        "msg": shortened(str(entry["msg"]), MAX_ERROR_TEXT),
        "code": shortened(str(entry["code"]), MAX_ERROR_TEXT),
    }


def errors_within_budget(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The first errors, each cut short, as many as fit MAX_PROBLEM_ERRORS and the byte budget."""
    kept: list[dict[str, Any]] = []
    size = 0
    for entry in errors[:MAX_PROBLEM_ERRORS]:
        bounded = _bounded_entry(entry)
        size += len(json.dumps(bounded))
        if size > MAX_PROBLEM_ERRORS_BYTES:
            break
        kept.append(bounded)
    return kept


def internal_error_response() -> JSONResponse:
    return problem_response(
        status=500, code=ErrorCode.INTERNAL_ERROR, title=AppError.title, detail=AppError.detail
    )


def problem_of(exc: AppError) -> JSONResponse:
    """The problem+json answer for one of our errors (also outside a route, from middleware)."""
    return problem_response(
        status=exc.status_code,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def handle_app_error(_request: Request, exc: AppError) -> JSONResponse:
    return problem_of(exc)


def validation_error_entries(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Location, message and type of each error; never the input, which may be a password."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "code": error.get("type", "invalid")}
        for error in exc.errors()
    ]


async def handle_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem_response(
        status=ValidationFailed.status_code,
        code=ValidationFailed.code,
        title=ValidationFailed.title,
        detail=ValidationFailed.detail,
        errors=validation_error_entries(exc),
    )


def is_lock_wait_failure(error: BaseException) -> bool:
    """A statement stopped because it waited too long for a lock (lock_timeout), or would have
    waited forever (a deadlock): what it needed is busy, the database itself is fine."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    return isinstance(cause, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected)


# psycopg's own errors reach the handlers unwrapped from the COPY of an import (the raw driver connection).
DATABASE_FAILURES = (
    sa_exc.TimeoutError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def problem_for_failure(exc: BaseException) -> AppError | None:
    """What the handlers below answer for a failure of the server's conditions, for work done
    outside a request (an import job keeps it on its record): None for anything else (a 500)."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_FULL_ERRNOS:
        return InsufficientStorage()
    if isinstance(exc, DATABASE_FAILURES):
        return ResourceBusy() if is_lock_wait_failure(exc) else DatabaseUnavailable()
    return None


async def handle_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A database that is down, overloaded (pool exhausted) or locked is a 503, not a crash; a lock
    some other transaction holds past the lock timeout is 409 (busy), with Retry-After either way."""
    if is_lock_wait_failure(exc):
        logger.info("lock wait timed out", extra={"event": "lock_busy"})
        return await handle_app_error(request, ResourceBusy())
    database_outage.request_refused(exc)
    return await handle_app_error(request, DatabaseUnavailable())


async def handle_os_error(request: Request, exc: OSError) -> JSONResponse:
    """A full disk is the server's condition, not a crash: 507, after the writer has removed what it
    began (the storage's temporary files go when their block is left, before this runs)."""
    if exc.errno not in STORAGE_FULL_ERRNOS:
        raise exc  # the last-resort handler logs it and answers 500
    logger.warning("storage full", exc_info=exc)
    return await handle_app_error(request, InsufficientStorage())


# FastAPI raises 400 only when it cannot parse a body at all (bad encoding, broken multipart).
HTTP_STATUS_CODES = {
    400: ErrorCode.MALFORMED_BODY,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
}


async def handle_http_exception(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else f"{phrase}."
    return problem_response(
        status=exc.status_code,
        code=HTTP_STATUS_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR),
        title=phrase,
        detail=detail,
        headers=exc.headers,
    )


async def handle_replay(_request: Request, replay: IdempotentReplay) -> Response:
    return Response(
        content=replay.body,
        status_code=replay.status,
        headers={**replay.headers, "Idempotent-Replayed": "true"},
    )


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(IdempotentReplay, handle_replay)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    for database_failure in DATABASE_FAILURES:
        app.add_exception_handler(database_failure, handle_database_unavailable)
    app.add_exception_handler(OSError, handle_os_error)


def problem_example(error: type[AppError]) -> dict[str, Any]:
    example: dict[str, Any] = {
        "type": problem_type(error.code),
        "title": error.title,
        "status": error.status_code,
        "detail": error.detail,
        "code": error.code,
        "request_id": "6f1c2f0d9a1e4f7c8b7a0d3e2c1b0a99",
    }
    if issubclass(error, ValidationFailed):
        example["errors"] = [
            {"loc": ["body", "email"], "msg": "value is not a valid email address", "code": "value_error"}
        ]
        example["errors_total"] = 1
        example["errors_truncated"] = False
    return example


def problem_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each error status it answers with, an example per code."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        response = responses.setdefault(
            error.status_code,
            {"model": Problem, "description": "", "content": {"application/json": {"examples": {}}}},
        )
        response["description"] += f"{'; ' if response['description'] else ''}`{error.code}`: {error.detail}"
        response["content"]["application/json"]["examples"][error.code] = {
            "summary": error.detail,
            "value": problem_example(error),
        }
    return responses
