"""What nginx alone guarantees against a hostile client (issue 11): the strict limit under every
spelling of a sign-in route, preflights under the general limit, connections one address cannot
exhaust, only the configured host names, and problem+json for every answer nginx makes itself.
"""

import resource
import selectors
import socket
import time
import uuid

import httpx
import pytest

from tests.conftest import assert_problem
from tests.stack.conftest import TRUSTED_CLIENT_ADDRESS, Stack, fresh_client_address
from tests.stack.test_stack import assert_headers_once

pytestmark = pytest.mark.stack

SIGN_IN_ROUTES = (
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/register",
    "/api/v1/auth/me/password",
    "/api/v1/auth/password-reset",
    "/api/v1/auth/password-reset/confirm",
    "/api/v1/auth/verify-email",
    "/api/v1/auth/verify-email/resend",
)
STRICT_BUDGET = 6  # one request plus a burst of 5
SIGN_IN_RATE_PER_SECOND = 10 / 60
PER_ADDRESS_CONNECTIONS = 32  # default.conf's limit_conn


def spellings(route: str) -> list[str]:
    """The route as nginx might see it and the API might still serve it (or a cheap redirect to it)."""
    control_suffixes = [route + suffix for suffix in ("%0A", "%0a", "%0D", "%09", "%00")]
    doubled = [route.replace("/api/", "/api//"), route.replace("/auth/", "/auth//")]
    slashes = [route + "/", route + "//", *doubled]
    return [route, *control_suffixes, *slashes, route.upper()]


def raw_exchange(stack: Stack, request: bytes, *, address: str | None = None) -> httpx.Response:
    """Sends bytes no HTTP client library would send and reads the answer (the server closes)."""
    with socket.create_connection(
        ("127.0.0.1", stack.nginx_port), timeout=10, source_address=(address or fresh_client_address(), 0)
    ) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


def reached_the_api(stack: Stack, response: httpx.Response) -> bool:
    """By nginx's log line for the response's request id (nginx's own when it refused the request
    before reading the header that carried ours)."""
    return stack.access_log_entry(response.headers["x-request-id"])["upstream_status"] != ""


# Item 2 and 6: the strict limit on every spelling of sign-in, refresh, registration and password change


@pytest.mark.parametrize("route", SIGN_IN_ROUTES)
def test_no_spelling_of_a_sign_in_route_escapes_the_strict_limit(client_from, stack: Stack, route):
    http = client_from()
    started = time.monotonic()
    sent = [
        (
            path,
            http.post(
                path, json={"email": f"s{uuid.uuid4().hex[:12]}@example.org", "password": "passphrase"}
            ),
        )
        for _ in range(2)
        for path in spellings(route)
    ]
    refilled = int((time.monotonic() - started) * SIGN_IN_RATE_PER_SECOND)

    answers = [(path, response, reached_the_api(stack, response)) for path, response in sent]
    reached = [path for path, _, passed in answers if passed]
    assert len(reached) <= STRICT_BUDGET + refilled, reached
    for path, response, passed in answers:
        if "%" in path:  # a control character: refused before any route is chosen
            assert_problem(response, 400, "BAD_REQUEST")
            assert not passed
        elif not passed:
            assert_problem(response, 429, "RATE_LIMITED")
            assert response.headers["retry-after"] == "60"


def test_control_characters_in_any_path_are_refused_by_nginx(http, stack: Stack):
    for path in ("/api/v1/health%0A", "/api/v1/auth/me%0D", "/docs%00", "/api/v1/%7F/health"):
        response = http.get(path)

        assert_problem(response, 400, "BAD_REQUEST")
        assert_headers_once(response)
        assert not reached_the_api(stack, response)


# Item 5: preflights do not spend the sign-in budget, but the general one


def test_cors_preflights_to_sign_in_fall_under_the_general_limit(http):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}

    statuses = [http.options("/api/v1/auth/token", headers=preflight).status_code for _ in range(60)]

    assert 429 in statuses
    assert statuses.index(429) >= STRICT_BUDGET  # the general budget (1 + 40), not the sign-in one


# Item 3: one address cannot take every connection


