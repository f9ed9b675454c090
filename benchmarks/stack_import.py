"""Sample-file imports through the whole stack: rows/s and the API workers' peak memory.

Part of `python -m benchmarks.stack`: a CSV of 10 typed columns (the seeded studies' fields) is
generated on disk, uploaded through nginx into a fresh active study, and timed from the first
byte sent to the import's end: the 201, or, for an import still running after
IMPORT_WAIT_SECONDS (the API then answers 202 and goes on), the record followed until it
finished (its `finished_at`); meanwhile every gunicorn worker's resident memory is sampled from
/proc, so the peak above the worker's memory before the upload is what that import cost.
"""

import csv
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks import seed

HEADERS = [
    "sample_id",
    "tissue",
    "volume [mL]",
    "age",
    "collected_on",
    "collected_at",
    "fasting",
    "site",
    "visit",
    "freezer",
    "notes",
]
RSS_SAMPLE_SECONDS = 0.05
# A sample file's record says its import is over in one of these statuses.
FINISHED = {"imported", "rejected", "failed", "cancelled"}
# How often a record is looked at: often until its first progress, then less (each look is a
# request through nginx, on the cores the import uses).
POLL_SECONDS, POLL_SECONDS_AFTER_PROGRESS = 0.1, 0.5
IMPORT_TIMEOUT_SECONDS = 1800.0


@dataclass(frozen=True, slots=True)
class ImportFigures:
    rows: int
    file_mb: float
    seconds: float
    rows_per_second: float
    status: int
    worker_rss_before_mb: float
    worker_rss_peak_mb: float


def write_csv(path: Path, rows: int) -> None:
    tissues = ("blood", "plasma", "serum", "urine")
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(HEADERS)
        for n in range(rows):
            writer.writerow(
                [
                    f"IMP-{n:08d}",
                    tissues[n % 4],
                    f"{(n % 500) / 10:.1f}",
                    n % 100,
                    f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}",
                    f"2025-03-{1 + n % 28:02d}T{n % 24:02d}:15:00Z",
                    "true" if n % 2 else "false",
                    f"SITE-{n % 20}",
                    1 + n % 6,
                    f"F{n % 8}",
                    "" if n % 3 else "thawed once",
                ]
            )


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    try:
        return [int(pid) for pid in children.read_text().split()]
    except FileNotFoundError:  # gone meanwhile
        return []


def tree_rss_mb(pid: int) -> float:
    """The resident memory of `pid` and every process below it (a queue worker and what it started)."""
    return rss_mb(pid) + sum(tree_rss_mb(child) for child in worker_pids(pid))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class PeakMemory:
    """Samples the workers' RSS (`measure`: of the process alone, or of its tree) in a thread until
    stopped; the peak is per worker, reported as max."""

    def __init__(self, pids: list[int], measure: Callable[[int], float] = rss_mb) -> None:
        self.pids, self.measure = pids, measure
        self.before = {pid: measure(pid) for pid in pids}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], self.measure(pid))

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busiest(self) -> tuple[float, float]:
        """(before, peak) of the worker whose memory grew most: the one that ran the import."""
        pid = max(self.pids, key=lambda p: self.peak[p] - self.before[p])
        return self.before[pid], self.peak[pid]


def new_active_study(api_url: str, headers: dict[str, str], code: str) -> str:
    created = httpx.post(
        f"{api_url}/api/v1/studies",
        json={"code": code, "title": f"Import {code}", "sample_fields": seed.SAMPLE_FIELDS},
        headers=headers,
        timeout=30,
    )
    created.raise_for_status()
    study_id = created.json()["id"]
    httpx.post(
        f"{api_url}/api/v1/studies/{study_id}/status", json={"status": "active"}, headers=headers, timeout=30
    ).raise_for_status()
    return study_id


@dataclass(frozen=True, slots=True)
class Followed:
    """A record followed from its 202 to its end: the record as it ended, and the seconds from the
    202 to the first look that showed progress (or the end)."""

    record: dict
    first_progress_s: float


def follow_to_the_end(client: httpx.Client, location: str, *, accepted_at: float) -> Followed:
    """The sample file at `location` (an accepted upload's), polled until its import is over."""
    first_progress = None
    while time.perf_counter() - accepted_at < IMPORT_TIMEOUT_SECONDS:
        record = client.get(location).raise_for_status().json()
        if first_progress is None and (record["progress"]["rows_read"] or record["status"] in FINISHED):
            first_progress = time.perf_counter() - accepted_at
        if record["status"] in FINISHED:
            return Followed(record, first_progress)
        time.sleep(POLL_SECONDS if first_progress is None else POLL_SECONDS_AFTER_PROGRESS)
    raise TimeoutError(f"{location} did not finish within {IMPORT_TIMEOUT_SECONDS:.0f} s")


def seconds_to_the_end(
    response: httpx.Response, client: httpx.Client, started: float, started_at: datetime
) -> float:
    """From the upload's first byte (`started`, perf_counter; `started_at`, the same instant in UTC)
    to the import's end: the answer itself for a 201 (or a refusal), else the followed record's
    `finished_at` (the server's clock, on this machine)."""
    if response.status_code != 202:
        return time.perf_counter() - started
    followed = follow_to_the_end(client, response.headers["location"], accepted_at=time.perf_counter())
    if followed.record["status"] != "imported":
        raise RuntimeError(f"the import ended {followed.record['status']}")
    return (datetime.fromisoformat(followed.record["finished_at"]) - started_at).total_seconds()


def measure_import(api_url: str, *, token: str, gunicorn_pid: int, rows: int) -> ImportFigures:
    headers = {"Authorization": f"Bearer {token}"}
    study_id = new_active_study(api_url, headers, code=f"IMPORT-{rows}")
    with tempfile.TemporaryDirectory(prefix="studybase-import-") as folder:
        path = Path(folder) / f"samples-{rows}.csv"
        write_csv(path, rows)
        with (
            httpx.Client(base_url=api_url, headers=headers, timeout=IMPORT_TIMEOUT_SECONDS) as client,
            path.open("rb") as file,
            PeakMemory(worker_pids(gunicorn_pid)) as memory,
        ):
            started, started_at = time.perf_counter(), datetime.now(UTC)
            response = client.post(
                f"/api/v1/studies/{study_id}/sample-files", files={"file": (path.name, file, "text/csv")}
            )
            seconds = seconds_to_the_end(response, client, started, started_at)
        before, peak = memory.busiest()
        return ImportFigures(
            rows=rows,
            file_mb=round(path.stat().st_size / 1_048_576, 1),
            seconds=round(seconds, 2),
            rows_per_second=round(rows / seconds),
            status=response.status_code,
            worker_rss_before_mb=round(before, 1),
            worker_rss_peak_mb=round(peak, 1),
        )
