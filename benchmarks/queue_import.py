"""Imports through the job queue: rows/s, time to 202, time to first progress, the workers' memory.

    python -m benchmarks.queue_import [--rows 100000 1000000] [--workers 1 2] [--json PATH]
    python -m benchmarks.queue_import --quick          # CI's: 20,000 rows, 1 and 2 workers
    python -m benchmarks.stack ...                       # runs it too (--queue-import-rows)

Starts what production runs for imports: a fresh PostgreSQL database with the migrations, the API
(gunicorn, the committed config, 2 workers, IMPORT_RUNNER=queue) behind nginx (the committed config,
rendered as the stack tests do), and `python main.py worker` processes; files go to a file:// store
(UPLOAD_DIR), which every process here shares as N hosts share an S3 bucket. For each CSV size
(stack_import.write_csv: 10 typed columns) and each worker count N, N new studies each get the
file at once, uploaded through nginx with `Prefer: respond-async` (one import per study at a time
is the queue's lock, so N studies keep N workers busy), and each record is polled through nginx
until it ends. Reported per size and N:

- 202: the slowest upload's time from its first byte sent to its 202 (the file received, hashed,
  stored and its record queued);
- 1st progress: the slowest import's time from its 202 until its record shows rows read (the job
  picked up by a worker, the file copied from the store, its records counted, the first batch
  written);
- import s and rows/s each: the record's own started_at to finished_at (the worker's claim to its
  commit), the slowest, and the mean of rows/s over the imports;
- rows/s all: every import's rows over the first start to the last finish (what N workers do
  together);
- worker RSS: each worker process tree's resident memory (from /proc, sampled every 50 ms) before
  and at its peak, the largest of the N.

Workers are started afresh for each measurement (and waited for until registered in the queue),
so one's memory does not carry over. IMPORT_MAX_SECONDS is 1800 here, so that a slow import on a
busy machine is measured rather than ended `failed`. Needs PostgreSQL (BENCH_POSTGRES_URL) and nginx, as
benchmarks.stack. Never fails on speed: it prints numbers.
"""

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

from benchmarks import stack, stack_import
from scripts import local_stack
from src.job_queue import libpq_conninfo
from tests.smtp_server import running_smtp_server

QUICK_ROWS = [20_000]
FULL_ROWS = [100_000, 1_000_000]
WORKER_COUNTS = [1, 2]
WORKERS_READY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class QueueImportFigures:
    rows: int
    workers: int
    file_mb: float
    statuses: list[str]
    to_202_s: float  # the slowest upload's
    first_progress_s: float  # the slowest import's, from its 202
    import_s: float  # the slowest import's started_at → finished_at
    rows_per_second_each: int  # the mean over the imports
    rows_per_second_all: int  # all rows over the first start to the last finish
    worker_rss_before_mb: float
    worker_rss_peak_mb: float


@dataclass(frozen=True, slots=True)
class _Followed:
    to_202_s: float
    first_progress_s: float
    record: dict


# The pieces: workers, one upload followed to its end.


def registered_workers(database_url: str, since: datetime) -> int:
    with psycopg.connect(libpq_conninfo(database_url)) as connection:
        return connection.execute(
            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >= %s", (since,)
        ).fetchone()[0]


