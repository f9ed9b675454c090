"""The real topology as processes: PostgreSQL database, gunicorn (2 uvicorn workers), nginx.

Skipped with a reason when nginx or PostgreSQL is missing, except under CI (CI=true), where a
missing piece fails the run. Every process is stopped and the database dropped, even on failure.
"""

import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from scripts import local_stack
from scripts.local_stack import free_port
from tests.conftest import bearer
from tests.smtp_server import Delivered, SmtpTestServer, running_smtp_server
from tests.stack.links import CuttableLink

UNDER_CI = os.environ.get("CI", "").lower() == "true"
STACK_POSTGRES_URL = os.environ.get("STACK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STACK_MAX_UPLOAD_MB = 2
STACK_SECRET_KEY = "stack-test-secret-key-" + uuid.uuid4().hex
# Exempt from nginx's rate and connection limits, as a benchmark's load generator would be; far
# from the addresses fresh_client_address() hands out.
TRUSTED_CLIENT_ADDRESS = "127.255.0.1"
# The browser of the page tests (test_dashboard_page.py) cannot choose its address: it speaks from
# 127.0.0.1, which fresh_client_address() never hands out, and signs in about once per test, more
# often than the sign-in limit allows one address. Trusted like a load generator.
BROWSER_CLIENT_ADDRESS = "127.0.0.1"
# What the stack's mailed links point at (production wants a real PUBLIC_URL once SMTP_URL is set);
# the tests open the same path and fragment on the stack's own address.
STACK_PUBLIC_URL = "https://studybase.example.org"
STACK_MAIL_FROM = "Studybase <noreply@example.org>"


@dataclass(frozen=True)
class Stack:
    base_url: str
    api_url: str
    nginx_port: int
    gunicorn: "local_stack.subprocess.Popen[bytes]"
    work_dir: Path

    @property
    def access_log(self) -> Path:
        return self.work_dir / "nginx" / "access.log"

    def access_log_entry(self, request_id: str, timeout: float = 3.0) -> dict:
        return access_log_entry(self.access_log, request_id, timeout=timeout)


def access_log_entry(access_log: Path, request_id: str, timeout: float = 3.0) -> dict:
    """nginx's line for the request: nginx writes it after the response is sent, so wait briefly."""
    deadline = time.monotonic() + timeout
    while True:
        for line in access_log.read_text().splitlines():
            entry = json.loads(line)
            if entry["request_id"] == request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no access log line with request id {request_id}")
        time.sleep(0.05)


STACK_PASSWORD = "stack test passphrase"


def register_and_sign_in(http: httpx.Client, email: str, **headers: str) -> dict:
    """A new account (password STACK_PASSWORD) and the token pair of its first sign-in.
    Registration answers 202 whether or not the address was new; the shared stack does not require
    verified addresses, so the account is made at once and signing in shows it (where addresses
    must be verified, the mailed link makes it first: test_mail.py's stack of its own)."""
    registered = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": STACK_PASSWORD, "full_name": "Stack Tester"},
    )
    assert registered.status_code == 202, registered.text
    signed_in = http.post(
        "/api/v1/auth/token", data={"username": email, "password": STACK_PASSWORD}, headers=headers
    )
    assert signed_in.status_code == 200, signed_in.text
    return signed_in.json()


@dataclass(frozen=True)
class ResearcherWithStudy:
    email: str
    headers: dict[str, str]
    study: dict  # the study as the API last answered it

    @property
    def study_id(self) -> str:
        return self.study["id"]

    @property
    def study_url(self) -> str:
        return f"/api/v1/studies/{self.study_id}"


# The status changes (POST .../status) that take a new study, a draft, to each status.
_STATUS_PATH = {
    "draft": [],
    "active": ["active"],
    "locked": ["active", "locked"],
    "archived": ["active", "archived"],
}


