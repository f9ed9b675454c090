"""Faults against the real processes: the database going away under load, workers killed or
stopped with requests in flight, a client vanishing mid-upload, and the CORS headers of the
answers nginx makes itself. Every wait here is bounded.

The database outage is a TCP link between the API and PostgreSQL that the test cuts (every
connection dropped, new ones refused, as when PostgreSQL stops) and restores: the machine's
PostgreSQL server is shared and is never stopped, and a private server (initdb) would cost
seconds of CPU per run for nothing the link does not already show.
"""

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from scripts import local_stack
from tests.conftest import assert_problem
from tests.smtp_server import SmtpTestServer
from tests.stack.conftest import (
    TRUSTED_CLIENT_ADDRESS,
    Stack,
    free_port,
    fresh_client_address,
    mail_settings_for,
    researcher_with_study,
    running_stack,
)
from tests.stack.links import CuttableLink
from tests.stack.test_stack import assert_headers_once, worker_pids

pytestmark = pytest.mark.stack

ALLOWED_ORIGIN = "https://dashboard.example.org"
OTHER_ORIGIN = "https://elsewhere.example.net"
STUDIES = "/api/v1/studies"
FIELDS = [{"name": "volume", "type": "number", "unit": "mL", "required": True}]
# The upload that a test kills or stops gunicorn under: 1.5 MB (the stack takes 2), an import of
# about 5 s on two idle cores, so it is still running well after it began writing.
IN_FLIGHT_ROWS = 100_000


@dataclass(frozen=True)
class Outcome:
    started: float
    elapsed: float
    status: int | None  # None: no HTTP answer at all (a failed request)
    content_type: str
    text: str


class Load:
    """`threads` clients sending GETs through nginx without pause until the block ends (at most
    `limit` seconds), from the trusted address so nginx's rate limits stay out of the way; a GET
    unanswered after `timeout` seconds counts as failed."""

    def __init__(
        self,
        base_url: str,
        paths: list[str],
        headers: dict[str, str],
        *,
        threads: int = 4,
        limit: float = 60,
        timeout: float = 10,
    ) -> None:
        self.base_url, self.paths, self.headers, self.threads = base_url, paths, headers, threads
        self.limit, self.timeout = limit, timeout
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 20)

    def _run(self, number: int) -> None:
        transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.base_url, transport=transport, timeout=self.timeout) as client:
            sent = number
            while not self._stop.is_set() and time.monotonic() < deadline:
                path = self.paths[sent % len(self.paths)]
                sent += 1
                self._record(self._get(client, path))
                time.sleep(0.01)

    def _get(self, client: httpx.Client, path: str) -> Outcome:
        started = time.monotonic()
        try:
            response = client.get(path, headers=self.headers)
        except httpx.HTTPError as error:
            return Outcome(started, time.monotonic() - started, None, "", repr(error))
        content_type = response.headers.get("content-type", "")
        return Outcome(started, time.monotonic() - started, response.status_code, content_type, response.text)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def cut_after_its_headers(outcome: Outcome) -> bool:
    """The headers came, then the connection closed before the whole body (httpx says so)."""
    return outcome.status is None and "complete message body" in outcome.text


def sample_csv(rows: int) -> bytes:
    return ("sample_id,volume [mL]\r\n" + "".join(f"S-{n:06d},{n % 90}.5\r\n" for n in range(rows))).encode()


def raw_upload(path: str, headers: dict[str, str], content: bytes) -> tuple[bytes, bytes]:
    """The head and the body of a multipart upload of `content` as `half.csv`, to send by hand
    (a socket can stop halfway through the body)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="half.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    head += f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode(), body


def files_in(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file()) if directory.exists() else []


def wait_for(condition, *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def wait_until_importing(database_url: str, *, timeout: float = 20) -> None:
    """Until a transaction in the stack's database has written (pg_stat_activity shows its
    backend_xid): the upload's body is in, its import has locked the study and is running. The
    caller's stack must be the only one busy with that database."""
    libpq_url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq_url, autocommit=True, connect_timeout=5) as probe:

        def importing() -> bool:
            writing = probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
            ).fetchone()
            return writing is not None and writing[0] > 0

        assert wait_for(importing, timeout=timeout, interval=0.02), "the import never began writing"


