"""The benchmark command's own pieces: reading wrk's output, its request scripts, the data set's shape,
the hostile files and their verdicts."""

import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import openpyxl
import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from benchmarks import floor_app, hostile_files, profile, queue_import, seed, stack, stack_import, wrk
from main import migrate
from scripts import local_stack
from src.auth.constants import Role
from src.auth.jwt import create_access_token
from src.auth.models import AuthSession, User

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8080/api/v1/health
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms    3.20ms  80.00ms   90.00%
    Req/Sec     2.60k   200.00     3.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%   13.00ms
     90%   15.00ms
     99%    1.03s
  10443 requests in 2.00s, 1.90MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   5221.50
Transfer/sec:    970.00KB
"""


def test_wrk_output_is_read_with_its_units():
    result = wrk.parse_wrk_output(WRK_OUTPUT)

    assert result.requests_per_second == 5221.5
    assert result.p50_ms == 0.85
    assert result.p99_ms == 1030.0
    assert result.requests == 10443
    assert result.non_2xx == 7
    assert result.socket_errors == 3


def test_a_clean_wrk_run_has_no_errors():
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if not line.lstrip().startswith(("Socket", "Non-2xx"))
    )

    result = wrk.parse_wrk_output(clean)

    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_request_bodies_take_turns_and_are_escaped_for_lua():
    script = wrk._lua_script("POST", ['a="1"', "b\\2"], {"Content-Type": "text/plain"})

    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "text/plain"' in script
    assert 'local bodies = {"a=\\"1\\"", "b\\\\2"}' in script
    assert "request = function()" in script


def test_the_data_set_puts_a_fifth_in_one_study_and_loses_no_sample():
    counts = seed.sample_counts(1_000_000, seed.STUDIES)

    assert sum(counts) == 1_000_000
    assert counts[0] == 200_000
    assert len(counts) == seed.STUDIES
    assert counts[1] > counts[-1] > 0


def test_only_measures_the_endpoints_named_in_the_order_of_the_table():
    options = stack.parse_args(["--only", "studies, health", "--no-sign-in", "--import-rows"])

    chosen = stack.selected_endpoints("big-id", options.only)

    assert [endpoint.key for endpoint in chosen] == ["health", "studies"]
    assert options.no_sign_in is True
    assert options.import_rows == []


def test_every_endpoint_is_measured_without_only():
    options = stack.parse_args([])

    assert [endpoint.key for endpoint in stack.selected_endpoints("big-id", options.only)] == list(
        stack.ENDPOINT_KEYS
    )


def test_an_unknown_endpoint_for_only_is_refused(capsys):
    with pytest.raises(SystemExit):
        stack.parse_args(["--only", "health,nonsense"])

    assert "nonsense" in capsys.readouterr().err


# Profiles: a hand-written py-spy collapsed file (root first, innermost frame last, then a count).
LOOP = "Runner.run (asyncio/runners.py:86)"
HTTP = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:411)"
OURS = "get_current_user (src/auth/dependencies.py:40)"
ORM = "Session.execute (sqlalchemy/orm/session.py:2290)"
DRIVER = "BaseCursor._execute_send (/opt/venv/lib/python3.11/site-packages/psycopg/_cursor_base.py:416)"
THREAD = "Thread._bootstrap (threading.py:988)"
COLLAPSED = f"""\
{LOOP};{HTTP};{OURS};{ORM} 4
{LOOP};{OURS} 3
{LOOP};{OURS};{ORM};{DRIVER} 4
{LOOP} 2
{LOOP};solve_dependencies (fastapi/dependencies/utils.py:671) 2
{LOOP};JSONEncoder.iterencode (json/encoder.py:205) 1
{THREAD};WorkerThread.run (anyio/_backends/_asyncio.py:1110);verify_secret (argon2/low_level.py:163) 1
{THREAD};Queue.get (queue.py:154);Condition.wait (threading.py:295) 1
{LOOP};{HTTP};{OURS};{ORM} 2
"""


def test_a_profile_gives_each_sample_to_the_layer_of_its_innermost_frame():
    summary = profile.summarise(profile.read_collapsed(COLLAPSED))

    assert summary.samples == 20
    assert summary.layers == {
        "src": 0.15,
        "SQLAlchemy": 0.3,
        "psycopg": 0.2,
        "FastAPI": 0.1,
        "pydantic": 0.0,
        "HTTP": 0.0,
        "json": 0.05,
        "loop": 0.1,
        "waiting": 0.05,
        "other": 0.05,
    }
    assert list(summary.layers) == list(profile.LAYERS)


def test_the_top_functions_are_by_self_time_with_their_layer_and_module_path():
    summary = profile.summarise(profile.read_collapsed(COLLAPSED), top=3)

    assert [(top.function, top.layer, top.share) for top in summary.top_functions] == [
        ("Session.execute (sqlalchemy/orm/session.py:2290)", "SQLAlchemy", 0.3),
        ("BaseCursor._execute_send (psycopg/_cursor_base.py:416)", "psycopg", 0.2),
        ("get_current_user (src/auth/dependencies.py:40)", "src", 0.15),
    ]


def test_an_empty_profile_has_no_shares():
    summary = profile.summarise(profile.read_collapsed(""))

    assert summary.samples == 0
    assert set(summary.layers.values()) == {0.0}
    assert summary.top_functions == []


def test_the_speedscope_file_shares_frames_between_workers():
    document = profile.speedscope_document(
        "GET /x", {1: {"a (src/a.py:1);b (json/encoder.py:2)": 3}, 2: {"a (src/a.py:1)": 1}}
    )

    assert document["shared"]["frames"] == [
        {"name": "a", "file": "src/a.py", "line": 1},
        {"name": "b", "file": "json/encoder.py", "line": 2},
    ]
    assert [(p["samples"], p["weights"]) for p in document["profiles"]] == [([[0, 1]], [3]), ([[0]], [1])]


def test_profiles_without_py_spy_stop_before_anything_starts(monkeypatch, tmp_path):
    monkeypatch.setattr(wrk, "wrk_binary", lambda: "/usr/bin/wrk")
    monkeypatch.setattr(stack.local_stack, "nginx_binary", lambda: "/usr/sbin/nginx")
    monkeypatch.setattr(profile.shutil, "which", lambda *_args, **_kwargs: None)
    options = stack.parse_args(["--profile", str(tmp_path / "profiles")])

    with pytest.raises(SystemExit) as stopped:
        stack.check_tools(options)

    assert "pip install py-spy" in str(stopped.value.code)
    assert not (tmp_path / "profiles").exists()


# The hostile files (benchmarks.hostile_files): each is what issue 16's probe sent, in shape and size.

# The readers' zip-bomb check refuses a member that inflates more than this.
READERS_MAX_COMPRESSION_RATIO = 100


def test_the_endless_rows_workbook_is_small_opens_and_numbers_its_second_row_10_to_the_15():
    content = hostile_files.endless_rows_xlsx()

    assert 1_000 < len(content) < 2_000
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert next(workbook["samples"].iter_rows(values_only=True)) == hostile_files.HEADER
    sheet = zipfile.ZipFile(io.BytesIO(content)).read("xl/worksheets/sheet1.xml").decode()
    assert re.findall(r'<row r="(\d+)"', sheet) == ["1", "1000000000000000"]


def test_the_shared_strings_workbook_holds_5m_entries_inflating_84_to_1_inside_the_bomb_check():
    content = hostile_files.shared_strings_xlsx()

    member = zipfile.ZipFile(io.BytesIO(content)).getinfo("xl/sharedStrings.xml")
    ratio = member.file_size / member.compress_size
    assert 1.0e6 < len(content) < 1.15e6
    assert 88e6 < member.file_size < 92e6
    assert 80 < ratio < READERS_MAX_COMPRESSION_RATIO


def test_the_shared_strings_table_has_the_entries_it_counts_and_the_sheet_reads_the_header_from_it():
    content = hostile_files.shared_strings_xlsx(entries=250_001)

    table = zipfile.ZipFile(io.BytesIO(content)).read("xl/sharedStrings.xml")
    assert table.count(b"<si>") == 250_001
    assert b'count="250001"' in table
    rows = openpyxl.load_workbook(io.BytesIO(content), read_only=True)["samples"].iter_rows(values_only=True)
    assert next(rows) == hostile_files.HEADER


def test_the_many_members_zip_holds_every_member_but_its_end_record_claims_nine():
    content = hostile_files.many_members_zip(members=1_005)

    assert len(zipfile.ZipFile(io.BytesIO(content)).infolist()) == 1_005
    end = content[-22:]
    assert end[:4] == b"PK\x05\x06"
    assert struct.unpack("<2H", end[8:12]) == (9, 9)  # entries on this disk, entries in all
    workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert next(workbook["samples"].iter_rows(values_only=True)) == hostile_files.HEADER


def test_the_text_files_have_the_probes_shapes():
    wide = hostile_files.wide_header_csv()
    extra = hostile_files.extra_cells_csv().splitlines()

    assert 7.8e6 < len(wide) < 8.0e6
    assert wide.splitlines()[0].count(b",") == 999_999
    assert len(extra) == 2_001
    assert {line.count(b",") for line in extra[1:]} == {626}
    sniffed = hostile_files.slow_sniffing_csv()
    assert len(sniffed) == 16 * 1024
    assert {line.count(b",") for line in sniffed.splitlines()[:-1]} == {100}  # the last one is cut


def test_the_stray_byte_file_is_utf8_but_for_one_byte():
    content = hostile_files.stray_byte_csv()

    assert content.decode("utf-8", errors="replace").count("\ufffd") == 1
    assert "café naïve 日本" in content.decode("utf-8", errors="replace")


def measured(status: int | None, seconds: float = 0.1, megabytes: float = 1.0) -> hostile_files.Measurement:
    return hostile_files.Measurement(
        status=status, code="", seconds=seconds, idle_mb=100, peak_above_idle_mb=megabytes, stored_kb=0
    )


@pytest.mark.parametrize(
    ("measurements", "verdict"),
    [
        ([measured(422), measured(413)], "met"),
        ([measured(422), measured(201)], "missed: not refused"),
        ([measured(None, seconds=40)], "missed: not refused, time"),
        (
            [measured(422, seconds=1.0), measured(422, seconds=3.0), measured(422, seconds=3.0)],
            "missed: time",
        ),
        ([measured(422, megabytes=10), measured(422, megabytes=60)], "missed: memory"),
    ],
)
def test_the_goal_is_a_refusal_in_under_2_s_median_and_50_mb_at_most(measurements, verdict):
    assert hostile_files.goal_verdict(measurements) == verdict


def test_only_takes_the_hostile_files_by_name(capsys):
    assert hostile_files.parse_args(["--only", "endless-rows, stray-byte"]).only == [
        "endless-rows",
        "stray-byte",
    ]
    with pytest.raises(SystemExit):
        hostile_files.parse_args(["--only", "endless-rows,nonsense"])

    assert "nonsense" in capsys.readouterr().err


# The stack benchmark's references: every endpoint against the hello ceiling and the one-query floor.


def wrk_result(rps: float) -> wrk.WrkResult:
    return wrk.WrkResult(
        requests_per_second=rps, p50_ms=1.0, p99_ms=10.0, requests=100, non_2xx=0, socket_errors=0
    )


def test_each_round_runs_hello_then_the_floor_with_the_token_then_the_endpoint(monkeypatch, tmp_path):
    run = stack.RunningStack("http://studybase", "http://hello", "http://floor", "postgresql://", tmp_path, 1)
    answers = {"http://hello": [1000, 900], "http://floor": [300, 200], "http://studybase": [150, 60]}
    calls = []

    def fake_wrk(url, *, connections, duration_s, headers=None):
        calls.append((url, connections, duration_s, headers))
        return wrk_result(answers[url.split("/api/")[0]].pop(0))

    monkeypatch.setattr(wrk, "run_wrk", fake_wrk)
    health = stack.Endpoint("health", "GET /api/v1/health", "/api/v1/health", connections=16)

    row = stack.measure(run, health, token="tok", duration_s=2, rounds=2, floor_duration_s=1)

    bearer = {"Authorization": "Bearer tok"}
    hello = ("http://hello/api/v1/hello", 16, 2, None)
    floor = ("http://floor" + floor_app.FLOOR_PATH, 16, 1, bearer)
    endpoint = ("http://studybase/api/v1/health", 16, 2, {})
    assert calls == [hello, floor, endpoint, hello, floor, endpoint]
    assert (row.rps, row.ceiling_rps, row.floor_rps) == (105, 950, 250)
    assert (row.ratio, row.floor_ratio, row.floor_failures) == (0.11, 0.42, 0)


def test_the_floor_runs_as_long_as_the_rest_but_in_the_quick_version():
    assert stack.parse_args(["--duration", "5"]).floor_duration == 5
    quick = stack.parse_args(["--quick"])
    assert (quick.duration, quick.floor_duration) == (2, 1)


def test_the_table_prints_each_route_against_hello_and_the_floor(capsys):
    row = stack.Row(
        endpoint="GET /api/v1/auth/me",
        connections=64,
        rps=900,
        p50_ms=50.0,
        p99_ms=300.0,
        ceiling_rps=9000,
        ceiling_p99_ms=20.0,
        floor_rps=3000,
        floor_p99_ms=60.0,
        non_2xx=0,
        errors=0,
        floor_failures=0,
    )

    stack.print_table([row], {})

    header, _, line = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "endpoint",
        "conn",
        "req/s",
        "p50",
        "ms",
        "p99",
        "ms",
        "hello",
        "/hello",
        "floor",
        "/floor",
        "non-2xx",
    ]
    assert line.split()[-5:] == ["9000", "0.10", "3000", "0.30", "0"]


def test_a_floor_that_failed_is_called_out_under_the_table(capsys):
    figures = {"connections": 64, "rps": 10, "p50_ms": 1.0, "p99_ms": 2.0, "ceiling_p99_ms": 1.0}
    rows = [
        stack.Row(
            endpoint="a",
            ceiling_rps=100,
            floor_rps=50,
            floor_p99_ms=1.0,
            non_2xx=0,
            errors=0,
            floor_failures=0,
            **figures,
        ),
        stack.Row(
            endpoint="  b",
            ceiling_rps=100,
            floor_rps=0,
            floor_p99_ms=1.0,
            non_2xx=0,
            errors=0,
            floor_failures=3,
            **figures,
        ),
    ]

    stack.print_table(rows, {})

    output = capsys.readouterr().out
    assert "warning: the floor answered non-2xx or failed during: b" in output
    assert rows[1].floor_ratio == 0.0


# The floor app itself, in process against a migrated PostgreSQL database: it accepts what the API
# accepts (the API's own access tokens) and refuses what the API's session check refuses.


@pytest.fixture(scope="module")
def floor_database() -> Iterator[str]:
    try:
        psycopg.connect(stack.POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the floor app's tests need PostgreSQL under CI: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {stack.POSTGRES_URL}: {exc}")
    with local_stack.throwaway_database(stack.POSTGRES_URL, prefix=stack.DATABASE_PREFIX) as url:
        migrate(url)
        yield url


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    session_id: uuid.UUID
    token: str


def new_caller(database_url: str) -> Caller:
    """A user and a live session straight in the database, and an access token of theirs."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        user = User(
            email=f"floor-{uuid.uuid4().hex}@example.org",
            full_name="Floor Tester",
            password_hash="not used",
            role=Role.RESEARCHER,
        )
        session.add(user)
        session.flush()
        auth_session = AuthSession(user_id=user.id, expires_at=now + timedelta(hours=1))
        session.add(auth_session)
        session.flush()
        user_id, session_id = user.id, auth_session.id
    engine.dispose()
    token = create_access_token(
        user_id=user_id, session_id=session_id, issued_at=now, lifetime=timedelta(minutes=15)
    )
    return Caller(user_id, session_id, token)


