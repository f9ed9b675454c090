"""Through nginx to gunicorn to PostgreSQL, as real processes (see conftest.py).

Each test speaks from its own loopback address, so the per-address rate limits of one test
never spend another's budget.
"""

import itertools
import os
import re
import signal
import string
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from scripts import local_stack
from tests.conftest import assert_problem, bearer
from tests.stack.conftest import (
    STACK_MAX_UPLOAD_MB,
    STACK_PASSWORD,
    Stack,
    free_port,
    fresh_client_address,
    join_by_invitation,
    register_and_sign_in,
    researcher_with_study,
)

pytestmark = pytest.mark.stack

MB = 1024 * 1024
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
    "cross-origin-opener-policy",
    "permissions-policy",
    "cache-control",
)


def assert_headers_once(response: httpx.Response) -> None:
    for name in (*SECURITY_HEADERS, "x-request-id"):
        assert len(response.headers.get_list(name)) == 1, (name, response.headers.get_list(name))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def flood_until_429(http: httpx.Client, send, limit: int = 40) -> list[httpx.Response]:
    responses = []
    for attempt in range(limit):
        responses.append(send(attempt))
        if responses[-1].status_code == 429 and responses[-1].json()["code"] == "RATE_LIMITED":
            break
    return responses


def worker_pids(master_pid: int) -> set[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


def test_register_token_me_refresh_logout_through_nginx(http):
    tokens = register_and_sign_in(http, "flow@example.org")

    me = http.get("/api/v1/auth/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["email"] == "flow@example.org"

    refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    fresh = refreshed.json()
    assert http.get("/api/v1/auth/me", headers=bearer(fresh)).status_code == 200

    assert http.post("/api/v1/auth/logout", headers=bearer(fresh)).status_code == 204
    after = http.get("/api/v1/auth/me", headers=bearer(fresh))
    assert_problem(after, 401, "SESSION_REVOKED")
    assert after.headers["www-authenticate"] == "Bearer"


def test_the_app_sees_the_real_client_address_never_a_forged_one(client_from):
    address = fresh_client_address()
    http = client_from(address)
    tokens = register_and_sign_in(http, "forger@example.org", **{"X-Forwarded-For": "6.6.6.6"})

    sessions = http.get(
        "/api/v1/auth/sessions", headers=bearer(tokens) | {"X-Forwarded-For": "6.6.6.6, 7.7.7.7"}
    ).json()

    assert [session["ip_address"] for session in sessions] == [address]


def test_failed_sign_ins_lock_out_only_the_address_they_came_from(client_from):
    owner_address = fresh_client_address()
    owner = client_from(owner_address)
    register_and_sign_in(owner, "locked-owner@example.org")
    attacker = client_from()  # claims to be the owner: nginx overwrites X-Forwarded-For
    guess = {"username": "locked-owner@example.org", "password": "a wrong guess"}
    pretend = {"X-Forwarded-For": owner_address}

    failures = [attacker.post("/api/v1/auth/token", data=guess, headers=pretend) for _ in range(5)]
    locked = attacker.post(
        "/api/v1/auth/token",
        data=guess | {"password": STACK_PASSWORD},
        headers=pretend,
    )
    owner_signs_in = owner.post(
        "/api/v1/auth/token",
        data={"username": "locked-owner@example.org", "password": STACK_PASSWORD},
    )

    assert [response.status_code for response in failures] == [401] * 5
    assert_problem(locked, 429, "LOGIN_LOCKED")
    assert owner_signs_in.status_code == 200


def test_a_trailing_slash_is_a_404_problem_never_a_redirect(http):
    # The app makes no redirects, so none can point at a host the client chose (issue 11, item 10).
    response = http.get("/api/v1/auth/me/", follow_redirects=False)

    assert_problem(response, 404, "NOT_FOUND")
    assert "location" not in response.headers


def test_bodies_over_the_default_limit_get_413_problem(http):
    response = http.post(
        "/api/v1/auth/register", content=b"x" * (MB + MB // 2), headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert_headers_once(response)


def test_bodies_nginx_buffers_to_disk_reach_the_api(http):
    body = b'{"email": "' + b"x" * (200 * 1024) + b'"}'  # larger than nginx's in-memory body buffer

    response = http.post("/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"})

    assert_problem(response, 422, "VALIDATION_ERROR")


def test_sample_file_uploads_may_be_larger_up_to_max_upload_mb(http):
    path = f"/api/v1/studies/{uuid.uuid4()}/sample-files"
    under = http.post(path, content=b"x" * (STACK_MAX_UPLOAD_MB * MB - MB // 2))
    over = http.post(path, content=b"x" * (STACK_MAX_UPLOAD_MB * MB + MB))

    assert under.status_code != 413  # nginx let it through; the API answered
    assert under.headers["content-type"] == "application/problem+json"
    assert_problem(over, 413, "PAYLOAD_TOO_LARGE")


def test_a_csv_uploaded_through_nginx_is_imported_and_downloads_byte_for_byte(http):
    fields = [{"name": "volume", "type": "number", "unit": "mL", "required": True}]
    researcher = researcher_with_study(http, "uploader", fields=fields)
    headers = researcher.headers
    rows = "".join(f"S-{number},{number}.5\r\n" for number in range(20_000))
    content = ("sample_id,volume [mL]\r\n" + rows).encode()
    assert len(content) > 256 * 1024  # more than nginx keeps in memory: streamed through

    uploaded = http.post(
        f"{researcher.study_url}/sample-files",
        files={"file": ("../samples.csv", content, "text/csv")},
        headers=headers,
    )

    assert uploaded.status_code == 201, uploaded.text
    record = uploaded.json()
    assert (record["filename"], record["report"]["created"]) == ("samples.csv", 20_000)
    download = http.get(f"/api/v1/sample-files/{record['id']}/content", headers=headers)
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-disposition"].startswith('attachment; filename="samples.csv"')
    again = http.get(
        f"/api/v1/sample-files/{record['id']}/content",
        headers={**headers, "If-None-Match": download.headers["etag"]},
    )
    assert again.status_code == 304


def test_prefer_respond_async_reaches_the_api_through_nginx_and_the_record_follows_the_import(http):
    fields = [{"name": "volume", "type": "number", "unit": "mL", "required": True}]
    researcher = researcher_with_study(http, "async-uploader", fields=fields)
    content = ("sample_id,volume [mL]\r\n" + "".join(f"S-{n},{n}.5\r\n" for n in range(5_000))).encode()

    accepted = http.post(
        f"{researcher.study_url}/sample-files",
        files={"file": ("samples.csv", content, "text/csv")},
        headers={**researcher.headers, "Prefer": "respond-async"},
    )

    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["preference-applied"] == "respond-async"
    for _ in range(300):  # 30 s at most
        record = http.get(accepted.headers["location"], headers=researcher.headers).json()
        if record["status"] not in ("queued", "importing"):
            break
        time.sleep(0.1)
    assert (record["status"], record["progress"]["rows_read"]) == ("imported", 5_000)


def test_security_headers_appear_exactly_once_on_proxied_and_nginx_responses(http):
    proxied_ok = http.get("/api/v1/health")
    proxied_error = http.get("/api/v1/no-such-route")
    nginx_error = http.request("PROPFIND", "/api/v1/health")

    for response in (proxied_ok, proxied_error, nginx_error):
        assert_headers_once(response)
    assert proxied_ok.headers["content-security-policy"].startswith("default-src 'none'")


def test_server_does_not_reveal_its_version(http):
    assert http.get("/api/v1/health").headers["server"] == "nginx"


def test_request_id_is_passed_through_or_made_by_nginx(http, stack: Stack):
    sent = http.get("/api/v1/health", headers={"X-Request-ID": "trace-abc.123"})
    made = http.get("/api/v1/health")
    hostile = http.get("/api/v1/health", headers={"X-Request-ID": 'a"b<script>'})

    assert sent.headers["x-request-id"] == "trace-abc.123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
    # nginx made the id and passed it on: its log line and the API's response carry the same one
    assert stack.access_log_entry(made.headers["x-request-id"])["uri"] == "/api/v1/health"


def test_only_the_listed_methods_are_allowed(http):
    response = http.request("PROPFIND", "/api/v1/health")

    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "PATCH" in response.headers["allow"]


def test_json_is_gzipped(http):
    response = http.get("/openapi.json", headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["info"]["title"] == "Studybase API"


def test_access_log_is_json_with_request_id_and_upstream_time_and_skips_healthz(http, stack: Stack):
    http.get("/healthz", headers={"X-Request-ID": "healthz-probe-1"})
    http.get("/api/v1/health", headers={"X-Request-ID": "logged-request-1"})

    logged = stack.access_log_entry("logged-request-1")

    assert logged["uri"] == "/api/v1/health"
    assert logged["status"] == 200
    assert float(logged["upstream_time"]) >= 0
    assert "healthz-probe-1" not in stack.access_log.read_text()


def test_killing_a_worker_does_not_take_the_api_down(http, stack: Stack):
    workers = worker_pids(stack.gunicorn.pid)
    assert len(workers) == 2
    victim = min(workers)

    os.kill(victim, signal.SIGKILL)
    statuses = []
    for _ in range(40):
        statuses.append(http.get("/healthz").status_code)
        time.sleep(0.05)

    assert statuses == [200] * 40
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        replacement = worker_pids(stack.gunicorn.pid)
        if len(replacement) == 2 and victim not in replacement:
            break
        time.sleep(0.2)
    assert victim not in replacement
    assert len(replacement) == 2


def test_an_unreachable_api_gets_503_problem_from_nginx(stack: Stack):
    dead_upstream = f"127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    config = local_stack.render_nginx_config(
        stack.work_dir / "nginx-dead-upstream", listen=f"127.0.0.1:{port}", upstream=dead_upstream
    )
    nginx = local_stack.start_nginx(config)
    try:
        local_stack.wait_until_answering(f"http://127.0.0.1:{port}/healthz", process=nginx, status=None)
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10)
    finally:
        local_stack.stop(nginx)

    assert_problem(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response.headers["retry-after"]) > 0
    assert_headers_once(response)


def test_a_login_flood_gets_429_problem_from_nginx(http):
    responses = flood_until_429(
        http,
        lambda n: http.post(
            "/api/v1/auth/token", data={"username": "flood@example.org", "password": f"guess {n}"}
        ),
    )

    assert len(responses) <= 7  # 1 + a burst of 5, then refused
    assert_problem(responses[-1], 429, "RATE_LIMITED")
    assert responses[-1].headers["retry-after"] == "60"
    assert_headers_once(responses[-1])


def test_registration_and_refresh_share_the_strict_limit(http):
    register = flood_until_429(
        http, lambda n: http.post("/api/v1/auth/register", json={"email": f"r{n}@example.org"})
    )
    refresh = http.post("/api/v1/auth/refresh", json={"refresh_token": "x"})

    assert_problem(register[-1], 429, "RATE_LIMITED")
    assert len(register) <= 7
    assert_problem(refresh, 429, "RATE_LIMITED")


def test_cors_preflights_do_not_spend_the_sign_in_budget(http):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    for _ in range(10):
        http.options("/api/v1/auth/token", headers=preflight)

    response = http.post("/api/v1/auth/token", data={"username": "cors@example.org", "password": "wrong one"})

    assert response.status_code == 401


def test_the_rest_of_the_api_has_a_looser_limit_with_a_short_retry(http):
    responses = flood_until_429(http, lambda _: http.get("/api/v1/health"), limit=200)

    assert len(responses) > 20  # far more than the sign-in zone allows
    assert_problem(responses[-1], 429, "RATE_LIMITED")
    assert responses[-1].headers["retry-after"] == "1"


def test_a_body_of_120000_unknown_keys_is_refused_small_through_nginx(http):
    # The body: 960 KB, once a 10.4 MB answer and more than a second of a worker.
    letters = string.ascii_letters + string.digits
    keys = itertools.islice(itertools.product(letters, repeat=3), 120_000)
    body = b"{" + b",".join(b'"%s":0' % "".join(key).encode() for key in keys) + b"}"
    assert len(body) < MB

    response = http.post("/api/v1/auth/refresh", content=body, headers={"Content-Type": "application/json"})

    assert_problem(response, 422, "BODY_TOO_COMPLEX")
    assert len(response.content) < 16 * 1024


@pytest.mark.parametrize("suffix", ["%0A", "%0D", "%09", "%00"])
def test_registration_with_a_control_character_after_the_path_is_never_served(http, suffix):
    response = http.post(
        f"/api/v1/auth/register{suffix}",
        json={
            "email": f"{uuid.uuid4().hex}@example.org",
            "password": STACK_PASSWORD,
            "full_name": "X",
        },
    )

    # 404 from the app; nginx itself refuses a NUL in the path with 400.
    assert response.status_code in (400, 404), response.text


def read_from_every_worker(stack: Stack, path: str, headers: dict[str, str], *, times: int = 24) -> set[int]:
    """The statuses of `times` concurrent reads straight to gunicorn, each on a new connection: the
    two workers accept them in turns, so both answer (a worker's identity is not in a response)."""

    def read(_: int) -> int:
        with httpx.Client(base_url=stack.api_url, timeout=10) as client:
            return client.get(path, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return set(pool.map(read, range(times)))


def test_a_revoked_session_and_a_removed_member_are_refused_by_every_worker_at_once(
    client_from, stack: Stack, stack_smtp
):
    """Authorization is never cached across requests: each worker reads session and membership anew,
    so the request right after a revocation is refused whichever worker serves it."""
    researcher = researcher_with_study(client_from(), "workers")
    owner, study_path = researcher.headers, researcher.study_url
    member = bearer(register_and_sign_in(client_from(), "workers-member@example.org"))
    http = client_from()
    join_by_invitation(
        http,
        stack_smtp,
        study_url=study_path,
        owner_headers=owner,
        member_headers=member,
        email="workers-member@example.org",
        role="viewer",
    )
    assert read_from_every_worker(stack, study_path, member) == {200}
    assert read_from_every_worker(stack, "/api/v1/auth/me", owner) == {200}

    member_id = http.get("/api/v1/auth/me", headers=member).json()["id"]
    assert http.delete(f"{study_path}/members/{member_id}", headers=owner).status_code == 204
    assert read_from_every_worker(stack, study_path, member) == {404}

    assert http.post("/api/v1/auth/logout", headers=owner).status_code == 204
    assert read_from_every_worker(stack, "/api/v1/auth/me", owner) == {401}