@pytest.fixture(scope="module")
def linked_stack(
    stack_database: str, database_link: CuttableLink, stack_smtp: SmtpTestServer
) -> Iterator[Stack]:
    """A stack of its own whose database is reached through the link, and whose API (and so nginx)
    allows one browser origin."""
    through_link = make_url(stack_database).set(host="127.0.0.1", port=database_link.port)
    with running_stack(
        through_link.render_as_string(hide_password=False),
        cors_origins=[ALLOWED_ORIGIN],
        settings=mail_settings_for(stack_smtp),
    ) as started:
        yield started


@pytest.fixture
def spare_stack(stack_database: str, stack_smtp: SmtpTestServer) -> Iterator[Stack]:
    """A stack for one test that stops or kills its gunicorn."""
    with running_stack(stack_database, settings=mail_settings_for(stack_smtp)) as started:
        yield started


def client_to(stack: Stack, address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address or fresh_client_address())
    return httpx.Client(base_url=stack.base_url, transport=transport, timeout=10)


# The database goes away under load


def test_database_down_under_load_answers_503_fast_and_recovers_without_a_restart(
    linked_stack, database_link
):
    with client_to(linked_stack) as http:
        researcher = researcher_with_study(http, "faults", fields=FIELDS)
        headers, study_id = researcher.headers, researcher.study_id
        workers = worker_pids(linked_stack.gunicorn.pid)
        paths = [STUDIES, f"{STUDIES}/{study_id}", f"{STUDIES}/{study_id}/samples"]
        with Load(linked_stack.base_url, paths, headers) as load:
            time.sleep(0.5)
            database_link.cut()
            cut_at = time.monotonic()
            time.sleep(2.5)
            liveness, readiness = http.get("/api/v1/health"), http.get("/api/v1/health/ready")
            write = http.post(STUDIES, json={"code": "DOWN-1", "title": "Down"}, headers=headers)
            database_link.restore()
            restored_at = time.monotonic()
            assert wait_for(lambda: http.get(STUDIES, headers=headers).status_code == 200, timeout=5)
            recovered_at = time.monotonic()
            time.sleep(0.5)

    assert liveness.status_code == 200
    assert_problem(readiness, 503, "DATABASE_UNAVAILABLE")
    assert_problem(write, 503, "DATABASE_UNAVAILABLE")
    assert recovered_at - restored_at < 5
    outcomes = load.outcomes
    during = [o for o in outcomes if cut_at + 0.05 < o.started and o.started + o.elapsed < restored_at]
    after = [o for o in outcomes if o.started > recovered_at]
    assert len(during) > 20
    assert {o.status for o in during} == {503}
    for outcome in during:
        assert outcome.content_type == "application/problem+json"
        assert '"code":"DATABASE_UNAVAILABLE"' in outcome.text
        assert "Traceback" not in outcome.text
    assert {o.status for o in outcomes} <= {200, 503}  # in flight at the cut: either; never a 500
    assert max(o.elapsed for o in outcomes) < 2
    assert after
    assert {o.status for o in after} == {200}
    assert worker_pids(linked_stack.gunicorn.pid) == workers  # recovered without a restart


# Workers that die or are stopped


def test_a_worker_killed_under_load_fails_no_get_and_is_replaced(stack: Stack, http):
    researcher = researcher_with_study(http, "faults", fields=FIELDS)
    headers, study_id = researcher.headers, researcher.study_id
    workers = worker_pids(stack.gunicorn.pid)
    victim = min(workers)
    paths = [STUDIES, f"{STUDIES}/{study_id}", "/api/v1/health"]

    with Load(stack.base_url, paths, headers, threads=6) as load:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        time.sleep(2)

    cut = [o for o in load.outcomes if cut_after_its_headers(o)]
    failed = [o for o in load.outcomes if o.status != 200 and o not in cut]
    assert failed == []
    # nginx cannot retry an answer it has begun to forward: only one the victim was writing at
    # the very moment of its death (between its headers and its body) may be cut.
    assert len(cut) <= 1, cut
    assert len(load.outcomes) > 50
    assert wait_for(lambda: len(worker_pids(stack.gunicorn.pid) - {victim}) == 2, timeout=20)