@contextlib.contextmanager
def running_workers(
    count: int, *, env: dict[str, str], database_url: str, log: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` workers, once each has registered in the queue (ready to take jobs); stopped after."""
    with psycopg.connect(libpq_conninfo(database_url)) as connection:
        since = connection.execute("SELECT now()").fetchone()[0]
    workers = [local_stack.start_worker(env=env, log=log) for _ in range(count)]
    try:
        deadline = time.monotonic() + WORKERS_READY_SECONDS
        while registered_workers(database_url, since) < count:
            if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start; see {log}")
            time.sleep(0.1)
        yield workers
    finally:
        for worker in workers:
            local_stack.stop(worker)


def upload_and_follow(api_url: str, headers: dict[str, str], study_id: str, path: Path) -> _Followed:
    """One upload with `Prefer: respond-async`, its record polled until its import ends."""
    with httpx.Client(base_url=api_url, headers=headers, timeout=600) as client, path.open("rb") as file:
        started = time.perf_counter()
        accepted = client.post(
            f"/api/v1/studies/{study_id}/sample-files",
            files={"file": (path.name, file, "text/csv")},
            headers={"Prefer": "respond-async"},
        )
        accepted_at = time.perf_counter()
        if accepted.status_code != 202:
            raise RuntimeError(f"upload answered {accepted.status_code}: {accepted.text[:300]}")
        followed = stack_import.follow_to_the_end(
            client, accepted.headers["location"], accepted_at=accepted_at
        )
    return _Followed(accepted_at - started, followed.first_progress_s, followed.record)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def figures_of(
    rows: int, workers: int, path: Path, followed: list[_Followed], memory: stack_import.PeakMemory
) -> QueueImportFigures:
    records = [item.record for item in followed]
    spans = [(_at(r["finished_at"]) - _at(r["started_at"])).total_seconds() for r in records]
    first_start = min(_at(r["started_at"]) for r in records)
    last_finish = max(_at(r["finished_at"]) for r in records)
    together = (last_finish - first_start).total_seconds()
    return QueueImportFigures(
        rows=rows,
        workers=workers,
        file_mb=round(path.stat().st_size / 1_048_576, 1),
        statuses=[r["status"] for r in records],
        to_202_s=round(max(item.to_202_s for item in followed), 2),
        first_progress_s=round(max(item.first_progress_s for item in followed), 2),
        import_s=round(max(spans), 2),
        rows_per_second_each=round(statistics.mean(rows / span for span in spans)),
        rows_per_second_all=round(rows * len(records) / together),
        worker_rss_before_mb=round(max(memory.before.values()), 1),
        worker_rss_peak_mb=round(max(memory.peak.values()), 1),
    )


# One measurement, and all of them.


@dataclass(frozen=True, slots=True)
class QueueStack:
    """The API with IMPORT_RUNNER=queue behind nginx, and what its workers need to start."""

    api_url: str
    database_url: str
    env: dict[str, str]
    work_dir: Path


def measure(
    queue_stack: QueueStack, *, token: str, path: Path, rows: int, workers: int
) -> QueueImportFigures:
    headers = {"Authorization": f"Bearer {token}"}
    studies = [
        stack_import.new_active_study(queue_stack.api_url, headers, code=f"QUEUE-{rows}-{workers}-{n}")
        for n in range(workers)
    ]
    followed: list[_Followed | BaseException | None] = [None] * workers
    start_together = threading.Barrier(workers)

    def one(index: int) -> None:
        try:
            start_together.wait()
            followed[index] = upload_and_follow(queue_stack.api_url, headers, studies[index], path)
        except BaseException as error:  # reported by the caller
            followed[index] = error

    log = queue_stack.work_dir / "workers.log"
    with (
        running_workers(
            workers, env=queue_stack.env, database_url=queue_stack.database_url, log=log
        ) as procs,
        stack_import.PeakMemory([p.pid for p in procs], measure=stack_import.tree_rss_mb) as memory,
    ):
        threads = [threading.Thread(target=one, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    failed = [item for item in followed if not isinstance(item, _Followed)]
    if failed:
        raise RuntimeError(f"an upload or import went wrong: {failed[0]!r}")
    return figures_of(rows, workers, path, followed, memory)


def measure_all(
    queue_stack: QueueStack, *, token: str, rows: list[int], workers: list[int]
) -> list[QueueImportFigures]:
    """Each CSV size (generated once), with each worker count in turn."""
    results = []
    with tempfile.TemporaryDirectory(prefix="studybase-queue-import-") as folder:
        for count in rows:
            path = Path(folder) / f"samples-{count}.csv"
            stack_import.write_csv(path, count)
            for n in workers:
                figures = measure(queue_stack, token=token, path=path, rows=count, workers=n)
                print(f"  {count:,} rows, {n} worker(s): {figures.rows_per_second_all:,} rows/s", flush=True)
                results.append(figures)
            path.unlink()
    return results


# Room for a 1,000,000-row import beside another on a busy 2-core machine: the benchmark measures
# speed, not IMPORT_MAX_SECONDS (540 s by default), which would end a slow one `failed`.
IMPORT_MAX_SECONDS = 1800


def queue_environment(base: dict[str, str]) -> dict[str, str]:
    return base | {"IMPORT_RUNNER": "queue", "IMPORT_MAX_SECONDS": str(IMPORT_MAX_SECONDS)}


def measure_beside(
    run: "stack.RunningStack", *, email: str, rows: list[int], workers: list[int]
) -> list[QueueImportFigures]:
    """benchmarks.stack's part: a second API on the same database, with IMPORT_RUNNER=queue."""
    assert run.mailbox is not None
    with queue_api(run.database_url, run.work_dir, run.mailbox.url()) as queue_stack:
        token = stack.sign_in(queue_stack.api_url, email)  # its own SECRET_KEY
        return measure_all(queue_stack, token=token, rows=rows, workers=workers)


@contextlib.contextmanager
def queue_api(database_url: str, work_dir: Path, smtp_url: str) -> Iterator[QueueStack]:
    """The API with IMPORT_RUNNER=queue (stack.served: gunicorn behind nginx) on `database_url`."""
    env = queue_environment(stack.stack_environment(database_url, work_dir, smtp_url))
    with stack.served(work_dir, "api-queue", env, None, "/api/v1/health") as (api_url, _pid):
        yield QueueStack(api_url, database_url, env, work_dir)


# The report.


def print_table(results: list[QueueImportFigures]) -> None:
    if not results:
        return
    print()
    print("imports through the queue (nginx, 2 API workers, IMPORT_RUNNER=queue, file:// store)")
    header = (
        f"{'rows':>9} {'workers':>7} {'CSV MB':>6} {'202 s':>6} {'1st progress s':>14} {'import s':>8} "
        f"{'rows/s each':>11} {'rows/s all':>10} {'worker RSS MB':>17}  status"
    )
    print(header)
    print("-" * len(header))
    for f in results:
        memory = f"{f.worker_rss_before_mb:.0f} -> {f.worker_rss_peak_mb:.0f}"
        print(
            f"{f.rows:>9,} {f.workers:>7} {f.file_mb:>6} {f.to_202_s:>6.2f} {f.first_progress_s:>14.2f} "
            f"{f.import_s:>8.2f} {f.rows_per_second_each:>11,} {f.rows_per_second_all:>10,} {memory:>17}  "
            f"{','.join(sorted(set(f.statuses)))}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=FULL_ROWS, help="CSV sizes (default 100000 1000000)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=WORKER_COUNTS, help="worker counts (default 1 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI's short version: 20,000 rows, 1 and 2 workers"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    options = parser.parse_args(argv)
    if options.quick:
        options.rows = QUICK_ROWS
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    local_stack.nginx_binary()
    work_dir = Path(tempfile.mkdtemp(prefix="studybase-queue-bench-"))
    work_dir.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    try:
        with (
            local_stack.throwaway_database(stack.POSTGRES_URL, prefix=stack.DATABASE_PREFIX) as database_url,
            running_smtp_server() as smtp,
        ):
            local_stack.migrate(stack.stack_environment(database_url, work_dir, smtp.url()))
            with queue_api(database_url, work_dir, smtp.url()) as queue_stack:
                email = "bench@example.org"
                stack.register(queue_stack.api_url, email, smtp)
                token = stack.sign_in(queue_stack.api_url, email)
                results = measure_all(queue_stack, token=token, rows=options.rows, workers=options.workers)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print_table(results)
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"machine": stack.machine(), "queue_imports": [asdict(f) for f in results]}
        options.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwritten: {options.json}")


if __name__ == "__main__":
    sys.exit(main())
