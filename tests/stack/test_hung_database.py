"""A database that hangs instead of failing (packets dropped, nothing refused), through the real
stack: every request answers by its deadline, /health/ready within its bound, no write commits after
its client was told it failed, and a retry with the same Idempotency-Key never creates a duplicate.

The black hole is the TCP link between the API and PostgreSQL (tests/stack/links.py); the stack runs
with a 5 s request deadline so that a 15 s black hole outlasts it three times.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.smtp_server import SmtpTestServer
from tests.stack.conftest import (
    TRUSTED_CLIENT_ADDRESS,
    Stack,
    fresh_client_address,
    mail_settings_for,
    researcher_with_study,
    running_stack,
)
from tests.stack.links import CuttableLink

pytestmark = pytest.mark.stack

REQUEST_TIMEOUT_SECONDS = 5.0
READY_BOUND_SECONDS = 3.0
BLACK_HOLE_SECONDS = 15.0
STUDIES = "/api/v1/studies"


@dataclass
class Answer:
    kind: str
    started: float
    seconds: float
    status: int | None
    code: str | None = None
    key: str | None = None
    body: dict | None = None


@dataclass
class Traffic:
    """Writers creating studies (each with an Idempotency-Key), readers, and a readiness probe, each
    at a light pace, until stopped (at most 60 s)."""

    base_url: str
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "Traffic":
        self._threads = [
            *(threading.Thread(target=self._write) for _ in range(3)),
            *(threading.Thread(target=self._read, args=(path,)) for path in (STUDIES, "/api/v1/auth/me")),
            threading.Thread(target=self._probe),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
        return httpx.Client(base_url=self.base_url, transport=transport, timeout=30)

    def _loop(self, send) -> None:
        deadline = time.monotonic() + 60
        with self._client() as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                answer = send(client)
                with self._lock:
                    self.answers.append(answer)
                time.sleep(0.3)

    def _write(self) -> None:
        def create(client: httpx.Client) -> Answer:
            key, body = str(uuid.uuid4()), {"code": f"HB-{uuid.uuid4().hex[:12]}", "title": "black hole"}
            answer = timed(client, "POST", STUDIES, "write", {**self.headers, "Idempotency-Key": key}, body)
            answer.key, answer.body = key, body
            return answer

        self._loop(create)

    def _read(self, path: str) -> None:
        self._loop(lambda client: timed(client, "GET", path, "read", self.headers))

    def _probe(self) -> None:
        self._loop(lambda client: timed(client, "GET", "/api/v1/health/ready", "ready", {}))


def timed(
    client: httpx.Client, method: str, path: str, kind: str, headers: dict, body: dict | None = None
) -> Answer:
    started = time.monotonic()
    try:
        response = client.request(method, path, headers=headers, json=body)
    except httpx.HTTPError:
        return Answer(kind, started, time.monotonic() - started, None)
    code = response.json().get("code") if response.headers.get("content-type", "").endswith("json") else None
    return Answer(
        kind,
        started,
        time.monotonic() - started,
        response.status_code,
        code if response.status_code >= 400 else None,
    )


@pytest.fixture(scope="module")
def hung_stack(
    stack_database: str, database_link: CuttableLink, stack_smtp: SmtpTestServer
) -> Iterator[Stack]:
    through_link = make_url(stack_database).set(host="127.0.0.1", port=database_link.port)
    with running_stack(
        through_link.render_as_string(hide_password=False),
        settings={**mail_settings_for(stack_smtp), "REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS)},
    ) as started:
        yield started


def codes_in_database(database_url: str) -> set[str]:
    with psycopg.connect(database_url.replace("+psycopg", ""), connect_timeout=5) as connection:
        return {row[0] for row in connection.execute("SELECT code FROM studies WHERE code LIKE 'HB-%'")}


def log_lines(stack: Stack) -> list[dict]:
    lines = []
    for line in (stack.work_dir / "gunicorn.log").read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_black_holed_database_costs_bounded_waits_and_honest_answers(
    hung_stack, database_link, stack_database
):
    transport = httpx.HTTPTransport(local_address=fresh_client_address())
    with httpx.Client(base_url=hung_stack.base_url, transport=transport, timeout=30) as http:
        researcher = researcher_with_study(http, "blackhole")
        with Traffic(hung_stack.base_url, researcher.headers) as traffic:
            time.sleep(1.5)
            database_link.black_hole()
            hole_started = time.monotonic()
            time.sleep(BLACK_HOLE_SECONDS)
            database_link.restore()
            restored = time.monotonic()
            time.sleep(4)

        # Right after the black hole: nothing that answered non-2xx, and was sent once the hole
        # had begun, may have committed when the link came back.
        time.sleep(REQUEST_TIMEOUT_SECONDS * 2)  # the server's side of held transactions has given up
        stored = codes_in_database(stack_database)
        answers = traffic.answers
        writes = [a for a in answers if a.kind == "write"]
        during = [a for a in writes if a.started > hole_started + 0.2 and a.started + a.seconds < restored]
        refused_during = [a for a in during if a.status is not None and not 200 <= a.status < 300]
        late_commits = [a.body["code"] for a in refused_during if a.body["code"] in stored]

        # Retried with the same key: exactly one study each, whatever became of the first try.
        retried = {}
        for answer in writes:
            if answer.status != 201:
                again = http.post(
                    STUDIES, json=answer.body, headers={**researcher.headers, "Idempotency-Key": answer.key}
                )
                retried[answer.body["code"]] = again
        other_body = http.post(
            STUDIES,
            json={"code": "HB-OTHER", "title": "x"},
            headers={**researcher.headers, "Idempotency-Key": writes[0].key},
        )
        final = codes_in_database(stack_database)

    assert during, "no write was sent during the black hole"
    assert refused_during, "the black hole refused no write: it did not hold anything"
    assert all(a.status is not None for a in answers), "a request got no answer at all"
    slow = [a for a in answers if a.kind in ("write", "read") and a.seconds > REQUEST_TIMEOUT_SECONDS + 1]
    assert not slow, (
        f"{len(slow)} requests took longer than the deadline + 1 s: {max(a.seconds for a in slow):.1f} s"
    )
    slow_ready = [a for a in answers if a.kind == "ready" and a.seconds > READY_BOUND_SECONDS + 1]
    assert not slow_ready, f"/health/ready took {max(a.seconds for a in slow_ready):.1f} s"
    assert {
        a.status
        for a in answers
        if a.kind == "ready" and a.started > hole_started + 1 and a.started + a.seconds < restored
    } == {503}
    assert {a.code for a in refused_during} <= {"REQUEST_TIMED_OUT", "DATABASE_UNAVAILABLE"}
    assert late_commits == [], f"{len(late_commits)} writes committed after their client was told they failed"
    assert all(response.status_code == 201 for response in retried.values()), [
        r.text for r in retried.values()
    ]
    for code in {a.body["code"] for a in writes}:
        assert code in final, f"{code} is missing after its retry"
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "IDEMPOTENCY_KEY_REUSED"

    lines = log_lines(hung_stack)
    warnings = [line for line in lines if line["msg"] == "database_unavailable"]
    recoveries = [line for line in lines if line["msg"] == "database_available"]
    assert 1 <= len(warnings) <= 2, "one WARNING per worker when the outage began"  # two workers
    assert all("exc_info" not in line for line in warnings)
    assert recoveries
    assert sum(line["refused_requests"] for line in recoveries) >= 1
    assert not [line for line in lines if line["level"] == "ERROR" and line["msg"] == "unhandled error"]
