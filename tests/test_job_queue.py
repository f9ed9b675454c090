"""The job queue: procrastinate's schema from our migrations, `python main.py worker` running the
periodic prune, and SQLite (no queue) refused clearly."""

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from procrastinate.exceptions import AlreadyEnqueued

from main import NO_QUEUE_ON_SQLITE
from src.config import settings
from src.constants import MAINTENANCE_QUEUE
from src.job_queue import job_app, job_queue_available, libpq_conninfo
from src.pruning import prune_on_schedule
from src.sampleFileUpload.storage import LocalStorage
from tests.conftest import TEST_DATABASE_URL
from tests.sampleFileUpload.test_faults import left_behind, made_old
from tests.test_database import alembic_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
ON_POSTGRESQL = job_queue_available(TEST_DATABASE_URL)
only_on_postgresql = pytest.mark.skipif(not ON_POSTGRESQL, reason="the job queue lives in PostgreSQL")
QUEUE_TABLES = (
    "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers"
)


@pytest.fixture
def empty_queue() -> Iterator[None]:
    yield
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        connection.execute(f"TRUNCATE {QUEUE_TABLES}")


def jobs_in_queue() -> list[tuple[str, str, str]]:
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        rows = connection.execute(
            "SELECT task_name, queue_name, status::text FROM procrastinate_jobs ORDER BY id"
        )
        return [tuple(row) for row in rows]


def an_old_orphan_file() -> Path:
    """A stored file no record names, older than the grace period: what prune removes."""
    storage = LocalStorage(settings.UPLOAD_DIR)
    return made_old(storage._path_of(left_behind(storage, b"an orphan")))


def test_the_queue_reads_the_database_url_libpq_style():
    url = "postgresql+psycopg://studybase:p%40ss@db:5432/studybase?sslmode=require"

    assert libpq_conninfo(url) == "postgresql://studybase:p%40ss@db:5432/studybase?sslmode=require"
    assert job_queue_available(url)
    assert not job_queue_available("sqlite+aiosqlite:///./data/studybase.db")


@pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite has no job queue")
def test_the_worker_command_refuses_sqlite_and_says_what_to_run_instead():
    worker = subprocess.run(
        [sys.executable, "main.py", "worker"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": TEST_DATABASE_URL},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode == 1
    assert NO_QUEUE_ON_SQLITE in worker.stderr


@only_on_postgresql
async def test_the_migrations_give_postgresql_the_queue_schema():
    app = job_app()
    async with app.open_async():
        assert await app.check_connection_async()


@only_on_postgresql
async def test_a_worker_runs_a_deferred_prune(empty_queue):
    orphan = an_old_orphan_file()
    app = job_app()

    async with app.open_async():
        await prune_on_schedule.defer_async(timestamp=int(time.time()))
        await app.run_worker_async(queues=[MAINTENANCE_QUEUE], wait=False, install_signal_handlers=False)

    assert [job for job in jobs_in_queue() if job[0] == "maintenance:prune"] == [
        ("maintenance:prune", MAINTENANCE_QUEUE, "succeeded")
    ]
    assert not orphan.exists()


@only_on_postgresql
async def test_at_most_one_prune_waits_in_the_queue(empty_queue):
    app = job_app()

    async with app.open_async():
        await prune_on_schedule.defer_async(timestamp=1)
        with pytest.raises(AlreadyEnqueued):
            await prune_on_schedule.defer_async(timestamp=2)

    assert jobs_in_queue() == [("maintenance:prune", MAINTENANCE_QUEUE, "todo")]


@only_on_postgresql
def test_the_worker_command_prunes_on_its_schedule_and_stops_on_sigterm(empty_queue):
    orphan = an_old_orphan_file()
    environment = {**os.environ, "DATABASE_URL": TEST_DATABASE_URL, "PRUNE_CRON": "* * * * * *"}
    worker = subprocess.Popen(
        [sys.executable, "main.py", "worker"],
        cwd=PROJECT_DIR,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while ("maintenance:prune", MAINTENANCE_QUEUE, "succeeded") not in jobs_in_queue():
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "no scheduled prune ran within 30 s"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    assert worker.returncode == 0, stderr
    assert "The worker stopped." in stdout
    assert not orphan.exists()
    assert '"logger": "studybase.pruning"' in stderr  # JSON lines, as the API's


@pytest.fixture
def roundtrip_database_url() -> Iterator[str]:
    """A database of its own: the shared test database stays at head for the other tests."""
    name = f"{psycopg.conninfo.conninfo_to_dict(libpq_conninfo(TEST_DATABASE_URL))['dbname']}_queue_roundtrip"
    admin = libpq_conninfo(TEST_DATABASE_URL)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    yield TEST_DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queue_objects(database_url: str) -> dict[str, int]:
    with psycopg.connect(libpq_conninfo(database_url)) as connection:
        return {
            kind: connection.execute(query).fetchone()[0]
            for kind, query in {
                "tables": "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'procrastinate%'",
                "functions": "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'",
                "types": "SELECT count(*) FROM pg_type WHERE typname LIKE '%procrastinate%'",
            }.items()
        }


@only_on_postgresql
def test_the_queue_migration_downgrades_to_nothing_and_upgrades_again(roundtrip_database_url):
    config = alembic_config(roundtrip_database_url)
    command.upgrade(config, "head")
    installed = queue_objects(roundtrip_database_url)

    command.downgrade(config, "0011")
    removed = queue_objects(roundtrip_database_url)
    command.upgrade(config, "head")

    assert installed["tables"] == 4
    assert installed["functions"] > 0
    assert installed["types"] > 0
    assert removed == {"tables": 0, "functions": 0, "types": 0}
    assert queue_objects(roundtrip_database_url) == installed


def start_worker(**environment: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "main.py", "worker"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": TEST_DATABASE_URL, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, *, seconds: float, what: str, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert worker.poll() is None, worker.stderr.read()
        assert time.monotonic() < deadline, f"not {what} within {seconds} s"
        time.sleep(0.05)


def stopped(worker: subprocess.Popen) -> tuple[str, str]:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.communicate()


def prune_jobs() -> list[tuple[int, str, int]]:
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        rows = connection.execute(
            "SELECT id, status::text, attempts FROM procrastinate_jobs WHERE task_name = 'maintenance:prune'"
        )
        return [tuple(row) for row in rows]


@only_on_postgresql
def test_a_prune_whose_worker_was_killed_is_run_again_by_the_next_worker(empty_queue):
    orphan = an_old_orphan_file()
    stalled_after = {"WORKER_STALLED_SECONDS": "1.5", "DATABASE_LOCK_TIMEOUT_SECONDS": "30"}
    # The prune's first statement waits on this lock: the first worker is killed while it waits.
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as blocker:
        blocker.execute("LOCK TABLE login_throttles IN ACCESS EXCLUSIVE MODE")
        first = start_worker(PRUNE_CRON="* * * * * *", **stalled_after)
        try:
            wait_for(
                lambda: [status for _, status, _ in prune_jobs()] == ["doing"],
                seconds=30,
                what="a prune running",
                worker=first,
            )
            first.kill()  # SIGKILL: no goodbye, its job stays `doing` with the `prune` lock
            first.communicate()
        finally:
            stopped(first)
        blocker.rollback()
    [(job_id, status, attempts)] = prune_jobs()
    assert (status, attempts) == ("doing", 0)
    assert orphan.exists()

    time.sleep(2)  # past WORKER_STALLED_SECONDS without a heartbeat
    second = start_worker(**stalled_after)
    try:
        wait_for(
            lambda: prune_jobs()[0][1] == "succeeded", seconds=30, what="the prune run again", worker=second
        )
    finally:
        _, stderr = stopped(second)

    assert prune_jobs() == [(job_id, "succeeded", 2)]  # the killed attempt, then the one that ran
    assert not orphan.exists()
    assert '"msg": "job_recovered"' in stderr


def blocking_the_prune() -> psycopg.Connection:
    """A transaction holding a lock the prune's first statement waits on (up to the workers'
    DATABASE_LOCK_TIMEOUT_SECONDS, set long): a prune that runs stays running until it rolls back."""
    blocker = psycopg.connect(libpq_conninfo(TEST_DATABASE_URL))
    blocker.execute("LOCK TABLE login_throttles IN ACCESS EXCLUSIVE MODE")
    return blocker


def statuses() -> list[str]:
    return [status for _, status, _ in sorted(prune_jobs())]


@only_on_postgresql
def test_a_worker_stopped_with_sigterm_lets_its_running_prune_finish(empty_queue):
    orphan = an_old_orphan_file()
    with blocking_the_prune() as blocker:
        worker = start_worker(PRUNE_CRON="* * * * * *", DATABASE_LOCK_TIMEOUT_SECONDS="30")
        try:
            wait_for(lambda: "doing" in statuses(), seconds=30, what="a prune running", worker=worker)
            [running] = [job_id for job_id, status, _ in prune_jobs() if status == "doing"]
            worker.send_signal(signal.SIGTERM)
            time.sleep(1)
            still_running = worker.poll() is None
            blocker.rollback()
            stdout, _ = worker.communicate(timeout=20)
        finally:
            stopped(worker)

    assert still_running  # it waited for its job rather than dropping it
    assert worker.returncode == 0
    assert "The worker stopped." in stdout
    assert (running, "succeeded") in [(job_id, status) for job_id, status, _ in prune_jobs()]
    assert not orphan.exists()


def prune_runs() -> list[tuple[float, float]]:
    """When each finished prune started and ended (the queue's events), in order."""
    with psycopg.connect(libpq_conninfo(TEST_DATABASE_URL)) as connection:
        rows = connection.execute(
            "SELECT min(e.at) FILTER (WHERE e.type = 'started'),"
            " max(e.at) FILTER (WHERE e.type = 'succeeded')"
            " FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id"
            " WHERE j.task_name = 'maintenance:prune' AND j.status = 'succeeded' GROUP BY j.id ORDER BY 1"
        )
        return [(started.timestamp(), ended.timestamp()) for started, ended in rows]


@only_on_postgresql
def test_two_workers_never_run_two_prunes_at_once(empty_queue):
    busy = {"PRUNE_CRON": "* * * * * *", "DATABASE_LOCK_TIMEOUT_SECONDS": "30"}
    with blocking_the_prune() as blocker:
        workers = [start_worker(**busy), start_worker(**busy)]
        try:
            # One prune runs (blocked); the next waits in the queue (queueing_lock: only one).
            wait_for(
                lambda: statuses() == ["doing", "todo"],
                seconds=30,
                what="one running, one waiting",
                worker=workers[0],
            )
            time.sleep(2)  # the other worker is idle all this time, and the `prune` lock keeps it off
            waiting = statuses()
            blocker.rollback()
            wait_for(lambda: len(prune_runs()) >= 2, seconds=30, what="two prunes run", worker=workers[1])
        finally:
            for worker in workers:
                stopped(worker)

    assert waiting == ["doing", "todo"]
    runs = prune_runs()
    assert all(later_start >= earlier_end for (_, earlier_end), (later_start, _) in itertools.pairwise(runs))