def run_sql(database_url: str, statement: str, *parameters: object) -> None:
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as db:
        db.execute(statement, parameters)


@contextlib.asynccontextmanager
async def floor_client(database_url: str, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATABASE_POOL_SIZE", "1")
    async with floor_app.lifespan(floor_app.app):
        transport = httpx.ASGITransport(app=floor_app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://floor") as http:
            yield http


async def test_the_floor_answers_the_apis_token_and_refuses_a_request_without_one(
    floor_database, monkeypatch
):
    caller = new_caller(floor_database)

    async with floor_client(floor_database, monkeypatch) as http:
        signed_in = await http.get(floor_app.FLOOR_PATH, headers={"Authorization": f"Bearer {caller.token}"})
        anonymous = await http.get(floor_app.FLOOR_PATH)

    assert signed_in.status_code == 200
    assert signed_in.json()["id"] == str(caller.user_id)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE auth_sessions SET revoked_at = now() WHERE id = %s", id="revoked session"),
        pytest.param(
            "UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = %s",
            id="expired session",
        ),
        pytest.param(
            "UPDATE users SET is_active = false WHERE id = (SELECT user_id FROM auth_sessions WHERE id = %s)",
            id="deactivated user",
        ),
    ],
)
async def test_the_floor_refuses_what_the_session_check_refuses(floor_database, monkeypatch, statement):
    caller = new_caller(floor_database)
    run_sql(floor_database, statement, caller.session_id)
    another_session = create_access_token(
        user_id=caller.user_id,
        session_id=uuid.uuid4(),
        issued_at=datetime.now(UTC),
        lifetime=timedelta(minutes=1),
    )

    async with floor_client(floor_database, monkeypatch) as http:
        refused = await http.get(floor_app.FLOOR_PATH, headers={"Authorization": f"Bearer {caller.token}"})
        unknown_session = await http.get(
            floor_app.FLOOR_PATH, headers={"Authorization": f"Bearer {another_session}"}
        )
        garbage = await http.get(floor_app.FLOOR_PATH, headers={"Authorization": "Bearer not.a.token"})

    assert (refused.status_code, unknown_session.status_code, garbage.status_code) == (401, 401, 401)


