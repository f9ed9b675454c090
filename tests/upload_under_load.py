"""Issue 16's finding 1 as a user meets it, against a real server: the endless-rows workbook (a header,
then a row referenced 10^15) uploaded to a study while 24 clients write to that study, 8 poll the
health checks and /auth/me, and sign-in goes on throughout.

Shared by the stack test (nginx, gunicorn, PostgreSQL: tests/stack/test_hostile_upload.py) and the
embedded one (`python main.py` on SQLite: tests/test_hostile_upload_embedded.py). `new_client()`
gives a client of the server under test; behind nginx each one speaks from a loopback address of
its own, so no client spends another's rate limit. Every loop is bounded in count and time, every
request has a timeout, and the traffic stops by itself a couple of seconds after the upload's answer.
"""

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from benchmarks.hostile_files import FIELDS, endless_rows_xlsx
from src.config import settings
from src.database import SQLITE_BUSY_TIMEOUT_MS
from tests.stack.conftest import STACK_PASSWORD, ResearcherWithStudy, researcher_with_study

WRITERS = 24
POLLERS = 8
# The upload is sent once the other clients are under way, and they go on this long after its answer.
WARM_UP_SECONDS = 2.0
AFTER_SECONDS = 2.0
SIGN_IN_AFTER_SECONDS = 15.0
UPLOAD_DEADLINE_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 10.0
# What a write may wait for a lock, plus a second for the work itself.
# How long a write may wait for a lock, + 1 s: PostgreSQL's lock timeout (the stack); SQLite's busy
# wait for its database-wide write lock (the embedded default), in which writers queue, not in order.
POSTGRESQL_WRITE_BOUND_SECONDS = settings.DATABASE_LOCK_TIMEOUT_SECONDS + 1.0
SQLITE_WRITE_BOUND_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000 + 1.0
# Each client's pace, far below nginx's 20 requests/s per address: 24 writers send ~120 writes/s.
WRITE_INTERVAL_SECONDS = 0.2
POLL_INTERVAL_SECONDS = 0.2
SIGN_IN_INTERVAL_SECONDS = 0.5
MAX_REQUESTS_PER_CLIENT = 200
POLLED = ("/api/v1/health", "/api/v1/health/ready", "/api/v1/auth/me")
WRITES = ("create", "edit")
HOSTILE_FILENAME = "samples.xlsx"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Answer:
    kind: str
    status: int | None  # None: no answer (a timeout or a broken connection)
    started: float  # time.monotonic()
    seconds: float
    problem: str = ""  # a problem+json answer's code, or the transport error's name

    @property
    def finished(self) -> float:
        return self.started + self.seconds


@dataclass
class Answers:
    """Every answer the clients got, noted from any thread."""

    all: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, kind: str, http: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            self._note(Answer(kind, None, started, time.monotonic() - started, type(error).__name__))
            return None
        problem = ""
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            problem = str(response.json().get("code", ""))
        self._note(Answer(kind, response.status_code, started, time.monotonic() - started, problem))
        return response

    def _note(self, answer: Answer) -> None:
        with self.lock:
            self.all.append(answer)

    def of(self, *kinds: str) -> list[Answer]:
        return [answer for answer in self.all if answer.kind in kinds]


@dataclass(frozen=True)
class Outcome:
    upload: Answer
    others: list[Answer]
    created: int  # samples whose creation answered 201
    sample_count: int  # the study's count afterwards

    def of(self, *kinds: str) -> list[Answer]:
        return [answer for answer in self.others if answer.kind in kinds]

    def summary(self) -> str:
        counts = Counter((answer.kind, answer.status, answer.problem) for answer in self.others)
        slowest = {
            kind: max(answer.seconds for answer in self.of(kind))
            for kind in sorted({answer.kind for answer in self.others})
        }
        return (
            f"upload: {self.upload.status} {self.upload.problem} after {self.upload.seconds:.2f} s\n"
            f"answers by (kind, status, code): {dict(sorted(counts.items(), key=str))}\n"
            "slowest by kind (s): " + ", ".join(f"{kind} {seconds:.2f}" for kind, seconds in slowest.items())
        )


