"""The real topology as processes: PostgreSQL database, gunicorn (2 uvicorn workers), nginx.

Skipped with a reason when nginx or PostgreSQL is missing, except under CI (CI=true), where a
missing piece fails the run. Every process is stopped and the database dropped, even on failure.
"""

import os
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from scripts import local_stack

UNDER_CI = os.environ.get("CI", "").lower() == "true"
STACK_POSTGRES_URL = os.environ.get("STACK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STACK_MAX_UPLOAD_MB = 2
STACK_SECRET_KEY = "stack-test-secret-key-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Stack:
    base_url: str
    api_url: str
    gunicorn: "local_stack.subprocess.Popen[bytes]"
    work_dir: Path

    @property
    def access_log(self) -> Path:
        return self.work_dir / "nginx" / "access.log"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    name = f"studybase_stack_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(STACK_POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    server = STACK_POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(STACK_POSTGRES_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def stack(stack_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work_dir = tmp_path_factory.mktemp("stack")
    work_dir.chmod(0o755)
    api_port, nginx_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEST_", "DATABASE_", "SECRET_", "LOGIN_", "OPEN_", "CORS_", "ENVIRONMENT"))
    } | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": stack_database,
        "SECRET_KEY": STACK_SECRET_KEY,
        "UPLOAD_DIR": str(work_dir / "uploads"),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }
    local_stack.migrate(env)
    config = local_stack.render_nginx_config(
        work_dir / "nginx",
        listen=f"127.0.0.1:{nginx_port}",
        upstream=f"127.0.0.1:{api_port}",
        max_upload_mb=STACK_MAX_UPLOAD_MB,
    )
    gunicorn = local_stack.start_gunicorn(
        bind=f"127.0.0.1:{api_port}", workers=2, env=env, log=work_dir / "gunicorn.log"
    )
    nginx = None
    try:
        local_stack.wait_until_answering(f"http://127.0.0.1:{api_port}/api/v1/health", process=gunicorn)
        nginx = local_stack.start_nginx(config)
        local_stack.wait_until_answering(f"http://127.0.0.1:{nginx_port}/healthz", process=nginx)
        yield Stack(
            base_url=f"http://127.0.0.1:{nginx_port}",
            api_url=f"http://127.0.0.1:{api_port}",
            gunicorn=gunicorn,
            work_dir=work_dir,
        )
    finally:
        if nginx is not None:
            local_stack.stop(nginx)
        local_stack.stop(gunicorn)
        shutil.rmtree(work_dir / "nginx" / "client_body", ignore_errors=True)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        yield client
