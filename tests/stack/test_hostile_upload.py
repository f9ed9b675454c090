"""Finding 1 of issue 16 through the real topology (nginx, gunicorn with 2 workers, PostgreSQL,
production settings): the endless-rows workbook is refused within seconds while 24 clients write to
the same study, 8 poll the health checks and /auth/me and the owner signs in throughout; no write waits
longer than the lock timeout + 1 s (+ what the machine's load added to a lockless poll in the same run),
nothing answers 503, every sign-in succeeds.

The test starts a stack of its own rather than the session's: if the file is ever read for longer
than it should be, the runaway import dies with this stack instead of loading the next tests' workers.
"""

import httpx
import pytest

from tests.stack.conftest import fresh_client_address, mail_settings_for, running_stack
from tests.upload_under_load import (
    POSTGRESQL_WRITE_BOUND_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    assert_refused_promptly_while_everyone_else_was_served,
    upload_while_the_study_is_busy,
)

pytestmark = pytest.mark.stack


def test_an_endless_rows_workbook_is_refused_while_writes_polls_and_sign_in_go_on(stack_database, stack_smtp):
    with running_stack(stack_database, settings=mail_settings_for(stack_smtp)) as stack:

        def new_client() -> httpx.Client:
            transport = httpx.HTTPTransport(local_address=fresh_client_address())
            return httpx.Client(base_url=stack.base_url, transport=transport, timeout=REQUEST_TIMEOUT_SECONDS)

        outcome = upload_while_the_study_is_busy(new_client)

    print(outcome.summary())
    assert_refused_promptly_while_everyone_else_was_served(
        outcome, write_bound=POSTGRESQL_WRITE_BOUND_SECONDS
    )