# Imports through the job queue (benchmarks.queue_import).


def followed(started: str, finished: str, *, to_202: float, first_progress: float) -> queue_import._Followed:
    record = {"status": "imported", "started_at": started, "finished_at": finished}
    return queue_import._Followed(to_202_s=to_202, first_progress_s=first_progress, record=record)


def test_queue_imports_report_the_slowest_upload_and_import_and_all_rows_over_their_span(tmp_path):
    path = tmp_path / "samples.csv"
    path.write_bytes(b"x" * 3 * 1_048_576)
    imports = [
        followed("2026-12-07T03:00:00+00:00", "2026-12-07T03:00:10+00:00", to_202=0.5, first_progress=1.0),
        followed("2026-12-07T03:00:02+00:00", "2026-12-07T03:00:22+00:00", to_202=0.7, first_progress=3.0),
    ]
    memory = SimpleNamespace(before={1: 110.0, 2: 120.0}, peak={1: 150.04, 2: 130.0})

    figures = queue_import.figures_of(100_000, 2, path, imports, memory)

    assert (figures.to_202_s, figures.first_progress_s, figures.import_s) == (0.7, 3.0, 20.0)
    assert figures.rows_per_second_each == 7_500  # the mean of 10,000 and 5,000
    assert figures.rows_per_second_all == 9_091  # 200,000 rows from 03:00:00 to 03:00:22
    assert (figures.worker_rss_before_mb, figures.worker_rss_peak_mb) == (120.0, 150.0)
    assert (figures.file_mb, figures.statuses) == (3.0, ["imported", "imported"])