def allow_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_thousands_of_half_sent_requests_from_one_address_do_not_lock_others_out(http, stack: Stack):
    """More than the old 2 workers x 1024 connections, each a request line that never ends."""
    half_sent = 2_200
    allow_open_files(half_sent + 512)
    attacker = fresh_client_address()
    held: list[socket.socket] = []
    try:
        for _ in range(half_sent):
            connection = socket.create_connection(
                ("127.0.0.1", stack.nginx_port), timeout=5, source_address=(attacker, 0)
            )
            held.append(connection)
            connection.sendall(b"GET /api/v1/hea")

        response = http.get("/api/v1/health", timeout=5)
    finally:
        for connection in held:
            connection.close()

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def hold_requests(stack: Stack, address: str, count: int) -> tuple[list[socket.socket], list[bytes]]:
    """`count` requests whose header is complete and whose promised body never comes; returns the
    connections and the answers that arrived within two seconds (nginx refuses at once)."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(
            ("127.0.0.1", stack.nginx_port), timeout=5, source_address=(address, 0)
        )
        connection.sendall(
            b"POST /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        connections.append(connection)
    answers = []
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            selector.register(connection, selectors.EVENT_READ)
        deadline = time.monotonic() + 2
        while (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=remaining):
                answers.append(key.fileobj.recv(65536))
                selector.unregister(key.fileobj)
    return connections, answers


def test_one_address_gets_a_bounded_number_of_requests_in_progress(stack: Stack, http):
    connections, answers = hold_requests(stack, fresh_client_address(), PER_ADDRESS_CONNECTIONS + 8)
    try:
        other_client = http.get("/api/v1/health")
    finally:
        for connection in connections:
            connection.close()

    assert len(answers) == 8
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 429 ")
        assert b'"code":"RATE_LIMITED"' in answer
    assert other_client.status_code == 200


def test_a_trusted_load_generator_is_exempt_from_the_limits(stack: Stack, client_from):
    connections, answers = hold_requests(stack, TRUSTED_CLIENT_ADDRESS, PER_ADDRESS_CONNECTIONS + 8)
    for connection in connections:
        connection.close()
    http = client_from(TRUSTED_CLIENT_ADDRESS)
    sign_ins = [
        http.post("/api/v1/auth/token", data={"username": f"bench{n}@example.org", "password": "a guess"})
        for n in range(STRICT_BUDGET + 4)
    ]

    assert answers == []
    assert {response.status_code for response in sign_ins} == {401}


# Item 8: HTTP/1.0 without Host


def test_an_http_1_0_health_check_without_host_gets_the_health_json(stack: Stack):
    for path in ("/api/v1/health", "/healthz"):
        response = raw_exchange(stack, f"GET {path} HTTP/1.0\r\n\r\n".encode())

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"status": "ok"}


def test_a_request_without_host_never_gets_a_location_naming_the_upstream(stack: Stack):
    # The app makes no redirects at all; nothing it answers can point at the internal address.
    response = raw_exchange(stack, b"GET /api/v1/auth/me/ HTTP/1.0\r\n\r\n")

    assert_problem(response, 404, "NOT_FOUND")
    assert "location" not in response.headers


# Item 10: only the configured server names


def test_an_unknown_host_gets_421_problem_and_no_redirect(http):
    for path in ("/api/v1/health", "/api/v1/auth/me/"):
        response = http.get(path, headers={"Host": "evil.example"}, follow_redirects=False)

        assert_problem(response, 421, "UNKNOWN_HOST")
        assert "location" not in response.headers
        assert_headers_once(response)


def test_an_absolute_request_line_cannot_smuggle_a_host(stack: Stack):
    close = b"Connection: close\r\n\r\n"
    other_host = raw_exchange(
        stack, b"GET http://evil.example/api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + close
    )
    other_header = raw_exchange(
        stack, b"GET http://127.0.0.1/api/v1/auth/me/ HTTP/1.1\r\nHost: evil.example:666\r\n" + close
    )

    assert_problem(other_host, 421, "UNKNOWN_HOST")
    assert_problem(other_header, 404, "NOT_FOUND")
    assert "location" not in other_header.headers


def test_health_probes_by_any_host_still_get_liveness(http):
    response = http.get("/healthz", headers={"Host": "10.0.0.7"})

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# Item 13: nginx's own answers are problem+json with the security headers


def test_nginx_refusals_of_malformed_requests_are_problem_json(stack: Stack, http):
    without_host = raw_exchange(stack, b"GET /api/v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
    garbage = raw_exchange(stack, b"NOT A REQUEST\r\n\r\n")
    long_uri = http.get("/api/v1/health?q=" + "a" * 20_000)
    long_header = http.get("/api/v1/health", headers={"X-Padding": "a" * 20_000})
    internal_page = http.get("/_studybase_problem/bad-request")

    for response, status, code in (
        (without_host, 400, "BAD_REQUEST"),
        (garbage, 400, "BAD_REQUEST"),
        (long_uri, 414, "URI_TOO_LONG"),
        (long_header, 431, "HEADERS_TOO_LARGE"),
        (internal_page, 404, "NOT_FOUND"),
    ):
        assert_problem(response, status, code)
        assert_headers_once(response)
        assert response.headers["server"] == "nginx"


def test_no_answer_through_nginx_is_uvicorns_plain_text(stack: Stack):
    """Requests nginx lets through that a stricter HTTP parser than nginx's might refuse."""
    close = b"Connection: close\r\n\r\n"
    requests = (
        b"GET /api/v1/health HTTP/1.0\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Odd: a\x01b\x0bc\x7f\r\n" + close,
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: caf\xc3\xa9\r\n" + close,
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1.\r\n" + close,
        b"GET /api/v1/health HTTP/1.1\r\nHost: LOCALHOST\r\n" + close,
        b"GET /api/v1/health?%00=%0A HTTP/1.1\r\nHost: 127.0.0.1\r\n" + close,
    )
    for request in requests:
        response = raw_exchange(stack, request)

        assert response.status_code == 200, (request, response.content)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/h\xc3\xa9alth HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"GET /api/v1/health?q=\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"GET /healthz?q=\xff HTTP/1.1\r\nHost: 10.0.0.7\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: a\x0bb\r\n",
        b"GET /api/v1/auth/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer a\x01b\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.7\r\nAccept: a\x7f\r\n",
    ],
    ids=[
        "raw-utf8-path",
        "raw-byte-query",
        "raw-byte-probe",
        "vt-user-agent",
        "ctl-authorization",
        "del-probe",
    ],
)
def test_what_the_apis_http_parser_would_refuse_is_refused_by_nginx(stack: Stack, request_bytes):
    """A raw byte in the target, a control character in a header the API is given: the API's
    parser would answer with a plain-text 400 of its own."""
    response = raw_exchange(stack, request_bytes + b"Connection: close\r\n\r\n")

    assert_problem(response, 400, "BAD_REQUEST")
    assert_headers_once(response)
    assert not reached_the_api(stack, response)