def researcher_with_study(
    http: httpx.Client, name: str, *, fields: Sequence[dict] = (), status: str = "draft"
) -> ResearcherWithStudy:
    """A new account (`<name>-…@example.org`, signed in) that owns a new study with these sample fields,
    moved through the API to `status`."""
    suffix = uuid.uuid4().hex[:10]
    email = f"{name}-{suffix}@example.org"
    headers = bearer(register_and_sign_in(http, email))
    study = {"code": f"{name[:8].upper()}-{suffix}", "title": f"{name} study", "sample_fields": list(fields)}
    created = http.post("/api/v1/studies", json=study, headers=headers)
    assert created.status_code == 201, created.text
    study = created.json()
    for step in _STATUS_PATH[status]:
        changed = http.post(f"/api/v1/studies/{study['id']}/status", json={"status": step}, headers=headers)
        assert changed.status_code == 200, changed.text
        study = changed.json()
    return ResearcherWithStudy(email=email, headers=headers, study=study)


def missing_piece() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the stack tests run on Linux (they read gunicorn's workers from /proc)"
    try:
        local_stack.nginx_binary()
    except FileNotFoundError as exc:
        return str(exc)
    try:
        psycopg.connect(STACK_POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return f"PostgreSQL is not reachable at {STACK_POSTGRES_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def stack_database() -> Iterator[str]:
    problem = missing_piece()
    if problem:
        if UNDER_CI:
            pytest.fail(f"stack tests need nginx and PostgreSQL under CI: {problem}")
        pytest.skip(problem)
    with local_stack.throwaway_database(STACK_POSTGRES_URL, prefix="studybase_stack") as url:
        yield url


@pytest.fixture(scope="module")
def database_link(stack_database: str) -> Iterator[CuttableLink]:
    """A TCP relay to the stack's PostgreSQL that a test can cut or black-hole (tests/stack/links.py);
    one per test module, for the stack of its own that module starts through it."""
    url = make_url(stack_database)
    link = CuttableLink(url.host or "127.0.0.1", url.port or 5432)
    link.start()
    yield link
    link.close()


def stack_environment(database_url: str, work_dir: Path) -> dict[str, str]:
    """Every setting the stack relies on, set explicitly: a developer's `.env` must not leak in."""
    return dict(os.environ) | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": STACK_SECRET_KEY,
        "UPLOAD_DIR": str(work_dir / "uploads"),
        "MAX_UPLOAD_MB": str(STACK_MAX_UPLOAD_MB),
        "CORS_ORIGINS": "",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "15",
        "REFRESH_TOKEN_EXPIRE_DAYS": "14",
        "OPEN_REGISTRATION": "true",
        # The stack's accounts register and go straight to work (production's default is true: a
        # registration then makes no account until its mailed link is followed, tested on a stack of
        # its own in test_mail.py).
        "REQUIRE_EMAIL_VERIFICATION": "false",
        "LOGIN_MAX_FAILURES": "5",
        "LOGIN_LOCKOUT_MINUTES": "15",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def running_stack(
    database_url: str,
    *,
    workers: int = 2,
    cors_origins: Sequence[str] = (),
    name: str = "studybase-stack-tests",
    settings: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """gunicorn and nginx with the committed configs, on free ports, against `database_url`; both
    are stopped and their folder removed on leaving, whatever happened."""
    # Not under pytest's 0700 temp folder: nginx workers (nobody, when root starts nginx) buffer
    # request bodies to files in here and must be able to reach it.
    work_dir = Path(tempfile.mkdtemp(prefix="studybase-stack-tests-"))
    work_dir.chmod(0o755)
    api_port, nginx_port = free_port(), free_port()
    env = stack_environment(database_url, work_dir) | {
        "CORS_ORIGINS": ",".join(cors_origins),
        **(settings or {}),
    }
    local_stack.migrate(env)
    config = local_stack.render_nginx_config(
        work_dir / "nginx",
        listen=f"127.0.0.1:{nginx_port}",
        upstream=f"127.0.0.1:{api_port}",
        max_upload_mb=STACK_MAX_UPLOAD_MB,
        trusted_clients=[TRUSTED_CLIENT_ADDRESS, BROWSER_CLIENT_ADDRESS],
        cors_origins=cors_origins,
    )
    gunicorn = local_stack.start_gunicorn(
        bind=f"127.0.0.1:{api_port}", workers=workers, env=env, log=work_dir / "gunicorn.log"
    )
    nginx = None
    try:
        local_stack.wait_until_answering(f"http://127.0.0.1:{api_port}/api/v1/health", process=gunicorn)
        nginx = local_stack.start_nginx(config)
        local_stack.wait_until_answering(f"http://127.0.0.1:{nginx_port}/healthz", process=nginx)
        yield Stack(
            base_url=f"http://127.0.0.1:{nginx_port}",
            api_url=f"http://127.0.0.1:{api_port}",
            nginx_port=nginx_port,
            gunicorn=gunicorn,
            work_dir=work_dir,
        )
    finally:
        if nginx is not None:
            local_stack.stop(nginx)
        local_stack.stop(gunicorn)
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_smtp() -> Iterator[SmtpTestServer]:
    """The SMTP server the stack's workers send their mail to (tests/smtp_server.py)."""
    with running_smtp_server() as server:
        yield server


def mails_to(smtp: SmtpTestServer, email: str, count: int, *, about: str = "") -> list[Delivered]:
    """Waits until `count` messages for `email` whose subject holds `about` have arrived (the workers
    send them; registration's verification mail is one too)."""
    for _ in range(100):
        mine = [
            delivered
            for delivered in smtp.messages
            if delivered.rcpt_tos == [email] and about in str(delivered.message["Subject"])
        ]
        if len(mine) >= count:
            return mine
        smtp.wait_for(len(smtp.messages) + 1, timeout=10)
    raise AssertionError(f"fewer than {count} mails for {email}")


INVITATION_SUBJECT = "invites you to the study"
RESET_SUBJECT = "password"
VERIFICATION_SUBJECT = "Verify your Studybase email address"
# Where addresses must be verified, a new address's registration is mailed this link instead.
REGISTRATION_LINK_SUBJECT = "Confirm your address to create your Studybase account"
REGISTRATION_ATTEMPT_SUBJECT = "Someone tried to create a Studybase account with your address"


def mailed_link_token(delivered: Delivered, page: str) -> str:
    """The token of the mail's one link to `page` (`/invitations`, `/verify-email`...)."""
    return delivered.link_token(f"{STACK_PUBLIC_URL}{page}")


def join_by_invitation(
    http: httpx.Client,
    smtp: SmtpTestServer,
    *,
    study_url: str,
    owner_headers: dict[str, str],
    member_headers: dict[str, str],
    email: str,
    role: str,
) -> dict:
    """The owner invites `email`; its owner accepts with the token of the mail the workers sent:
    the one way into a study. Returns the accepted invitation's answer."""
    before = len(mails_to(smtp, email, 0, about=INVITATION_SUBJECT))
    invited = http.post(f"{study_url}/members", json={"email": email, "role": role}, headers=owner_headers)
    assert invited.status_code == 202, invited.text
    token = mailed_link_token(mails_to(smtp, email, before + 1, about=INVITATION_SUBJECT)[-1], "/invitations")
    accepted = http.post("/api/v1/invitations/accept", json={"token": token}, headers=member_headers)
    assert accepted.status_code == 200, accepted.text
    return accepted.json()


def mail_settings_for(smtp: SmtpTestServer) -> dict[str, str]:
    return {"SMTP_URL": smtp.url(), "PUBLIC_URL": STACK_PUBLIC_URL, "MAIL_FROM": STACK_MAIL_FROM}


@pytest.fixture(scope="session")
def stack(stack_database: str, stack_smtp: SmtpTestServer) -> Iterator[Stack]:
    with running_stack(stack_database, settings=mail_settings_for(stack_smtp)) as running:
        yield running


# Rate limits are per client address: every test speaks from an address of its own on the
# loopback network (127.0.0.0/8), so no test spends another's budget.
_client_addresses = (f"127.0.{n // 250}.{n % 250 + 2}" for n in itertools.count(1))


def fresh_client_address() -> str:
    return next(_client_addresses)


@pytest.fixture
def client_from(stack: Stack) -> Iterator[Callable[..., httpx.Client]]:
    """`http = client_from()`: a client to nginx from a fresh loopback address (or the one given)."""
    clients: list[httpx.Client] = []

    def new_client(address: str | None = None) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address or fresh_client_address())
        clients.append(httpx.Client(base_url=stack.base_url, transport=transport, timeout=10))
        return clients[-1]

    yield new_client
    for client in clients:
        client.close()


@pytest.fixture
def http(client_from) -> httpx.Client:
    return client_from()