def test_the_quick_runs_import_20k_rows_through_the_queue_with_1_and_2_workers():
    assert stack.parse_args(["--quick"]).queue_import_rows == [20_000]
    assert stack.parse_args([]).queue_import_rows == [100_000, 1_000_000]
    assert stack.parse_args(["--import-rows"]).queue_import_rows == []  # a before/after pair: neither
    assert stack.parse_args(["--import-rows", "--queue-import-rows", "5"]).queue_import_rows == [5]
    assert queue_import.parse_args(["--quick"]).rows == [20_000]
    assert (queue_import.parse_args([]).rows, queue_import.parse_args([]).workers) == (
        [100_000, 1_000_000],
        [1, 2],
    )


def test_a_workers_memory_is_its_whole_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while stack_import.rss_mb(child.pid) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        own, theirs = stack_import.rss_mb(os.getpid()), stack_import.rss_mb(child.pid)

        assert theirs >= 5
        assert stack_import.tree_rss_mb(os.getpid()) >= own + theirs - 1  # RSS moves a little meanwhile
    finally:
        child.kill()
        child.wait()


def _import_server(records: list[dict]) -> httpx.Client:
    """A client whose upload is accepted (202) and whose record then reads as `records`, in turn."""
    looks = iter(records)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, headers={"location": "/api/v1/sample-files/1"})
        return httpx.Response(200, json=next(looks))

    return httpx.Client(base_url="http://stack", transport=httpx.MockTransport(answer))


