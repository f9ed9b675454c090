"""Request ids, security headers, the access log, JSON log lines and CORS."""

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from src.app import create_app
from src.config import Settings
from src.logging import JsonFormatter, bind_request_id, current_request_id, unbind_request_id
from src.middleware import DOCS_CSP, REDOC_CSP, RequestMiddleware
from tests import asgi
from tests.asgi import OneRequest, assert_logged_as_a_hang_up
from tests.conftest import assert_problem

HEALTH = "/api/v1/health"
FRESH_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "studybase.access"]


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog formatting as production does, at the time of the call, so lines carry the request id."""
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.INFO, logger="studybase.access")
    return caplog


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through JsonFormatter into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("studybase.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture(scope="module")
def cors_app() -> FastAPI:
    return create_app(Settings(_env_file=None, CORS_ORIGINS="https://a.example"))


@pytest.fixture(scope="module")
def any_origin_app() -> FastAPI:
    return create_app(Settings(_env_file=None, CORS_ORIGINS="*"))


@pytest.fixture
async def cors_client(cors_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_for(cors_app):
        yield http


@pytest.fixture
async def any_origin_client(any_origin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_for(any_origin_app):
        yield http


# Request id


async def test_request_id_is_generated_when_absent(client):
    response = await client.get(HEALTH)

    assert FRESH_REQUEST_ID.match(response.headers["x-request-id"])


async def test_generated_request_ids_differ_between_requests(client):
    first = await client.get(HEALTH)
    second = await client.get(HEALTH)

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_sane_client_request_id_is_echoed(client):
    response = await client.get(HEALTH, headers={"X-Request-ID": "abc-123"})

    assert response.headers["x-request-id"] == "abc-123"


async def test_client_request_id_of_128_characters_is_echoed(client):
    request_id = "a" * 128

    response = await client.get(HEALTH, headers={"X-Request-ID": request_id})

    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["a" * 129, "abc 123", "<script>alert(1)</script>", "id;rm", "ü-nicode"],
    ids=["too-long", "space", "markup", "semicolon", "non-ascii"],
)
async def test_insane_client_request_id_is_replaced(client, request_id):
    response = await client.get(HEALTH, headers={"X-Request-ID": request_id.encode()})

    assert FRESH_REQUEST_ID.match(response.headers["x-request-id"])


async def test_replaced_request_id_is_the_one_in_the_error_body(client):
    response = await client.get("/api/v1/missing", headers={"X-Request-ID": "<script>"})

    assert response.status_code == 404
    assert FRESH_REQUEST_ID.match(response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


# Security headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", HEALTH, 200), ("GET", "/api/v1/missing", 404), ("POST", "/api/v1/auth/register", 422)],
)
async def test_security_headers_are_on_every_response(client, method, path, status):
    response = await client.request(method, path)

    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


async def test_api_responses_get_a_csp_that_allows_nothing(client):
    response = await client.get(HEALTH)

    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "cdn.jsdelivr.net" not in csp


@pytest.mark.parametrize(("path", "csp"), [("/docs", DOCS_CSP), ("/redoc", REDOC_CSP)])
async def test_docs_pages_allow_scripts_from_the_app_only(client, path, csp):
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-security-policy"] == csp
    directives = dict(directive.split(" ", 1) for directive in csp.split("; "))
    assert directives["script-src"] == "'self'"
    assert "https:" not in csp
    assert "frame-ancestors 'none'" in csp


async def test_only_the_redoc_page_allows_inline_styles():
    assert "'unsafe-inline'" not in DOCS_CSP
    assert "style-src 'self' 'unsafe-inline'" in REDOC_CSP


async def test_openapi_schema_is_not_cacheable(client):
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


# Access log


async def test_access_log_has_one_line_per_request(client, access_log):
    await client.get(HEALTH)
    await client.get("/api/v1/missing")

    records = access_records(access_log)
    assert [(record.method, record.path, record.status) for record in records] == [
        ("GET", HEALTH, 200),
        ("GET", "/api/v1/missing", 404),
    ]


async def test_access_log_line_has_duration_and_no_user_when_anonymous(client, access_log):
    await client.get(HEALTH)

    (record,) = access_records(access_log)
    assert isinstance(record.duration_ms, float)
    assert record.duration_ms >= 0
    assert record.user_id is None
    assert record.client == "203.0.113.7"


async def test_access_log_line_carries_the_request_id(client, access_log):
    await client.get(HEALTH, headers={"X-Request-ID": "trace-me-1"})

    lines = [json.loads(line) for line in access_log.text.splitlines()]
    (line,) = [line for line in lines if line["logger"] == "studybase.access"]
    assert line["request_id"] == "trace-me-1"
    assert line["method"] == "GET"
    assert line["path"] == HEALTH
    assert line["status"] == 200


async def test_access_log_names_the_authenticated_user(client, access_log, make_user, auth_headers):
    user = await make_user()
    headers = await auth_headers(user)
    access_log.clear()

    response = await client.get("/api/v1/auth/me", headers=headers)

    assert response.status_code == 200
    (record,) = access_records(access_log)
    assert record.user_id == str(user.id)


async def test_access_log_has_no_user_when_the_token_is_rejected(client, access_log):
    response = await client.get("/api/v1/auth/me", headers={"Authorization": "Bearer forged"})

    assert response.status_code == 401
    (record,) = access_records(access_log)
    assert record.status == 401
    assert record.user_id is None


# JSON log lines


def test_json_formatter_writes_one_object_per_line_with_the_standard_fields(json_log):
    logger, stream = json_log
    token = bind_request_id("req-7")
    try:
        logger.warning("imported %d rows", 12)
    finally:
        unbind_request_id(token)

    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "studybase.test-json"
    assert entry["msg"] == "imported 12 rows"
    assert entry["request_id"] == "req-7"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", entry["ts"])


def test_json_formatter_request_id_is_null_outside_a_request(json_log):
    logger, stream = json_log

    logger.info("starting")

    assert json.loads(stream.getvalue())["request_id"] is None


def test_json_formatter_adds_extra_fields_and_stringifies_odd_values(json_log):
    logger, stream = json_log

    logger.info("imported", extra={"study_id": 7, "file": io.BytesIO})

    entry = json.loads(stream.getvalue())
    assert entry["study_id"] == 7
    assert entry["file"] == str(io.BytesIO)
    assert "args" not in entry
    assert "levelno" not in entry


def test_json_formatter_keeps_a_multiline_message_on_one_line(json_log):
    logger, stream = json_log

    logger.info("first line\nsecond line")

    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["msg"] == "first line\nsecond line"


def test_json_formatter_includes_the_traceback_of_a_logged_exception(json_log):
    logger, stream = json_log

    try:
        raise ValueError("bad row")
    except ValueError:
        logger.exception("import failed")

    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert "Traceback" in entry["exc_info"]
    assert "ValueError: bad row" in entry["exc_info"]


def test_json_formatter_has_no_exc_info_without_an_exception(json_log):
    logger, stream = json_log

    logger.error("plain error")

    assert "exc_info" not in json.loads(stream.getvalue())


# CORS


async def test_cors_allowed_origin_gets_the_allow_origin_header(cors_client):
    response = await cors_client.get(HEALTH, headers={"Origin": "https://a.example"})

    assert response.headers["access-control-allow-origin"] == "https://a.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


async def test_cors_other_origin_gets_no_allow_origin_header(cors_client):
    response = await cors_client.get(HEALTH, headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_from_the_allowed_origin_is_answered(cors_client):
    response = await cors_client.options(
        HEALTH,
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://a.example"
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_cors_preflight_from_another_origin_is_refused_as_a_problem(cors_client):
    response = await cors_client.options(
        HEALTH, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "CORS_REJECTED"
    assert "origin" in response.json()["detail"]
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_cors_any_origin_never_allows_credentials(any_origin_client):
    response = await any_origin_client.get(HEALTH, headers={"Origin": "https://b.example"})

    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers.get("access-control-allow-credentials") != "true"


async def test_without_cors_origins_no_cross_origin_access(client):
    response = await client.get(HEALTH, headers={"Origin": "https://a.example"})

    assert "access-control-allow-origin" not in response.headers


# Paths with control characters (issue 11, item 2)


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%09", "%00", "%7F", "%C2%85"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/auth/register"), ("POST", "/api/v1/auth/token"), ("GET", HEALTH)],
)
async def test_a_path_with_a_control_character_is_never_served(client, method, path, suffix):
    response = await client.request(method, path + suffix, json={})

    assert_problem(response, 404, "NOT_FOUND")


async def test_a_control_character_inside_a_path_is_refused_too(client):
    response = await client.get("/api/v1/%0Ahealth")

    assert_problem(response, 404, "NOT_FOUND")


# Redirects (issue 11, item 10)


async def test_a_trailing_slash_is_a_404_problem_not_a_redirect_to_the_clients_host(client):
    response = await client.get("/api/v1/auth/me/", headers={"Host": "evil.example"})

    assert_problem(response, 404, "NOT_FOUND")
    assert "location" not in response.headers


# Request ids never outlive their request (issue 11, item 9)


class RequestIdsSeen(logging.Handler):
    """The request id bound when each record is emitted, as JsonFormatter would write it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), current_request_id()))


