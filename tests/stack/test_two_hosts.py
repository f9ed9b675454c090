"""Two API hosts and an import worker that share only PostgreSQL and an S3 store, behind one nginx.

Each host is a gunicorn master of its own with its own temporary folder (UPLOAD_DIR); imports run
as jobs (IMPORT_RUNNER=queue) in `python main.py worker`; files are objects in a bucket of moto's S3
server (tests/s3_server.py). Which host answered a request is read from nginx's access log (the
upstream address it logged for the request's id). Every wait is bounded.
"""

import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path

import httpx
import pytest

from scripts import local_stack
from tests.conftest import assert_problem
from tests.s3_server import S3_CREDENTIALS, S3TestServer
from tests.smtp_server import SmtpTestServer
from tests.stack.conftest import (
    BROWSER_CLIENT_ADDRESS,
    STACK_MAX_UPLOAD_MB,
    TRUSTED_CLIENT_ADDRESS,
    ResearcherWithStudy,
    access_log_entry,
    fresh_client_address,
    mail_settings_for,
    researcher_with_study,
    stack_environment,
)
from tests.stack.test_faults import FIELDS, Load, files_in, raw_upload, sample_csv, wait_for

pytestmark = pytest.mark.stack

SAMPLE_FILES = "/api/v1/sample-files"
# Imported in a few seconds on two busy cores: long enough to be seen in progress.
PROGRESS_ROWS = 40_000
# About 3 s of import on two idle cores: still importing well after the worker's first progress
# point (every 0.1 s here), when the test kills it.
KILLED_IMPORT_ROWS = 60_000
# A worker that beats no more for this long is taken for dead, its job run again by the next.
WORKER_STALLED_SECONDS = 3.0
RESPOND_ASYNC = {"Prefer": "respond-async"}
FINISHED = {"imported", "rejected", "failed", "cancelled"}