def _record(status: str, rows_read: int, finished_at: str | None = None) -> dict:
    return {"status": status, "progress": {"rows_read": rows_read}, "finished_at": finished_at}


def test_an_import_answered_202_is_timed_to_its_records_end_not_to_the_202(monkeypatch):
    monkeypatch.setattr(stack_import, "POLL_SECONDS", 0)
    monkeypatch.setattr(stack_import, "POLL_SECONDS_AFTER_PROGRESS", 0)
    started_at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    records = [
        _record("importing", 0),
        _record("importing", 400_000),
        _record("imported", 1_000_000, finished_at="2026-12-07T10:01:15.500000+00:00"),
    ]
    with _import_server(records) as client:
        accepted = client.post("/api/v1/studies/x/sample-files")
        seconds = stack_import.seconds_to_the_end(accepted, client, time.perf_counter(), started_at)

    assert seconds == 75.5  # to the record's finished_at, three looks later; the 202 came at once


def test_an_import_answered_201_is_timed_to_its_answer():
    response = httpx.Response(201)
    started = time.perf_counter() - 2.0

    seconds = stack_import.seconds_to_the_end(response, httpx.Client(), started, datetime.now(UTC))

    assert 2.0 <= seconds < 3.0


def test_an_import_that_ended_otherwise_than_imported_fails_the_measurement(monkeypatch):
    monkeypatch.setattr(stack_import, "POLL_SECONDS", 0)
    with _import_server([_record("failed", 0, finished_at="2026-12-07T10:00:01+00:00")]) as client:
        accepted = client.post("/api/v1/studies/x/sample-files")
        with pytest.raises(RuntimeError, match="failed"):
            stack_import.seconds_to_the_end(accepted, client, time.perf_counter(), datetime.now(UTC))


