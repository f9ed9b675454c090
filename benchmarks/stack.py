"""The whole stack under load, every figure a ratio to a ceiling and a floor measured in the same run.

    python -m benchmarks.stack [--duration 10] [--rounds 3] [--quick] [--json PATH]
    python -m benchmarks.stack --only health,auth_me --samples 20000 --no-sign-in --import-rows
    python -m benchmarks.stack --profile DIR ...   # py-spy profiles of the workers, see benchmarks.profile

Starts, on this machine: a fresh PostgreSQL database with the migrations, gunicorn with the
committed `gunicorn.conf.py` and 2 workers, nginx with the committed configuration (rendered as
the stack tests do), and two references behind the same gunicorn flags and nginx settings: the
ceiling, a bare FastAPI "hello" app (benchmarks/hello_app.py), and the floor, a bare FastAPI route
doing the API's session check as one raw pooled psycopg query (benchmarks/floor_app.py). Seeds a
data set, then drives each endpoint with wrk at 64 connections, alternating ceiling, floor and
endpoint runs, and prints the medians: req/s, p50, p99, the ratios to the ceiling and to the floor,
and any non-2xx answers. Also measures sign-in throughput and the p99 of /health while 8
clients sign in. Writes the table as JSON (default `data/benchmarks/stack.json`). With `--profile DIR`,
records the API's workers with py-spy during each endpoint's last round, the sign-in run and the first
import, writes the profiles under DIR and prints their summary after the table (`benchmarks.profile`).

Needs PostgreSQL (`BENCH_POSTGRES_URL`, default postgresql://postgres@127.0.0.1:5432/postgres;
the throwaway database is named `$BENCH_DATABASE_PREFIX_<random>`, default prefix studybase_bench),
nginx and wrk (`apt-get install nginx wrk`). The load comes from 127.0.0.1, which the rendered
nginx config lists as a trusted load generator (see the README's benchmark section), so rate limits
measure nothing here. Never fails on speed: it prints numbers.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx

from benchmarks import floor_app, profile, queue_import, seed, stack_import, wrk
from scripts import local_stack
from tests.smtp_server import SmtpTestServer, running_smtp_server

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The throwaway database's name starts with this (a shared server tells whose run it is).
DATABASE_PREFIX = os.environ.get("BENCH_DATABASE_PREFIX", "studybase_bench")
LOAD_ADDRESS = "127.0.0.1"
WORKERS = 2
CEILING_PATH = "/api/v1/hello"
FLOOR_PATH = floor_app.FLOOR_PATH
BENCH_PUBLIC_URL = "https://bench.example.org"
BENCH_PASSWORD = "benchmark passphrase"  # noqa: S105 (a throwaway account in a throwaway database)
DEFAULT_JSON = Path("data/benchmarks/stack.json")
MAX_UPLOAD_MB = 256  # room for the 1,000,000-row CSV (~110 MB)


@dataclass(frozen=True, slots=True)
class Endpoint:
    key: str  # what --only names it by
    name: str
    path: str
    connections: int = 64
    authenticated: bool = False


@dataclass
class Row:
    endpoint: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    ceiling_rps: float
    ceiling_p99_ms: float
    floor_rps: float
    floor_p99_ms: float
    non_2xx: int
    errors: int
    floor_failures: int  # non-2xx answers and socket errors of the floor: any makes its figures suspect
    ratio: float = field(init=False)  # to the ceiling
    floor_ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = round(self.rps / self.ceiling_rps, 2) if self.ceiling_rps else 0.0
        self.floor_ratio = round(self.rps / self.floor_rps, 2) if self.floor_rps else 0.0


@dataclass(frozen=True, slots=True)
class RunningStack:
    api_url: str  # through nginx
    ceiling_url: str  # through an nginx with the same configuration
    floor_url: str  # likewise
    database_url: str
    work_dir: Path
    api_gunicorn_pid: int  # the master: its children are the workers whose memory an import costs
    mailbox: SmtpTestServer | None = None  # where the API's mail goes (registration's link)


# The stack.


def stack_environment(database_url: str, work_dir: Path, smtp_url: str) -> dict[str, str]:
    return dict(os.environ) | {
        "ENVIRONMENT": "production",
        # Self-registration needs mail: the stack sends its registration link to a local sink, and
        # the benchmark's account follows it (production's default: no account until then).
        "SMTP_URL": smtp_url,
        "PUBLIC_URL": BENCH_PUBLIC_URL,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "benchmark-secret-" + uuid.uuid4().hex,
        "UPLOAD_DIR": str(work_dir / "uploads"),
        "CORS_ORIGINS": "",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "240",  # outlives the run: no refresh in the middle of a measurement
        "LOG_LEVEL": "WARNING",
        "MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
    }


@contextlib.contextmanager
def served(
    work_dir: Path,
    name: str,
    env: dict[str, str],
    app: str | None,
    health_path: str,
    *,
    ready_status: int = 200,
) -> Iterator[tuple[str, int]]:
    """gunicorn (the committed config, `app` or Studybase) behind nginx (the committed config).

    Ready once `health_path` answers `ready_status` through both.
    """
    api_port, nginx_port = _free_port(), _free_port()
    config = local_stack.render_nginx_config(
        work_dir / f"nginx-{name}",
        listen=f"127.0.0.1:{nginx_port}",
        upstream=f"127.0.0.1:{api_port}",
        trusted_clients=(LOAD_ADDRESS,),
        max_upload_mb=MAX_UPLOAD_MB,
    )
    gunicorn = local_stack.start_gunicorn(
        bind=f"127.0.0.1:{api_port}", workers=WORKERS, env=env, log=work_dir / f"gunicorn-{name}.log", app=app
    )
    nginx = None
    try:
        local_stack.wait_until_answering(
            f"http://127.0.0.1:{api_port}{health_path}", process=gunicorn, status=ready_status
        )
        nginx = local_stack.start_nginx(config)
        local_stack.wait_until_answering(
            f"http://127.0.0.1:{nginx_port}{health_path}", process=nginx, status=ready_status
        )
        yield f"http://127.0.0.1:{nginx_port}", gunicorn.pid
    finally:
        if nginx is not None:
            local_stack.stop(nginx)
        local_stack.stop(gunicorn)


@contextlib.contextmanager
def running_stack() -> Iterator[RunningStack]:
    work_dir = Path(tempfile.mkdtemp(prefix="studybase-bench-"))
    work_dir.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    try:
        with (
            local_stack.throwaway_database(POSTGRES_URL, prefix=DATABASE_PREFIX) as database_url,
            running_smtp_server() as smtp,
        ):
            env = stack_environment(database_url, work_dir, smtp.url())
            local_stack.migrate(env)
            with (
                served(work_dir, "api", env, None, "/api/v1/health") as (api_url, api_pid),
                served(work_dir, "ceiling", env, "benchmarks.hello_app:app", CEILING_PATH) as (
                    ceiling_url,
                    _,
                ),
                # Without a token the floor answers 401: up, its pool open (lifespan runs first).
                served(work_dir, "floor", env, "benchmarks.floor_app:app", FLOOR_PATH, ready_status=401) as (
                    floor_url,
                    _,
                ),
            ):
                yield RunningStack(api_url, ceiling_url, floor_url, database_url, work_dir, api_pid, smtp)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Data.


def sign_in(api_url: str, email: str) -> str:
    response = httpx.post(
        f"{api_url}/api/v1/auth/token", data={"username": email, "password": BENCH_PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return response.json()["access_token"]


def register(api_url: str, email: str, mailbox: SmtpTestServer) -> None:
    """A new account: registration answers the same 202 for any address, so that is all it says;
    the account exists once the mailed link is followed (the address must be verified), with the
    password sent there: the link's holder chooses it."""
    response = httpx.post(
        f"{api_url}/api/v1/auth/register",
        json={"email": email, "password": BENCH_PASSWORD, "full_name": "Benchmark User"},
        timeout=30,
    )
    response.raise_for_status()
    (mail,) = [item for item in mailbox.wait_for(1, timeout=30) if item.rcpt_tos == [email]]
    token = mail.link_token(f"{BENCH_PUBLIC_URL}/verify-email")
    verified = httpx.post(
        f"{api_url}/api/v1/auth/verify-email", json={"token": token, "password": BENCH_PASSWORD}, timeout=30
    )
    verified.raise_for_status()


