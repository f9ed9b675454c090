"""Real parallel requests through nginx to two gunicorn workers on PostgreSQL: whichever worker serves
a request, a stale write loses, an upload imports once, and a revoked access is refused at once.

Each race runs several rounds so that both orders of arrival (and both workers) get their turn.
Requests come from the address nginx exempts from its rate limits, as a busy office would.
"""

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import httpx
import pytest

from tests.conftest import bearer
from tests.stack.conftest import (
    TRUSTED_CLIENT_ADDRESS,
    join_by_invitation,
    register_and_sign_in,
    researcher_with_study,
)

pytestmark = pytest.mark.stack

ROUNDS = 8
FIELDS = [{"name": "volume", "type": "number", "unit": "mL", "required": False}]
# How long the hammering threads run on each side of a revocation.
RACE_SECONDS = 1.0


@pytest.fixture
def clients(client_from) -> Callable[[], httpx.Client]:
    """`clients()`: another connection to nginx, from the rate-limit-exempt address."""
    return lambda: client_from(TRUSTED_CLIENT_ADDRESS)


def at_once(*requests: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the requests in parallel threads, released together by a barrier."""
    barrier = threading.Barrier(len(requests))

    def released(request: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=10)
        return request()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(released, requests))


def test_two_patches_with_the_same_if_match_one_wins_the_other_is_412(clients):
    first, second = clients(), clients()
    researcher = researcher_with_study(first, "racer", fields=FIELDS)
    created = first.post(
        f"{researcher.study_url}/samples",
        json={"sample_id": "RACE-1", "values": {}},
        headers=researcher.headers,
    )
    assert created.status_code == 201, created.text
    sample_url = f"{researcher.study_url}/samples/{created.json()['id']}"

    for round_ in range(ROUNDS):
        read = first.get(sample_url, headers=researcher.headers)
        tag = read.headers["etag"]
        headers = {**researcher.headers, "If-Match": tag}

        responses = at_once(
            partial(first.patch, sample_url, json={"values": {"volume": round_ + 0.25}}, headers=headers),
            partial(second.patch, sample_url, json={"values": {"volume": round_ + 0.75}}, headers=headers),
        )

        assert sorted(response.status_code for response in responses) == [200, 412], [
            r.text for r in responses
        ]
        winner = next(response for response in responses if response.status_code == 200)
        loser = next(response for response in responses if response.status_code == 412)
        assert loser.headers["content-type"] == "application/problem+json"
        assert loser.json()["code"] == "PRECONDITION_FAILED"
        now = first.get(sample_url, headers=researcher.headers).json()
        assert now["version"] == read.json()["version"] + 1
        assert now["values"] == winner.json()["values"]


def test_two_identical_uploads_at_once_import_once(clients):
    first, second = clients(), clients()
    researcher = researcher_with_study(first, "racer", fields=FIELDS)
    imported = 0

    for round_ in range(3):
        rows = "".join(f"R{round_}-{number},{number}.5\r\n" for number in range(2_000))
        content = ("sample_id,volume [mL]\r\n" + rows).encode()

        def send(http: httpx.Client, content: bytes = content) -> httpx.Response:
            return http.post(
                f"{researcher.study_url}/sample-files",
                files={"file": ("samples.csv", content, "text/csv")},
                headers=researcher.headers,
            )

        responses = at_once(lambda: send(first), lambda: send(second))

        assert sorted(response.status_code for response in responses) == [200, 201], [
            r.text for r in responses
        ]
        assert len({response.json()["id"] for response in responses}) == 1
        imported += 2_000
        study = first.get(researcher.study_url, headers=researcher.headers).json()
        assert study["sample_count"] == imported
    listed = first.get(f"{researcher.study_url}/sample-files", headers=researcher.headers).json()
    # Each round: the import, and the other upload's own record naming it (it imported nothing).
    assert sorted(item["duplicate_of"] is not None for item in listed["items"]) == [False] * 3 + [True] * 3


@dataclass(frozen=True)
class Attempt:
    started: float
    finished: float
    status: int


def hammer(http: httpx.Client, url: str, headers: dict[str, str], stop: threading.Event) -> list[Attempt]:
    """GET url until told to stop (at most 2,000 times), noting when each request left and came back."""
    attempts: list[Attempt] = []
    while not stop.is_set() and len(attempts) < 2_000:
        started = time.monotonic()
        status = http.get(url, headers=headers).status_code
        attempts.append(Attempt(started, time.monotonic(), status))
    return attempts


def race_revocation(
    clients: Callable[[], httpx.Client],
    url: str,
    headers: dict[str, str],
    revoke: Callable[[], httpx.Response],
) -> tuple[list[Attempt], float, float]:
    """Two connections (so both workers serve) GET url while `revoke` runs, and one more GET sent the
    moment it returned; returns every attempt and when the revoking request left and was answered."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        running = [pool.submit(hammer, clients(), url, headers, stop) for _ in range(2)]
        try:
            time.sleep(RACE_SECONDS)
            revoke_sent = time.monotonic()
            revoked = revoke()
            revoke_answered = next_sent = time.monotonic()
            very_next = clients().get(url, headers=headers)
            attempts = [Attempt(next_sent, time.monotonic(), very_next.status_code)]
            time.sleep(RACE_SECONDS)
        finally:
            stop.set()
        assert revoked.status_code == 204, revoked.text
        attempts += [attempt for future in running for attempt in future.result()]
    return attempts, revoke_sent, revoke_answered


def assert_refused_from_the_moment_it_returned(
    attempts: list[Attempt], revoke_sent: float, revoke_answered: float, refused: int
) -> None:
    before = [attempt.status for attempt in attempts if attempt.finished < revoke_sent]
    after = [attempt.status for attempt in attempts if attempt.started >= revoke_answered]
    assert before
    assert set(before) == {200}
    assert after
    assert set(after) == {refused}
    # Requests in flight while it ran may go either way, but nothing else.
    assert {attempt.status for attempt in attempts} <= {200, refused}


def test_a_removed_member_is_refused_from_the_request_after_the_removal(clients, http, stack_smtp):
    owner_http = clients()
    owner = researcher_with_study(owner_http, "racer", fields=FIELDS)
    email = f"member-{uuid.uuid4().hex[:10]}@example.org"
    member_headers = bearer(register_and_sign_in(http, email))
    member_id = http.get("/api/v1/auth/me", headers=member_headers).json()["id"]
    join_by_invitation(
        owner_http,
        stack_smtp,
        study_url=owner.study_url,
        owner_headers=owner.headers,
        member_headers=member_headers,
        email=email,
        role="editor",
    )

    attempts, sent, answered = race_revocation(
        clients,
        owner.study_url,
        member_headers,
        lambda: owner_http.delete(f"{owner.study_url}/members/{member_id}", headers=owner.headers),
    )

    assert_refused_from_the_moment_it_returned(attempts, sent, answered, refused=404)
    assert owner_http.get(owner.study_url, headers=member_headers).status_code == 404


def test_a_revoked_session_is_refused_from_the_request_after_the_revocation(clients, http):
    email = f"sessions-{uuid.uuid4().hex[:10]}@example.org"
    hammered = bearer(register_and_sign_in(http, email))
    revoking = bearer(
        http.post("/api/v1/auth/token", data={"username": email, "password": "stack test passphrase"}).json()
    )
    sessions = http.get("/api/v1/auth/sessions", headers=hammered).json()
    hammered_id = next(session["id"] for session in sessions if session["current"])
    revoker = clients()

    attempts, sent, answered = race_revocation(
        clients,
        "/api/v1/auth/me",
        hammered,
        lambda: revoker.delete(f"/api/v1/auth/sessions/{hammered_id}", headers=revoking),
    )

    assert_refused_from_the_moment_it_returned(attempts, sent, answered, refused=401)
    assert revoker.get("/api/v1/auth/me", headers=revoking).status_code == 200


def test_signing_out_everywhere_is_refused_from_the_request_after_it(clients, http):
    tokens = register_and_sign_in(http, f"everywhere-{uuid.uuid4().hex[:10]}@example.org")
    signer_out = clients()

    attempts, sent, answered = race_revocation(
        clients,
        "/api/v1/auth/me",
        bearer(tokens),
        lambda: signer_out.post("/api/v1/auth/logout-all", headers=bearer(tokens)),
    )

    assert_refused_from_the_moment_it_returned(attempts, sent, answered, refused=401)