def test_a_post_in_flight_on_a_dying_worker_gets_a_clean_503_never_a_hang(
    spare_stack: Stack, stack_database: str
):
    """nginx never resends a POST (the import may have begun): its client gets 503 problem+json."""
    with client_to(spare_stack) as http:
        researcher = researcher_with_study(http, "faults", fields=FIELDS)
        headers, study_id = researcher.headers, researcher.study_id
        answer: dict[str, httpx.Response | Exception] = {}

        def upload() -> None:
            try:
                answer["upload"] = http.post(
                    f"{STUDIES}/{study_id}/sample-files",
                    files={"file": ("big.csv", sample_csv(IN_FLIGHT_ROWS), "text/csv")},
                    headers=headers,
                )
            except httpx.HTTPError as error:
                answer["upload"] = error

        uploading = threading.Thread(target=upload)
        started = time.monotonic()
        uploading.start()
        wait_until_importing(stack_database)
        for worker in worker_pids(spare_stack.gunicorn.pid):
            os.kill(worker, signal.SIGKILL)
        uploading.join(timeout=20)

        assert not uploading.is_alive()
        assert time.monotonic() - started < 15
        response = answer["upload"]
        assert isinstance(response, httpx.Response), response
        assert_problem(response, 503, "SERVICE_UNAVAILABLE")
        assert_headers_once(response)
        assert wait_for(lambda: http.get(STUDIES, headers=headers).status_code == 200, timeout=20)
        files = http.get(f"{STUDIES}/{study_id}/sample-files", headers=headers).json()
        samples = http.get(f"{STUDIES}/{study_id}", headers=headers).json()
    # Its record stays as the killed process left it (ended `failed` by the next API process to start
    # once past any import's bounds, or by prune); nothing of the file was imported.
    assert [item["status"] for item in files["items"]] in ([], ["queued"], ["importing"])
    assert samples["sample_count"] == 0


def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_connections(
    spare_stack: Stack, stack_database: str
):
    api_port = int(spare_stack.api_url.rsplit(":", 1)[1])
    with client_to(spare_stack) as http:
        researcher = researcher_with_study(http, "faults", fields=FIELDS)
        headers, study_id = researcher.headers, researcher.study_id
        answer: dict[str, httpx.Response] = {}

        def upload() -> None:
            answer["upload"] = http.post(
                f"{STUDIES}/{study_id}/sample-files",
                files={"file": ("inflight.csv", sample_csv(IN_FLIGHT_ROWS), "text/csv")},
                headers=headers,
            )

        uploading = threading.Thread(target=upload)
        uploading.start()
        wait_until_importing(stack_database)
        spare_stack.gunicorn.send_signal(signal.SIGTERM)
        assert uploading.is_alive()  # the upload was in flight when the signal went out

        assert wait_for(lambda: not accepts_connections(api_port), timeout=5)
        with client_to(spare_stack) as newcomer:
            refused = newcomer.get("/api/v1/health")
        uploading.join(timeout=35)
        exit_code = spare_stack.gunicorn.wait(timeout=35)

    assert_problem(refused, 503, "SERVICE_UNAVAILABLE")  # nginx's clean answer for the refused connection
    assert answer["upload"].status_code == 201, answer["upload"].text
    assert answer["upload"].json()["report"]["created"] == IN_FLIGHT_ROWS
    assert exit_code == 0


def accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# A client that goes away halfway through an upload


