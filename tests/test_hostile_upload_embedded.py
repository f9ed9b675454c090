"""Finding 1 of issue 16 on the embedded default: `python main.py` (one uvicorn process, SQLite in a
temporary folder, as a new user runs it), the same scenario as the stack's
(tests/stack/test_hostile_upload.py): the endless-rows workbook is refused within seconds while 24
clients write to the study, 8 poll and the owner signs in; no write waits longer than the lock timeout
+ 1 s, nothing answers 503, every sign-in succeeds.

SQLite lets one writer into the whole database at a time: a write that waits longer than its busy
timeout (5 s, SQLITE_BUSY_TIMEOUT_MS) answers 503 DATABASE_UNAVAILABLE, so a file that held the
write lock while it was read would show here as 503s. It needs nothing beyond the Python packages, so
it is not a stack test; it runs its own SQLite server whatever TEST_DATABASE_URL says, so the run of
the suite on PostgreSQL skips it.
"""

import os
import secrets
from collections.abc import Iterator

import httpx
import pytest

from scripts import local_stack
from src.config import settings
from tests.conftest import TEST_DATABASE_URL
from tests.upload_under_load import (
    REQUEST_TIMEOUT_SECONDS,
    SQLITE_WRITE_BOUND_SECONDS,
    assert_refused_promptly_while_everyone_else_was_served,
    upload_while_the_study_is_busy,
)

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL.startswith("postgresql"),
    reason="starts its own SQLite server (python main.py): the suite's SQLite run covers it",
)
# A server still reading a file when the test ends is not waited for long.
STOP_SECONDS = 10.0


@pytest.fixture
def embedded_server(tmp_path) -> Iterator[str]:
    """`python main.py` with the defaults a new user has (development, SQLite) on a free loopback
    port; its base URL. Stopped, whatever happened."""
    port = local_stack.free_port()
    env = {name: value for name, value in os.environ.items() if name != "WEB_CONCURRENCY"} | {
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{(tmp_path / 'studybase.db').as_posix()}",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "CORS_ORIGINS": "",
        "OPEN_REGISTRATION": "true",
        "LOG_LEVEL": "INFO",
        "DATABASE_LOCK_TIMEOUT_SECONDS": str(settings.DATABASE_LOCK_TIMEOUT_SECONDS),
    }
    server = local_stack.start_embedded(env=env, log=tmp_path / "server.log")
    try:
        local_stack.wait_until_answering(f"http://127.0.0.1:{port}/api/v1/health", process=server)
        yield f"http://127.0.0.1:{port}"
    finally:
        local_stack.stop(server, timeout=STOP_SECONDS)


def test_an_endless_rows_workbook_is_refused_while_writes_polls_and_sign_in_go_on(embedded_server):
    outcome = upload_while_the_study_is_busy(
        lambda: httpx.Client(base_url=embedded_server, timeout=REQUEST_TIMEOUT_SECONDS)
    )

    print(outcome.summary())
    assert_refused_promptly_while_everyone_else_was_served(outcome, write_bound=SQLITE_WRITE_BOUND_SECONDS)
