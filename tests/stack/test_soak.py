"""A bounded soak through nginx: mixed reads, writes and uploads at moderate concurrency for
SOAK_SECONDS (60 by default; `SOAK_SECONDS=1800 python -m pytest tests/stack/test_soak.py -s` for a
long one). No answer is a 5xx, and no gunicorn worker grows by more than a few MB after warm-up.
It prints its numbers (run with -s to see them).
"""

import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.stack.conftest import TRUSTED_CLIENT_ADDRESS, Stack, researcher_with_study
from tests.stack.test_stack import worker_pids

pytestmark = pytest.mark.stack

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SOAK_CLIENTS = int(os.environ.get("SOAK_CLIENTS", "6"))
# The first third warms the workers up (imports, pools, caches); growth is measured after it.
WARM_UP_FRACTION = 1 / 3
MAX_GROWTH_MB = 8
FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0},
]
# What a well-behaved client may get back in this mix: success, or losing a race it took part in
# (a sample another client just changed or deleted).
EXPECTED = {200, 201, 204, 304, 404, 409, 412}
# And for uploads, all sent by one user: 429 TOO_MANY_IMPORTS while that user already has
# IMPORTS_PER_USER imports running (the fairness bound of issue 16), never anything else.
EXPECTED_FOR_UPLOADS = EXPECTED | {429}
# What success is for each kind of request the clients send. Every kind must succeed at least once:
# a run whose writes or uploads were all refused (4xx) would otherwise pass without having done them.
SUCCESS = {"read": 200, "create": 201, "edit": 200, "delete": 204, "upload": 201}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, response: httpx.Response, seconds: float) -> None:
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
            self.seconds.append(seconds)


class Client:
    """One simulated user of the study: a connection of its own, a random mix of requests."""

    def __init__(
        self, stack: Stack, headers: dict[str, str], study_url: str, tally: Tally, seed: int
    ) -> None:
        transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
        self.http = httpx.Client(base_url=stack.base_url, transport=transport, timeout=30)
        self.headers, self.study_url, self.tally = headers, study_url, tally
        self.random = random.Random(seed)
        self.samples: list[str] = []

    def send(self, kind: str, method: str, url: str, **kwargs) -> httpx.Response:
        started = time.monotonic()
        response = self.http.request(
            method, url, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )
        self.tally.note(kind, response, time.monotonic() - started)
        return response

    def read(self) -> None:
        url = self.random.choice(
            [
                self.study_url,
                f"{self.study_url}/samples?page_size=50",
                f"{self.study_url}/samples?field.tissue=blood&sort=-created_at",
                f"{self.study_url}/sample-files",
                f"{self.study_url}/activity",
                "/api/v1/dashboard/summary",
            ]
        )
        self.send("read", "GET", url)

    def write(self) -> None:
        if not self.samples or self.random.random() < 0.5:
            created = self.send(
                "create",
                "POST",
                f"{self.study_url}/samples",
                json={
                    "sample_id": f"SK-{uuid.uuid4().hex[:12]}",
                    "values": {"tissue": "blood", "volume": 1.5},
                },
            )
            if created.status_code == 201:
                self.samples.append(f"{self.study_url}/samples/{created.json()['id']}")
            return
        url = self.random.choice(self.samples)
        current = self.send("read", "GET", url)
        if current.status_code != 200:
            return
        if self.random.random() < 0.2:
            self.send("delete", "DELETE", url, headers={"If-Match": current.headers["etag"]})
            self.samples.remove(url)
        else:
            self.send(
                "edit",
                "PATCH",
                url,
                json={"values": {"volume": self.random.random() * 10}},
                headers={"If-Match": current.headers["etag"]},
            )

    def upload(self) -> None:
        rows = "".join(f"UP-{uuid.uuid4().hex[:12]},saliva,{number}.5\r\n" for number in range(200))
        self.send(
            "upload",
            "POST",
            f"{self.study_url}/sample-files",
            files={"file": ("soak.csv", ("sample_id,tissue,volume [mL]\r\n" + rows).encode(), "text/csv")},
        )

    def run_until(self, deadline: float) -> None:
        with self.http:
            while time.monotonic() < deadline:
                roll = self.random.random()
                if roll < 0.65:
                    self.read()
                elif roll < 0.95:
                    self.write()
                else:
                    self.upload()


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[int(fraction * 100) - 1] if len(values) > 1 else values[0]


def test_a_mixed_load_gets_no_server_error_and_worker_memory_stays_flat(stack: Stack, client_from):
    researcher = researcher_with_study(client_from(TRUSTED_CLIENT_ADDRESS), "soak", fields=FIELDS)
    tally = Tally()
    clients = [
        Client(stack, researcher.headers, researcher.study_url, tally, seed) for seed in range(SOAK_CLIENTS)
    ]
    started = time.monotonic()
    deadline = started + SOAK_SECONDS

    with ThreadPoolExecutor(max_workers=SOAK_CLIENTS) as pool:
        running = [pool.submit(client.run_until, deadline) for client in clients]
        time.sleep(SOAK_SECONDS * WARM_UP_FRACTION)
        workers = worker_pids(stack.gunicorn.pid)
        warm = {pid: rss_mb(pid) for pid in workers}
        for future in running:
            future.result()
    end = {pid: rss_mb(pid) for pid in workers}

    total = sum(tally.statuses.values())
    p50, p99 = (percentile(tally.seconds, fraction) * 1000 for fraction in (0.5, 0.99))
    print(
        f"\nsoak: {SOAK_SECONDS:.0f} s, {SOAK_CLIENTS} clients, {total} requests "
        f"({total / SOAK_SECONDS:.0f}/s), p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    print("soak: answers", dict(sorted(tally.statuses.items())))
    successes = {kind: tally.statuses[(kind, status)] for kind, status in SUCCESS.items()}
    print("soak: successes by kind", successes)
    print(
        "soak: worker RSS after warm-up -> end (MB)",
        {pid: f"{warm[pid]:.1f} -> {end[pid]:.1f}" for pid in workers},
    )
    assert worker_pids(stack.gunicorn.pid) == workers  # no worker died or was replaced
    assert {status for kind, status in tally.statuses if kind != "upload"} <= EXPECTED, tally.statuses
    assert {status for kind, status in tally.statuses if kind == "upload"} <= EXPECTED_FOR_UPLOADS, (
        tally.statuses
    )
    assert {kind for kind, _ in tally.statuses} <= set(SUCCESS), tally.statuses
    assert all(successes.values()), successes
    assert all(end[pid] - warm[pid] <= MAX_GROWTH_MB for pid in workers), (warm, end)