# Measurements.


def profiled(
    profiler: profile.Profiler | None, key: str, label: str, *, longest_s: float
) -> contextlib.AbstractContextManager[None]:
    """The API's workers recorded while the block runs, when profiles were asked for."""
    if profiler is None:
        return contextlib.nullcontext()
    return profiler.recording(key, label, longest_s=longest_s)


def measure(
    run: RunningStack,
    endpoint: Endpoint,
    *,
    token: str,
    duration_s: float,
    rounds: int,
    floor_duration_s: float | None = None,
    profiler: profile.Profiler | None = None,
) -> Row:
    """Ceiling, floor and endpoint in turns, so a noisy patch of a shared machine hits all alike.

    The floor always sends the token (its one route is the session check), at the endpoint's
    connections, for `floor_duration_s` (default: as long as the others). With a profiler, the
    endpoint's last run is recorded.
    """
    bearer = {"Authorization": f"Bearer {token}"}
    headers = bearer if endpoint.authenticated else {}
    ceiling, floor, measured = [], [], []
    for round_number in range(1, rounds + 1):
        ceiling.append(
            wrk.run_wrk(
                run.ceiling_url + CEILING_PATH, connections=endpoint.connections, duration_s=duration_s
            )
        )
        floor.append(
            wrk.run_wrk(
                run.floor_url + FLOOR_PATH,
                connections=endpoint.connections,
                duration_s=floor_duration_s or duration_s,
                headers=bearer,
            )
        )
        last = profiler if round_number == rounds else None
        with profiled(last, endpoint.key, endpoint.name, longest_s=duration_s + 60):
            measured.append(
                wrk.run_wrk(
                    run.api_url + endpoint.path,
                    connections=endpoint.connections,
                    duration_s=duration_s,
                    headers=headers,
                )
            )
    return Row(
        endpoint=endpoint.name,
        connections=endpoint.connections,
        rps=round(statistics.median(r.requests_per_second for r in measured)),
        p50_ms=round(statistics.median(r.p50_ms for r in measured), 2),
        p99_ms=round(statistics.median(r.p99_ms for r in measured), 2),
        ceiling_rps=round(statistics.median(r.requests_per_second for r in ceiling)),
        ceiling_p99_ms=round(statistics.median(r.p99_ms for r in ceiling), 2),
        floor_rps=round(statistics.median(r.requests_per_second for r in floor)),
        floor_p99_ms=round(statistics.median(r.p99_ms for r in floor), 2),
        non_2xx=sum(r.non_2xx for r in measured),
        errors=sum(r.socket_errors for r in measured),
        floor_failures=sum(r.non_2xx + r.socket_errors for r in floor),
    )