async def test_server_callbacks_registered_during_a_request_log_without_its_id(app):
    """uvicorn resumes reading a paused large body and arms its keep-alive timer from inside
    receive and send; asyncio runs those callbacks in the context current when they were
    registered, and they log for whatever comes next on the connection."""
    loop = asyncio.get_running_loop()
    server_log = logging.getLogger("studybase.test-server")
    handler = RequestIdsSeen()
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    callbacks_ran = asyncio.Event()
    body_sent = False

    async def receive():
        nonlocal body_sent
        loop.call_soon(server_log.info, "after resume_reading")
        if body_sent:
            await asyncio.Event().wait()
        body_sent = True
        return {"type": "http.request", "body": b'{"refresh_token": "x"}', "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            loop.call_soon(server_log.info, "keep-alive timeout")
            loop.call_soon(callbacks_ran.set)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/auth/refresh",
        "raw_path": b"/api/v1/auth/refresh",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"x-request-id", b"the-large-body"),
            (b"host", b"t"),
        ],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 80),
    }
    try:
        await app(scope, receive, send)
        await asyncio.wait_for(callbacks_ran.wait(), timeout=5)
    finally:
        server_log.removeHandler(handler)

    # A write is watched for its client leaving once its body is in: receive is called again.
    assert set(handler.seen) == {("after resume_reading", None), ("keep-alive timeout", None)}