def test_following_a_record_gives_the_seconds_to_its_first_progress(monkeypatch):
    monkeypatch.setattr(stack_import, "POLL_SECONDS", 0)
    monkeypatch.setattr(stack_import, "POLL_SECONDS_AFTER_PROGRESS", 0)
    records = [
        _record("queued", 0),
        _record("importing", 10),
        _record("imported", 20, "2026-12-07T10:00:00+00:00"),
    ]
    with _import_server(records) as client:
        accepted_at = time.perf_counter() - 1.0
        followed = stack_import.follow_to_the_end(client, "/api/v1/sample-files/1", accepted_at=accepted_at)

    assert followed.record["status"] == "imported"
    assert 1.0 <= followed.first_progress_s < 2.0


def test_the_import_lines_say_when_an_import_was_followed_past_its_202(capsys):
    figures = [
        stack_import.ImportFigures(100_000, 7.9, 4.37, 22_883, 201, 148.1, 157.5),
        stack_import.ImportFigures(1_000_000, 78.8, 49.49, 20_206, 202, 157.5, 158.2),
    ]
    stack.print_imports(figures)

    lines = capsys.readouterr().out.splitlines()
    assert "-> 201 in 4.37 s, 22,883 rows/s" in lines[1]
    assert "-> 202, then imported in 49.49 s, 20,206 rows/s" in lines[2]