def test_a_client_that_disconnects_halfway_through_an_upload_leaves_nothing(linked_stack):
    with client_to(linked_stack) as http:
        researcher = researcher_with_study(http, "faults", fields=FIELDS)
        headers, study_id = researcher.headers, researcher.study_id
    head, body = raw_upload(f"{STUDIES}/{study_id}/sample-files", headers, sample_csv(30_000))
    uploads = linked_stack.work_dir / "uploads"

    with socket.create_connection(("127.0.0.1", linked_stack.nginx_port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])
        assert wait_for(lambda: files_in(uploads / "tmp") != [], timeout=5)  # the API is receiving it
    # The connection is closed, half the body unsent.

    assert wait_for(lambda: files_in(uploads) == [], timeout=10)
    with client_to(linked_stack) as http:
        listed = http.get(f"{STUDIES}/{study_id}/sample-files", headers=headers).json()
        study = http.get(f"{STUDIES}/{study_id}", headers=headers).json()
    assert listed["total"] == 0
    assert study["sample_count"] == 0


# CORS on nginx's own answers


def app_expose_headers(http: httpx.Client) -> str:
    response = http.get("/api/v1/health", headers={"Origin": ALLOWED_ORIGIN})
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN  # the API's own
    return response.headers["access-control-expose-headers"]


def assert_readable_by(response: httpx.Response, origin: str, expose: str) -> None:
    assert response.headers.get_list("access-control-allow-origin") == [origin]
    assert response.headers.get_list("access-control-allow-credentials") == ["true"]
    assert response.headers.get_list("access-control-expose-headers") == [expose]
    assert "Origin" in response.headers.get("vary", "")


def assert_no_cors(response: httpx.Response) -> None:
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_nginx_413_and_429_carry_the_cors_headers_an_allowed_origin_needs(linked_stack):
    with client_to(linked_stack) as http:
        expose = app_expose_headers(http)
        too_large = http.post(STUDIES, content=b"x" * (2 * 1024 * 1024), headers={"Origin": ALLOWED_ORIGIN})
        elsewhere = http.post(STUDIES, content=b"x" * (2 * 1024 * 1024), headers={"Origin": OTHER_ORIGIN})
        no_origin = http.post(STUDIES, content=b"x" * (2 * 1024 * 1024))
        flood = [http.get("/api/v1/health", headers={"Origin": ALLOWED_ORIGIN}) for _ in range(80)]

    assert_problem(too_large, 413, "PAYLOAD_TOO_LARGE")
    assert_readable_by(too_large, ALLOWED_ORIGIN, expose)
    assert_no_cors(elsewhere)
    assert_no_cors(no_origin)
    refused = [response for response in flood if response.status_code == 429]
    assert refused
    assert_problem(refused[0], 429, "RATE_LIMITED")
    assert_readable_by(refused[0], ALLOWED_ORIGIN, expose)
    proxied = next(response for response in flood if response.status_code == 200)
    assert proxied.headers.get_list("access-control-allow-origin") == [ALLOWED_ORIGIN]  # the API's, once


def test_nginx_503_for_an_api_that_is_down_carries_the_cors_headers(linked_stack):
    dead_upstream = f"127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    config = local_stack.render_nginx_config(
        linked_stack.work_dir / "nginx-dead-upstream",
        listen=f"127.0.0.1:{port}",
        upstream=dead_upstream,
        cors_origins=[ALLOWED_ORIGIN],
    )
    nginx = local_stack.start_nginx(config)
    try:
        local_stack.wait_until_answering(f"http://127.0.0.1:{port}/healthz", process=nginx, status=None)
        with client_to(linked_stack) as http:
            expose = app_expose_headers(http)
        url = f"http://127.0.0.1:{port}{STUDIES}"
        allowed = httpx.get(url, headers={"Origin": ALLOWED_ORIGIN}, timeout=10)
        other = httpx.get(url, headers={"Origin": OTHER_ORIGIN}, timeout=10)
    finally:
        local_stack.stop(nginx)

    assert_problem(allowed, 503, "SERVICE_UNAVAILABLE")
    assert_readable_by(allowed, ALLOWED_ORIGIN, expose)
    assert_problem(other, 503, "SERVICE_UNAVAILABLE")
    assert_no_cors(other)