async def test_uvicorn_logs_nothing_with_the_id_of_an_earlier_large_body_request(app):
    """The issue's case through a real uvicorn: a large body (which pauses and resumes reading),
    then a broken request on the same connection, which uvicorn logs itself."""
    handler = RequestIdsSeen()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(handler)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"refresh_token": "' + b"a" * 900_000 + b'"}'
        writer.write(
            b"POST /api/v1/auth/refresh HTTP/1.1\r\nHost: t\r\nX-Request-ID: the-large-body\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 422")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"BROKEN \x00 HTTP/1.1\r\n\r\n")
        await reader.read()
        writer.close()
    finally:
        server.should_exit = True
        await serving
        uvicorn_log.removeHandler(handler)

    assert ("Invalid HTTP request received.", None) in handler.seen
    assert all(request_id is None for _, request_id in handler.seen)


# A client that hangs up (issue 16, finding 9)


request_log = asgi.request_log


async def test_a_client_gone_mid_json_body_is_a_hang_up_not_a_500(app, request_log):
    request = OneRequest(body_pieces=[b'{"refresh_token": "abc'], hang_up_after_body=True)
    headers = {"Content-Type": "application/json", "X-Request-ID": "json-left"}

    await request(app, "POST", "/api/v1/auth/refresh", headers=headers)

    assert request.sent == []
    assert_logged_as_a_hang_up(request_log, "json-left")


async def left_mid_body(_scope, receive, _send) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    raise ClientDisconnect


async def left_in_a_task_group(scope, receive, send) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(left_mid_body, scope, receive, send)


async def send_fails(_scope, _receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"never", "more_body": False})


@pytest.mark.parametrize(
    "inner_app", [left_mid_body, left_in_a_task_group], ids=["alone", "in-an-exception-group"]
)
async def test_client_disconnect_raised_by_the_app_is_logged_as_a_hang_up(request_log, inner_app):
    request = OneRequest(body_pieces=[b"{"], hang_up_after_body=True)

    await request(RequestMiddleware(inner_app), "POST", "/x", headers={"X-Request-ID": "left"})

    assert request.sent == []
    assert_logged_as_a_hang_up(request_log, "left")


async def test_a_send_that_fails_because_the_client_left_is_logged_as_a_hang_up(request_log):
    request = OneRequest(spec_version="2.4")
    request.gone.set()  # before the response: an ASGI 2.4 server's send raises OSError

    await request(RequestMiddleware(send_fails), "GET", "/x", headers={"X-Request-ID": "left"})

    assert request.sent == []
    assert_logged_as_a_hang_up(request_log, "left")


async def test_a_crash_after_the_client_left_is_still_an_error(request_log):
    async def crashes_after_the_hang_up(scope, receive, send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        raise ValueError("a bug")

    request = OneRequest(body_pieces=[b"{"], hang_up_after_body=True)

    await request(RequestMiddleware(crashes_after_the_hang_up), "POST", "/x")

    records = [(record.name, record.levelname, record.getMessage()) for record in request_log.records]
    assert ("studybase.errors", "ERROR", "unhandled error") in records
    assert "client_disconnected" not in [message for _, _, message in records]
    (access,) = access_records(request_log)
    assert access.status == 500