@dataclass
class Member:
    """One process of the stack, which a test may kill or stop and start again: an API host (a
    gunicorn master with one worker, on `port`) or, without a port, the import worker."""

    name: str
    env: dict[str, str]
    work_dir: Path
    port: int | None = None
    process: "local_stack.subprocess.Popen[bytes] | None" = None
    starts: int = field(default=0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.starts += 1
        if self.port is None:
            self.process = local_stack.start_worker(env=self.env, log=self.log())
            return
        self.process = local_stack.start_gunicorn(bind=self.address, workers=1, env=self.env, log=self.log())
        local_stack.wait_until_answering(f"http://{self.address}/api/v1/health", process=self.process)

    def kill(self) -> None:
        """SIGKILL to the whole process group: the master (or worker) and every child of it."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: gunicorn finishes the requests in flight, the worker its running job."""
        assert self.process is not None
        local_stack.stop(self.process)

    def log(self) -> Path:
        """What the process running now writes (its stderr)."""
        return self.work_dir / f"{self.name}-{self.starts}.log"

    def temp_files(self) -> list[Path]:
        return files_in(self.work_dir / "uploads" / "tmp")


@dataclass
class TwoHosts:
    base_url: str
    apis: tuple[Member, Member]
    worker: Member
    s3: S3TestServer
    bucket: str
    work_dir: Path

    @property
    def members(self) -> tuple[Member, ...]:
        return (*self.apis, self.worker)

    def answered_by(self, request_id: str) -> list[str]:
        """The upstream addresses nginx tried for the request, in order (the last one answered)."""
        entry = access_log_entry(self.work_dir / "nginx" / "access.log", request_id)
        return entry["upstream_addr"].split(", ")

    def objects(self) -> list[str]:
        return self.s3.object_names(self.bucket)


@pytest.fixture(scope="module")
def two_hosts(
    stack_database: str, stack_smtp: SmtpTestServer, s3_server: S3TestServer, tmp_path_factory
) -> Iterator[TwoHosts]:
    # Not under pytest's 0700 temp folder: nginx workers (nobody, when root starts nginx) buffer
    # request bodies to files in here and must be able to reach it.
    work_dir = Path(tempfile.mkdtemp(prefix="studybase-two-hosts-"))
    work_dir.chmod(0o755)
    bucket = s3_server.new_bucket()
    shared = mail_settings_for(stack_smtp) | {
        "STORAGE_URL": f"s3://{bucket}/files",
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": S3_CREDENTIALS.access_key_id,
        "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS.secret_access_key,
        "AWS_DEFAULT_REGION": S3_CREDENTIALS.region,
        "IMPORT_RUNNER": "queue",
        "IMPORT_PROGRESS_SECONDS": "0.1",
        "WORKER_STALLED_SECONDS": str(WORKER_STALLED_SECONDS),
    }

    def member(name: str, port: int | None = None) -> Member:
        own = work_dir / name  # this process's own temporary files (UPLOAD_DIR), nobody else's
        own.mkdir()
        return Member(name, stack_environment(stack_database, own) | shared, own, port)

    host_a, host_b = member("host-a", local_stack.free_port()), member("host-b", local_stack.free_port())
    worker = member("worker")
    local_stack.migrate(worker.env)
    nginx_port = local_stack.free_port()
    config = local_stack.render_nginx_config(
        work_dir / "nginx",
        listen=f"127.0.0.1:{nginx_port}",
        upstream=[host_a.address, host_b.address],
        max_upload_mb=STACK_MAX_UPLOAD_MB,
        trusted_clients=[TRUSTED_CLIENT_ADDRESS, BROWSER_CLIENT_ADDRESS],
    )
    stack = TwoHosts(f"http://127.0.0.1:{nginx_port}", (host_a, host_b), worker, s3_server, bucket, work_dir)
    nginx = None
    try:
        for started in stack.members:
            started.start()
        nginx = local_stack.start_nginx(config)
        local_stack.wait_until_answering(f"http://127.0.0.1:{nginx_port}/healthz", process=nginx)
        yield stack
    finally:
        if nginx is not None:
            local_stack.stop(nginx)
        for started in stack.members:
            if started.process is not None:
                local_stack.stop(started.process)
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture
def hosts(two_hosts: TwoHosts) -> TwoHosts:
    """The two hosts and the worker, each started again if an earlier test left it down."""
    for member in two_hosts.members:
        if not member.running:
            member.start()
    return two_hosts


@pytest.fixture
def client(hosts: TwoHosts) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(local_address=fresh_client_address())
    with httpx.Client(base_url=hosts.base_url, transport=transport, timeout=30) as client:
        yield client


def request_id() -> str:
    return f"two-hosts-{uuid.uuid4().hex}"


def get_through(
    stack: TwoHosts, http: httpx.Client, path: str, headers: dict[str, str], *, host: Member
) -> httpx.Response:
    """GET `path` through nginx until `host` answers it (nginx takes the hosts in turn); every
    answer must be a 200."""
    for _ in range(8):
        sent = request_id()
        response = http.get(path, headers={**headers, "X-Request-ID": sent})
        assert response.status_code == 200, response.text
        if stack.answered_by(sent) == [host.address]:
            return response
    raise AssertionError(f"{host.name} never answered GET {path}")


def upload(
    stack: TwoHosts, http: httpx.Client, researcher: ResearcherWithStudy, content: bytes, **headers: str
) -> tuple[httpx.Response, Member]:
    """An upload through nginx, and the host that took it."""
    sent = request_id()
    response = http.post(
        f"{researcher.study_url}/sample-files",
        files={"file": ("samples.csv", content, "text/csv")},
        headers={**researcher.headers, **headers, "X-Request-ID": sent},
    )
    [answered] = stack.answered_by(sent)
    [receiver] = [host for host in stack.apis if host.address == answered]
    return response, receiver


def other_than(stack: TwoHosts, host: Member) -> Member:
    [other] = [candidate for candidate in stack.apis if candidate is not host]
    return other


def record_until(
    client: httpx.Client, file_id: str, headers: dict[str, str], done, *, timeout: float
) -> tuple[dict, list[tuple[dict, str]]]:
    """Polls the record through nginx until `done(record)`; returns it, and every record seen on the
    way with the id of the request that read it."""
    seen: list[tuple[dict, str]] = []
    deadline = time.monotonic() + timeout
    while True:
        sent = request_id()
        response = client.get(f"{SAMPLE_FILES}/{file_id}", headers={**headers, "X-Request-ID": sent})
        assert response.status_code == 200, response.text
        seen.append((response.json(), sent))
        if done(seen[-1][0]):
            return seen[-1][0], seen
        assert time.monotonic() < deadline, f"the record never got there: {seen[-1][0]}"
        time.sleep(0.05)


def sample_count(http: httpx.Client, researcher: ResearcherWithStudy) -> int:
    response = http.get(researcher.study_url, headers=researcher.headers)
    assert response.status_code == 200, response.text
    return response.json()["sample_count"]


def test_a_file_uploaded_through_one_host_is_followed_and_served_through_the_other(hosts, client):
    researcher = researcher_with_study(client, "hosts", fields=FIELDS, status="active")
    content = sample_csv(PROGRESS_ROWS)
    mistaken = b"sample_id,volume [mL]\r\nS-1,plenty\r\n"

    accepted, receiver = upload(hosts, client, researcher, content, **RESPOND_ASYNC)
    assert accepted.status_code == 202, accepted.text
    file_id = accepted.json()["id"]
    other = other_than(hosts, receiver)
    record, seen = record_until(
        client, file_id, researcher.headers, lambda record: record["status"] in FINISHED, timeout=120
    )
    rejected, rejected_by = upload(hosts, client, researcher, mistaken)
    rejected_id = assert_problem(rejected, 422, "SAMPLE_FILE_REJECTED")["sample_file_id"]

    # Followed through the other host while the worker imported it: rows read of the rows counted...
    assert any(
        earlier["status"] == "importing"
        and 0 < earlier["progress"]["rows_read"] < PROGRESS_ROWS
        and hosts.answered_by(sent) == [other.address]
        for earlier, sent in seen
    ), [earlier["status"] for earlier, _ in seen]
    # ...then all of them.
    assert record["status"] == "imported"
    assert record["progress"] == {"rows_read": PROGRESS_ROWS, "rows_total": PROGRESS_ROWS}
    # The original, the errors and the export, each served by the host that did not take the upload.
    original = get_through(hosts, client, f"{SAMPLE_FILES}/{file_id}/content", researcher.headers, host=other)
    assert original.content == content
    errors = get_through(
        hosts,
        client,
        f"{SAMPLE_FILES}/{rejected_id}/errors.csv",
        researcher.headers,
        host=other_than(hosts, rejected_by),
    )
    assert "plenty" in errors.text
    export = get_through(
        hosts, client, f"{researcher.study_url}/samples/export", researcher.headers, host=other
    )
    assert len(export.text.splitlines()) == PROGRESS_ROWS + 1  # the header, then every sample
    # The files are objects in the shared bucket; no host keeps a temporary file of them.
    assert len(hosts.objects()) >= 2
    assert [host.temp_files() for host in hosts.apis] == [[], []]


def test_a_host_killed_mid_upload_fails_that_request_cleanly_and_nothing_is_written(hosts, client):
    researcher = researcher_with_study(client, "hosts", fields=FIELDS, status="active")
    objects_before = hosts.objects()
    sent = request_id()
    head, body = raw_upload(
        f"{researcher.study_url}/sample-files",
        {**researcher.headers, "X-Request-ID": sent},
        sample_csv(30_000),
    )
    port = int(hosts.base_url.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # The host receiving it is the one writing its temporary file.
        assert wait_for(lambda: any(host.temp_files() for host in hosts.apis), timeout=10)
        [receiver] = [host for host in hosts.apis if host.temp_files()]
        receiver.kill()
        answer = HTTPResponse(sock)
        answer.begin()
        response = httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())

    assert_problem(response, 503, "SERVICE_UNAVAILABLE")  # nginx's own answer: a POST is never resent
    assert hosts.answered_by(sent) == [receiver.address]
    # Nothing of it anywhere the other host (or anyone) could see: no record, no sample, no object.
    listed = client.get(f"{researcher.study_url}/sample-files", headers=researcher.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 0
    assert sample_count(client, researcher) == 0
    assert hosts.objects() == objects_before
    # Only the dead host's own half-received temporary file, which its prune removes a day later.
    assert other_than(hosts, receiver).temp_files() == []


def test_an_import_whose_worker_is_killed_is_finished_by_the_next_worker_and_written_once(hosts, client):
    researcher = researcher_with_study(client, "hosts", fields=FIELDS, status="active")
    accepted, _ = upload(hosts, client, researcher, sample_csv(KILLED_IMPORT_ROWS), **RESPOND_ASYNC)
    assert accepted.status_code == 202, accepted.text
    file_id = accepted.json()["id"]
    record_until(
        client,
        file_id,
        researcher.headers,
        lambda record: record["status"] == "importing" and record["progress"]["rows_read"] > 0,
        timeout=60,
    )

    hosts.worker.kill()

    [record] = client.get(f"{researcher.study_url}/sample-files", headers=researcher.headers).json()["items"]
    assert record["status"] == "importing"  # as the dead worker left it
    assert record["progress"]["rows_read"] < KILLED_IMPORT_ROWS
    assert sample_count(client, researcher) == 0  # its rows died with its transaction
    time.sleep(WORKER_STALLED_SECONDS + 0.5)  # its heartbeat is now older than that
    hosts.worker.start()  # the next worker: puts the dead one's job back in the queue and runs it
    record, _ = record_until(
        client, file_id, researcher.headers, lambda record: record["status"] in FINISHED, timeout=120
    )

    assert record["status"] == "imported", record
    assert record["progress"] == {"rows_read": KILLED_IMPORT_ROWS, "rows_total": KILLED_IMPORT_ROWS}
    assert sample_count(client, researcher) == KILLED_IMPORT_ROWS  # every row, once


def test_restarting_the_hosts_one_at_a_time_under_a_read_load_fails_no_get(hosts, client):
    researcher = researcher_with_study(client, "hosts", fields=FIELDS, status="active")
    imported, _ = upload(hosts, client, researcher, sample_csv(10))
    assert imported.status_code == 201, imported.text
    paths = [
        researcher.study_url,
        f"{researcher.study_url}/sample-files",
        f"{SAMPLE_FILES}/{imported.json()['id']}",
        f"{SAMPLE_FILES}/{imported.json()['id']}/content",
    ]

    # A GET sent to a host that is starting waits for its worker to boot (it listens before): slow,
    # not failed, so the clients wait as long as nginx would (proxy_read_timeout).
    with Load(hosts.base_url, paths, researcher.headers, threads=3, limit=150, timeout=60) as load:
        time.sleep(1)
        first_stopped = time.monotonic()
        for host in hosts.apis:
            host.stop()  # gracefully: requests in flight finish, new connections are refused
            host.start()  # back, answering on its address again
        last_started = time.monotonic()
        time.sleep(1)

    failed = [outcome for outcome in load.outcomes if outcome.status != 200]
    assert failed == []
    assert len(load.outcomes) > 50
    # Before, during and after the restarts.
    assert min(outcome.started for outcome in load.outcomes) < first_stopped
    assert max(outcome.started for outcome in load.outcomes) > last_started
    for host in hosts.apis:  # each restarted host took its share of the load again
        assert '"logger": "studybase.access"' in host.log().read_text(encoding="utf-8"), host.name
