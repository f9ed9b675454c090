"""Every error, ours or the framework's or an unexpected crash, has the same problem+json shape."""

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError

from src.app import create_app
from src.auth.constants import Role
from src.auth.models import User
from src.exceptions import (
    AppError,
    Conflict,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TooManyRequests,
    UnprocessableEntity,
)
from src.logging import JsonFormatter, database_outage
from tests.conftest import assert_problem

REGISTER = "/api/v1/auth/register"


class ThingNotFound(NotFound):
    code = "THING_NOT_FOUND"
    detail = "There is no such thing."


class SlowDown(TooManyRequests):
    code = "SLOW_DOWN"


class WhoAreYou(NotAuthenticated):
    code = "WHO_ARE_YOU"


@pytest.fixture(scope="module")
def crashing_app() -> FastAPI:
    """The real app plus throwaway routes that raise each kind of error."""
    app = create_app()

    @app.get("/test/thing")
    async def missing_thing() -> None:
        raise ThingNotFound

    @app.get("/test/thing-with-detail")
    async def missing_thing_with_detail() -> None:
        raise ThingNotFound("Thing 7 was deleted.")

    @app.get("/test/conflicting-items")
    async def conflicting_items() -> None:
        raise Conflict(errors=[{"loc": ["body", 0], "msg": "clashes with item 2", "code": "clash"}])

    @app.get("/test/throttled")
    async def throttled() -> None:
        raise SlowDown(retry_after_seconds=42)

    @app.get("/test/throttled-now")
    async def throttled_now() -> None:
        raise SlowDown(retry_after_seconds=0)

    @app.get("/test/anonymous")
    async def anonymous() -> None:
        raise WhoAreYou

    @app.get("/test/bare-app-error")
    async def bare_app_error() -> None:
        raise AppError

    @app.get("/test/http-exception")
    async def http_exception() -> None:
        raise HTTPException(status_code=409, detail="Already there.")

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError("secret-detail")

    return app


@pytest.fixture
async def crash_client(crashing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_unknown_route_is_404_not_found(client):
    response = await client.get("/api/v1/no-such-thing")

    body = assert_problem(response, 404, "NOT_FOUND")
    assert body["title"] == "Not Found"
    assert body["type"] == "urn:studybase:problem:not-found"


async def test_wrong_method_is_405_and_keeps_the_allow_header(client):
    response = await client.delete("/api/v1/health")

    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_validation_error_lists_each_problem_with_loc_msg_and_code(client):
    response = await client.post(REGISTER, json={"email": "ada@example.org", "full_name": "Ada"})

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"] == [{"loc": ["body", "password"], "msg": "Field required", "code": "missing"}]


async def test_validation_error_never_echoes_the_invalid_password(client):
    response = await client.post(
        REGISTER, json={"email": "ada@example.org", "password": "s3cr3t!", "full_name": "Ada"}
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert [error["loc"] for error in body["errors"]] == [["body", "password"]]
    assert "s3cr3t!" not in response.text


async def test_validation_error_never_echoes_the_other_fields(client):
    payload = {"email": "not-an-email", "password": "a perfectly fine password", "full_name": "Ada"}

    response = await client.post(REGISTER, json=payload)

    assert_problem(response, 422, "VALIDATION_ERROR")
    assert "a perfectly fine password" not in response.text
    assert "not-an-email" not in response.text


async def test_malformed_json_body_is_422_validation_error(client):
    response = await client.post(
        REGISTER, content=b'{"email": "ada@example.org", ', headers={"Content-Type": "application/json"}
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert [error["code"] for error in body["errors"]] == ["json_invalid"]


async def test_app_error_subclass_renders_its_status_code_title_and_detail(crash_client):
    response = await crash_client.get("/test/thing")

    body = assert_problem(response, 404, "THING_NOT_FOUND")
    assert body["title"] == "Not found"
    assert body["detail"] == "There is no such thing."
    assert body["type"] == "urn:studybase:problem:thing-not-found"
    assert "errors" not in body


async def test_app_error_detail_given_when_raised_replaces_the_default(crash_client):
    response = await crash_client.get("/test/thing-with-detail")

    body = assert_problem(response, 404, "THING_NOT_FOUND")
    assert body["detail"] == "Thing 7 was deleted."


async def test_app_error_headers_are_sent(crash_client):
    response = await crash_client.get("/test/throttled")

    assert_problem(response, 429, "SLOW_DOWN")
    assert response.headers["retry-after"] == "42"


async def test_too_many_requests_never_asks_to_retry_after_less_than_a_second(crash_client):
    response = await crash_client.get("/test/throttled-now")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"


async def test_not_authenticated_asks_for_a_bearer_token(crash_client):
    response = await crash_client.get("/test/anonymous")

    assert_problem(response, 401, "WHO_ARE_YOU")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_bare_app_error_is_a_500_internal_error(crash_client):
    response = await crash_client.get("/test/bare-app-error")

    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert body["title"] == "Internal server error"


async def test_http_exception_raised_in_a_route_keeps_its_status_and_detail(crash_client):
    response = await crash_client.get("/test/http-exception")

    body = assert_problem(response, 409, "HTTP_ERROR")
    assert body["title"] == "Conflict"
    assert body["detail"] == "Already there."


async def test_unexpected_exception_is_a_500_without_traceback_or_message(crash_client):
    response = await crash_client.get("/test/crash")

    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert body["detail"] == "The server could not complete the request."
    assert "secret-detail" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


async def test_unexpected_exception_response_has_the_security_headers(crash_client):
    response = await crash_client.get("/test/crash")

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_unexpected_exception_is_logged_with_traceback_and_request_id(crash_client, caplog):
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.ERROR, logger="studybase.errors")

    response = await crash_client.get("/test/crash", headers={"X-Request-ID": "crash-42"})

    assert response.status_code == 500
    records = [record for record in caplog.records if record.name == "studybase.errors"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "secret-detail"
    lines = [json.loads(line) for line in caplog.text.splitlines()]
    error_line = next(line for line in lines if line["logger"] == "studybase.errors")
    assert error_line["request_id"] == "crash-42"
    assert error_line["path"] == "/test/crash"
    assert "Traceback" in error_line["exc_info"]
    assert "RuntimeError: secret-detail" in error_line["exc_info"]


async def test_unexpected_exception_is_logged_once_in_the_access_log_as_500(crash_client, caplog):
    caplog.set_level(logging.INFO, logger="studybase.access")

    await crash_client.get("/test/crash")

    records = [record for record in caplog.records if record.name == "studybase.access"]
    assert [(record.path, record.status) for record in records] == [("/test/crash", 500)]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotAuthenticated(), 401, "NOT_AUTHENTICATED"),
        (PermissionDenied(), 403, "FORBIDDEN"),
        (NotFound(), 404, "NOT_FOUND"),
        (Conflict(), 409, "CONFLICT"),
        (UnprocessableEntity(), 422, "VALIDATION_ERROR"),
        (TooManyRequests(retry_after_seconds=5), 429, "RATE_LIMITED"),
        (ServiceUnavailable(), 503, "SERVICE_UNAVAILABLE"),
    ],
)
def test_each_base_error_has_a_code_of_its_own_kind(error, status, code):
    assert (error.status_code, error.code) == (status, code)