class BusyStudy:
    """The clients around the upload: each runs until `stop` is set or its bounds are reached."""

    def __init__(self, new_client: Callable[[], httpx.Client], researcher: ResearcherWithStudy) -> None:
        self.new_client, self.researcher = new_client, researcher
        self.answers = Answers()
        self.stop = threading.Event()
        self.deadline = (
            time.monotonic()
            + WARM_UP_SECONDS
            + UPLOAD_DEADLINE_SECONDS
            + AFTER_SECONDS
            + SIGN_IN_AFTER_SECONDS
            + 5.0
        )

    def going_on(self, sent: int) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline and sent < MAX_REQUESTS_PER_CLIENT

    def write(self, writer: int) -> None:
        """Create a sample, then change it with the version it was created at, again and again."""
        url, headers = f"{self.researcher.study_url}/samples", self.researcher.headers
        with self.new_client() as http:
            for round_ in range(MAX_REQUESTS_PER_CLIENT // 2):
                if not self.going_on(2 * round_):
                    return
                created = self.answers.send(
                    "create",
                    http,
                    "POST",
                    url,
                    json={"sample_id": f"W{writer}-{round_}", "values": {"note": "written"}},
                    headers=headers,
                )
                self.stop.wait(WRITE_INTERVAL_SECONDS)
                if created is None or created.status_code != 201 or not self.going_on(2 * round_ + 1):
                    continue
                self.answers.send(
                    "edit",
                    http,
                    "PATCH",
                    f"{url}/{created.json()['id']}",
                    json={"values": {"note": "edited"}},
                    headers={**headers, "If-Match": created.headers["etag"]},
                )
                self.stop.wait(WRITE_INTERVAL_SECONDS)

    def poll(self, poller: int) -> None:
        with self.new_client() as http:
            for sent in range(MAX_REQUESTS_PER_CLIENT):
                if not self.going_on(sent):
                    return
                path = POLLED[(poller + sent) % len(POLLED)]
                self.answers.send("poll", http, "GET", path, headers=self.researcher.headers)
                self.stop.wait(POLL_INTERVAL_SECONDS)

    def sign_in(self) -> None:
        """The researcher signs in again and again, each time as a new client (behind nginx: from a new
        address, so that its strict sign-in limit is never what answers)."""
        credentials = {"username": self.researcher.email, "password": STACK_PASSWORD}
        for sent in range(MAX_REQUESTS_PER_CLIENT):
            if not self.going_on(sent):
                return
            with self.new_client() as http:
                self.answers.send("sign-in", http, "POST", "/api/v1/auth/token", data=credentials)
            self.stop.wait(SIGN_IN_INTERVAL_SECONDS)

    def until_a_sign_in_after(self, moment: float) -> None:
        """Waits (at most SIGN_IN_AFTER_SECONDS) for a sign-in begun after `moment` to be answered: on a
        loaded machine one sign-in (argon2) can outlast WARM_UP_SECONDS or AFTER_SECONDS."""
        give_up = time.monotonic() + SIGN_IN_AFTER_SECONDS
        while time.monotonic() < give_up and not any(
            answer.started > moment for answer in self.answers.of("sign-in")
        ):
            self.stop.wait(0.1)

    def upload(self, content: bytes) -> Answer:
        with self.new_client() as http:
            self.answers.send(
                "upload",
                http,
                "POST",
                f"{self.researcher.study_url}/sample-files",
                files={"file": (HOSTILE_FILENAME, content, XLSX_TYPE)},
                headers=self.researcher.headers,
                timeout=UPLOAD_DEADLINE_SECONDS,
            )
        return self.answers.of("upload")[-1]


def upload_while_the_study_is_busy(new_client: Callable[[], httpx.Client]) -> Outcome:
    """A new researcher's study, busy with writers, pollers and sign-ins; the endless-rows workbook
    uploaded to it after WARM_UP_SECONDS; the traffic stopped AFTER_SECONDS after its answer."""
    with new_client() as http:
        researcher = researcher_with_study(http, f"hostile-{uuid.uuid4().hex[:6]}", fields=FIELDS)
    busy = BusyStudy(new_client, researcher)
    content = endless_rows_xlsx()
    with ThreadPoolExecutor(max_workers=WRITERS + POLLERS + 1) as pool:
        running = [pool.submit(busy.write, writer) for writer in range(WRITERS)]
        running += [pool.submit(busy.poll, poller) for poller in range(POLLERS)]
        running.append(pool.submit(busy.sign_in))
        try:
            busy.stop.wait(WARM_UP_SECONDS)
            busy.until_a_sign_in_after(0.0)  # one answered before the upload, however loaded the machine
            upload = busy.upload(content)
            busy.stop.wait(AFTER_SECONDS)
            busy.until_a_sign_in_after(upload.finished)
        finally:
            busy.stop.set()
        for client in running:
            client.result()  # a client that failed on its own (not an answer) fails the test here
    with new_client() as http:
        study = http.get(researcher.study_url, headers=researcher.headers, timeout=REQUEST_TIMEOUT_SECONDS)
    assert study.status_code == 200, study.text
    others = [answer for answer in busy.answers.all if answer.kind != "upload"]
    created = sum(1 for answer in others if answer.kind == "create" and answer.status == 201)
    return Outcome(upload=upload, others=others, created=created, sample_count=study.json()["sample_count"])


def assert_refused_promptly_while_everyone_else_was_served(outcome: Outcome, *, write_bound: float) -> None:
    upload = outcome.upload
    assert upload.status is not None, (
        f"the endless-rows workbook got no answer within {UPLOAD_DEADLINE_SECONDS:.0f} s "
        f"({upload.problem}): its rows are still being read\n{outcome.summary()}"
    )
    assert 400 <= upload.status < 500, f"the endless-rows workbook was not refused\n{outcome.summary()}"
    assert upload.seconds <= UPLOAD_DEADLINE_SECONDS, outcome.summary()

    unavailable = [answer for answer in outcome.others if answer.status == 503]
    assert not unavailable, f"{len(unavailable)} answers were 503\n{outcome.summary()}"
    unanswered = [answer for answer in outcome.others if answer.status is None]
    assert not unanswered, f"{len(unanswered)} requests got no answer\n{outcome.summary()}"

    # A shared 2-core machine slows every request alike: what the slowest request that takes no lock
    # (a poll) took in the same run is added to the bound, so only waiting on a lock can exceed it.
    polls = outcome.of("poll")
    load_lag = max((answer.seconds for answer in polls), default=0.0)
    writes = outcome.of(*WRITES)
    slow = [answer for answer in writes if answer.seconds > write_bound + load_lag]
    assert not slow, (
        f"{len(slow)} writes took longer than {write_bound + load_lag:.2f} s (the lock timeout + 1 s + "
        f"the slowest poll's {load_lag:.2f} s), the slowest {max(answer.seconds for answer in slow):.2f} s"
        f"\n{outcome.summary()}"
    )
    assert {answer.status for answer in writes} <= {200, 201}, outcome.summary()
    assert outcome.created >= WRITERS, f"not every writer created a sample\n{outcome.summary()}"
    assert outcome.sample_count == outcome.created, "the refused file imported samples, or a 201 lost one"

    sign_ins = outcome.of("sign-in")
    assert {answer.status for answer in sign_ins} == {200}, outcome.summary()
    answered_at = upload.finished
    assert any(answer.finished < upload.started for answer in sign_ins), "no sign-in before the upload"
    assert any(answer.started > answered_at for answer in sign_ins), "no sign-in after the upload's answer"

    assert len(polls) >= POLLERS, outcome.summary()
    assert {answer.status for answer in polls} == {200}, outcome.summary()