def measure_sign_in(
    run: RunningStack, *, emails: list[str], duration_s: float, profiler: profile.Profiler | None = None
) -> dict[str, float]:
    """Sign-in throughput alone, then /health's latency while 8 clients sign in without pause.

    The 8 clients are 8 people (the seeded users take turns), as in life: one account signing in
    from 8 connections at once would meet its own per-address attempt budget instead. A profiler
    records the first run.
    """
    bodies = [urlencode({"username": email, "password": BENCH_PASSWORD}) for email in emails]
    form = {
        "bodies": bodies,
        "method": "POST",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    token_url = run.api_url + "/api/v1/auth/token"
    with profiled(profiler, "sign_in", "POST /api/v1/auth/token, 8 clients", longest_s=duration_s + 60):
        alone = wrk.run_wrk(token_url, connections=8, duration_s=duration_s, **form)
    signing_in = wrk.start_wrk(token_url, connections=8, threads=1, duration_s=duration_s + 2, **form)
    try:
        health = wrk.run_wrk(run.api_url + "/api/v1/health", connections=8, threads=1, duration_s=duration_s)
    finally:
        wrk.finish_wrk(signing_in, timeout=duration_s + 40)
    return {
        "sign_in_rps": round(alone.requests_per_second, 1),
        "sign_in_p99_ms": round(alone.p99_ms, 1),
        "sign_in_non_2xx": alone.non_2xx,
        "health_p99_ms_while_signing_in": round(health.p99_ms, 2),
        "health_rps_while_signing_in": round(health.requests_per_second),
    }


# The report.


def print_table(rows: list[Row], sign_in: dict[str, float]) -> None:
    header = (
        f"{'endpoint':<44} {'conn':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'hello':>6} {'/hello':>6} {'floor':>6} {'/floor':>6} {'non-2xx':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.endpoint:<44} {row.connections:>4} {row.rps:>7} {row.p50_ms:>7.2f} {row.p99_ms:>8.2f} "
            f"{row.ceiling_rps:>6} {row.ratio:>6.2f} {row.floor_rps:>6} {row.floor_ratio:>6.2f} "
            f"{row.non_2xx + row.errors:>7}"
        )
    failed = [row.endpoint.strip() for row in rows if row.floor_failures]
    if failed:
        print(f"warning: the floor answered non-2xx or failed during: {', '.join(failed)}")
    if not sign_in:
        return
    print()
    print(
        f"sign-in: {sign_in['sign_in_rps']} req/s (p99 {sign_in['sign_in_p99_ms']} ms, "
        f"non-2xx {sign_in['sign_in_non_2xx']}); /health p99 while 8 clients sign in: "
        f"{sign_in['health_p99_ms_while_signing_in']} ms"
    )


def machine() -> dict[str, object]:
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _import_end(status: int) -> str:
    """How an import ended: its 201, or a 202 (running past IMPORT_WAIT_SECONDS) followed to its end."""
    return "202, then imported" if status == 202 else str(status)


def print_imports(imports: list[stack_import.ImportFigures]) -> None:
    print()
    for f in imports:
        print(
            f"import through nginx: {f.rows:>9,} rows ({f.file_mb} MB CSV) -> {_import_end(f.status)} "
            f"in {f.seconds} s, "
            f"{f.rows_per_second:,} rows/s; worker RSS {f.worker_rss_before_mb} MB before, "
            f"peak {f.worker_rss_peak_mb} MB"
        )
    if len(imports) == 2:
        small, large = imports
        growth = large.worker_rss_peak_mb - small.worker_rss_peak_mb
        print(f"peak RSS of the {large.rows:,}-row import minus the {small.rows:,}-row one: {growth:.1f} MB")


def measure_imports(
    run: RunningStack, *, token: str, counts: list[int], profiler: profile.Profiler | None
) -> list[stack_import.ImportFigures]:
    """Each CSV size in turn; a profiler records the first (100,000 rows by default).

    The recording spans the whole measurement, so it also holds the workers answering the two
    requests that create the study; while the CSV is written they are idle and not sampled.
    """
    imports = []
    for number, count in enumerate(counts):
        recorder = profiler if number == 0 else None
        with profiled(recorder, f"import_{count}", f"import of {count:,} rows through nginx", longest_s=1900):
            imports.append(
                stack_import.measure_import(
                    run.api_url, token=token, gunicorn_pid=run.api_gunicorn_pid, rows=count
                )
            )
    return imports


def write_json(
    path: Path,
    rows: list[Row],
    sign_in: dict[str, float],
    imports: list[stack_import.ImportFigures],
    queue_imports: "list[queue_import.QueueImportFigures]",  # a string: queue_import imports this module
    profiles: list[profile.Profile],
    options: argparse.Namespace,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine(),
        "samples": options.samples,
        "workers": WORKERS,
        "duration_s": options.duration,
        "floor_duration_s": options.floor_duration,
        "rounds": options.rounds,
        "endpoints": [asdict(row) for row in rows],
        "sign_in": sign_in,
        "imports": [asdict(figures) for figures in imports],
        "queue_imports": [asdict(figures) for figures in queue_imports],
        "profiles": profile.as_json(profiles),
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {path}")


def endpoints(big_study: str) -> list[Endpoint]:
    samples = f"/api/v1/studies/{big_study}/samples?page_size=50"
    return [
        Endpoint("health", "GET /api/v1/health", "/api/v1/health"),
        Endpoint("auth_me", "GET /api/v1/auth/me", "/api/v1/auth/me", authenticated=True),
        Endpoint(
            "studies", "GET /api/v1/studies?page_size=20", "/api/v1/studies?page_size=20", authenticated=True
        ),
        Endpoint("study", "GET /api/v1/studies/{big}", f"/api/v1/studies/{big_study}", authenticated=True),
        Endpoint("samples", "GET /studies/{big}/samples?page_size=50", samples, authenticated=True),
        Endpoint(
            "samples_filtered",
            "  ... &field.tissue=blood",
            samples + "&field.tissue=blood",
            authenticated=True,
        ),
        Endpoint(
            "dashboard_summary",
            "GET /api/v1/dashboard/summary",
            "/api/v1/dashboard/summary",
            authenticated=True,
            connections=16,
        ),
        Endpoint(
            "dashboard_study",
            "GET /dashboard/studies/{big}",
            f"/api/v1/dashboard/studies/{big_study}",
            authenticated=True,
            connections=16,
        ),
    ]


ENDPOINT_KEYS = tuple(endpoint.key for endpoint in endpoints("{big}"))


def selected_endpoints(big_study: str, only: list[str] | None) -> list[Endpoint]:
    return [endpoint for endpoint in endpoints(big_study) if only is None or endpoint.key in only]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run (default 10)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating ceiling/floor/endpoint rounds (default 3)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1_000_000,
        help="samples to seed (default 1,000,000; 20%% in one study)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI's short version: 2 s runs (the floor's 1 s), 1 round, 50k samples, small imports",
    )
    parser.add_argument(
        "--import-rows",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="CSV sizes to import through nginx (default 100000 1000000)",
    )
    parser.add_argument(
        "--queue-import-rows",
        type=int,
        nargs="*",
        default=None,
        help="CSV sizes to import through the job queue, with 1 and then 2 workers "
        "(benchmarks.queue_import; default: the --import-rows sizes)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: [key.strip() for key in text.split(",") if key.strip()],
        default=None,
        help=f"measure only these endpoints, comma-separated, of: {', '.join(ENDPOINT_KEYS)} "
        "(default all); for quick before/after pairs, with --samples small, --no-sign-in and --import-rows",
    )
    parser.add_argument(
        "--no-sign-in", action="store_true", help="skip the sign-in measurement (8 clients hashing passwords)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the API workers with py-spy during each endpoint's last round, the sign-in run and "
        "the first import; write <key>.txt and <key>.speedscope.json under DIR and print a summary",
    )
    options = parser.parse_args(argv)
    options.floor_duration = options.duration
    if options.queue_import_rows is None:
        options.queue_import_rows = options.import_rows
    unknown = set(options.only or ()) - set(ENDPOINT_KEYS)
    if unknown:
        parser.error(f"unknown endpoint(s) for --only: {', '.join(sorted(unknown))}")
    if options.quick:
        options.duration, options.rounds, options.samples = 2.0, 1, 50_000
        # CI's run would grow by ~40% with 2 s floor runs; 1 s is still thousands of requests.
        options.floor_duration = 1.0
        options.import_rows = [10_000, 50_000]
        options.queue_import_rows = queue_import.QUICK_ROWS
    return options


def check_tools(options: argparse.Namespace) -> None:
    needed = [wrk.wrk_binary, local_stack.nginx_binary]
    if options.profile is not None:
        needed.append(profile.py_spy_binary)
    for find in needed:
        try:
            find()
        except FileNotFoundError as exc:
            raise SystemExit(str(exc)) from exc
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    check_tools(options)
    with running_stack() as run:
        profiler = profile.Profiler(options.profile, run.api_gunicorn_pid) if options.profile else None
        email = "bench@example.org"
        assert run.mailbox is not None
        register(run.api_url, email, run.mailbox)
        token = sign_in(run.api_url, email)
        seeded = seed.seed(run.database_url, owner_email=email, samples=options.samples)
        print(f"seeded {seeded.samples:,} samples in {seeded.seconds:.1f} s", flush=True)
        rows = [
            measure(
                run,
                endpoint,
                token=token,
                duration_s=options.duration,
                rounds=options.rounds,
                floor_duration_s=options.floor_duration,
                profiler=profiler,
            )
            for endpoint in selected_endpoints(str(seeded.big_study_id), options.only)
        ]
        sign_in_figures = (
            {}
            if options.no_sign_in
            else measure_sign_in(
                run, emails=seed.seeded_emails(8), duration_s=options.duration, profiler=profiler
            )
        )
        imports = measure_imports(run, token=token, counts=options.import_rows, profiler=profiler)
        queue_imports = (
            queue_import.measure_beside(
                run, email=email, rows=options.queue_import_rows, workers=queue_import.WORKER_COUNTS
            )
            if options.queue_import_rows
            else []
        )
    profiles = profiler.profiles if profiler else []
    print_table(rows, sign_in_figures)
    print_imports(imports)
    queue_import.print_table(queue_imports)
    profile.print_summary(profiles)
    write_json(options.json, rows, sign_in_figures, imports, queue_imports, profiles, options)


if __name__ == "__main__":
    sys.exit(main())