@pytest.mark.parametrize(
    "failure",
    [
        sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
        sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
    ],
)
async def test_an_unavailable_database_is_503_problem_not_500(failure, caplog):
    app = create_app()

    @app.get("/test/database-down")
    async def database_down() -> None:
        raise failure

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/test/database-down")

    body = assert_problem(response, 503, "DATABASE_UNAVAILABLE")
    assert int(response.headers["retry-after"]) > 0
    assert "QueuePool" not in response.text
    assert "server closed" not in response.text
    assert body["detail"] == "The database is not answering; try again shortly."


async def test_an_unparseable_body_is_400_malformed_body(client):
    response = await client.post(
        REGISTER, content=b'{"email": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 400, "MALFORMED_BODY")


async def test_database_errors_never_show_the_values_they_failed_on(db, make_user):
    user = await make_user()
    db.add(User(email=user.email, full_name="Copy", password_hash="$argon2id$SECRET-HASH", role=Role.VIEWER))

    with pytest.raises(IntegrityError) as failure:
        await db.commit()

    assert "SECRET-HASH" not in str(failure.value)
    assert "parameters hidden" in str(failure.value)


async def test_an_app_error_with_per_item_errors_lists_them(crash_client):
    response = await crash_client.get("/test/conflicting-items")

    body = assert_problem(response, 409, "CONFLICT")
    assert body["errors"] == [{"loc": ["body", 0], "msg": "clashes with item 2", "code": "clash"}]


async def test_an_app_error_without_per_item_errors_has_no_errors_key(crash_client):
    response = await crash_client.get("/test/thing")

    assert "errors" not in assert_problem(response, 404, "THING_NOT_FOUND")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_database_outage_logs_one_warning_then_one_info_with_the_count(monkeypatch):
    monkeypatch.setattr(database_outage, "since", None)
    monkeypatch.setattr(database_outage, "refused", 0)
    app = create_app()

    @app.get("/test/database-down")
    async def database_down() -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    seen = Records()
    database_outage.logger.addHandler(seen)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for _ in range(7):
                assert (await http.get("/test/database-down")).status_code == 503
            # The database answers again: a request uses (and hands back) a pooled connection.
            assert (await http.get("/api/v1/health/ready")).status_code == 200
    finally:
        database_outage.logger.removeHandler(seen)

    warning, info = seen.records
    assert (warning.levelname, warning.getMessage()) == ("WARNING", "database_unavailable")
    assert warning.exc_info is None  # no traceback
    assert warning.detail.startswith("(builtins.Exception) server closed the connection")
    assert (info.levelname, info.getMessage(), info.refused_requests) == ("INFO", "database_available", 7)
