"""The production topology without Docker: nginx → gunicorn (uvicorn workers) → your database.

    python -m scripts.local_stack [--port 8080] [--api-port 8000] [--workers 2]
        [--server-names "localhost 127.0.0.1"] [--trusted-client 127.0.0.1 ...]

Uses the committed nginx/nginx.conf, nginx/default.conf, nginx/studybase/, nginx/html/ (the dashboard
page) and gunicorn.conf.py. Only what must differ outside Docker changes, in a rendered copy: the
upstream address (`api:8000` in compose), the listen port, the file paths (the page's root included),
the placeholders compose fills in (MAX_UPLOAD_MB, SERVER_NAMES), the trusted clients (none unless
given, as in production) and nginx's CORS allowlist (from CORS_ORIGINS, as the nginx container
writes it).
DATABASE_URL, SECRET_KEY and the rest come from
the environment or `.env`, as for `python main.py`. Migrations run once, before the workers
start. A gunicorn that dies is started again (nginx answers 503 meanwhile); Ctrl-C or SIGTERM stops
gunicorn gracefully first (nginx answering 503 to new requests), then nginx, and exits 0. The stack
tests (tests/stack/) use the same functions.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

PROJECT_DIR = Path(__file__).resolve().parent.parent
NGINX_DIR = PROJECT_DIR / "nginx"
DEFAULT_MAX_UPLOAD_MB = 100
DEFAULT_SERVER_NAMES = "localhost 127.0.0.1"
# Where docker-compose.yml mounts nginx/html (the dashboard page) in the nginx container.
COMPOSE_PAGE_ROOT = "/usr/share/nginx/html"
NGINX_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# default.conf lists the API's name four times, so that nginx can retry an idempotent request.
UPSTREAM_ENTRIES = 4
# One entry of default.conf's upstream: in compose `api` is every replica, found again in Docker's
# DNS (`resolve`, with the upstream's `resolver`: nginx >= 1.27.3). The local copy lists the given
# addresses instead, in each entry, and drops the resolver: nothing to look up, and older nginx
# (Debian's 1.22) cannot read either.
COMPOSE_UPSTREAM_ENTRY = "    server api:8000 resolve max_fails=0;\n"
COMPOSE_UPSTREAM_RESOLVER = "    resolver 127.0.0.11 valid=5s ipv6=off;\n"


class ConfigDrift(RuntimeError):
    """A committed config no longer contains a line the rendering expects to replace."""


def replace_once(text: str, old: str, new: str, *, source: str, times: int = 1) -> str:
    """`old` replaced by `new`; ConfigDrift unless `old` occurs exactly `times` times."""
    if text.count(old) != times:
        raise ConfigDrift(f"{source}: expected {old!r} exactly {times} time(s)")
    return text.replace(old, new)


def render_nginx_config(
    target: Path,
    *,
    listen: str,
    upstream: str | Sequence[str],
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    server_names: str = DEFAULT_SERVER_NAMES,
    trusted_clients: Sequence[str] = (),
    cors_origins: Sequence[str] = (),
) -> Path:
    """Writes runnable copies of the committed nginx files into `target`; returns nginx.conf's path.

    `upstream` is the API's address, or the addresses of several API hosts (each listed in every
    entry of the upstream, as compose's `api` name stands for every replica). `cors_origins` is the
    API's CORS_ORIGINS, written into cors-origins.conf as compose does.
    """
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    server = local_upstream(
        (NGINX_DIR / "default.conf").read_text(encoding="utf-8"),
        [upstream] if isinstance(upstream, str) else list(upstream),
    )
    for old, new in (
        ("listen 80;", f"listen {listen};"),
        ("listen 80 default_server;", f"listen {listen} default_server;"),
    ):
        server = replace_once(server, old, new, source="default.conf")
    server = replace_once(server, "${MAX_UPLOAD_MB}", str(max_upload_mb), source="default.conf")
    server = replace_once(server, "${SERVER_NAMES}", server_names, source="default.conf")
    # A copy of the dashboard page beside the config: nginx workers (an unprivileged user when root
    # starts nginx) can read the rendered folder, not necessarily the checkout.
    shutil.copytree(NGINX_DIR / "html", target / "html", dirs_exist_ok=True)
    server = replace_once(
        server, f"root {COMPOSE_PAGE_ROOT};", f"root {target / 'html'};", source="default.conf"
    )
    (target / "default.conf").write_text(server, encoding="utf-8")

    # nginx.conf and default.conf include these relative to their own folder, here as in compose.
    shutil.copytree(NGINX_DIR / "studybase", target / "studybase", dirs_exist_ok=True)
    trusted = "".join(f"{address} 1;\n" for address in trusted_clients)
    with (target / "studybase" / "trusted-clients.conf").open("a", encoding="utf-8") as listed:
        listed.write(trusted)

    write_cors_origins(target / "cors-origins.conf", cors_origins)

    main = (NGINX_DIR / "nginx.conf").read_text(encoding="utf-8")
    for old, new in (
        ("pid /var/run/nginx.pid;", f"pid {target / 'nginx.pid'};"),
        ("error_log /var/log/nginx/error.log warn;", f"error_log {target / 'error.log'} warn;"),
        ("/var/log/nginx/access.log", str(target / "access.log")),
        ("include /etc/nginx/conf.d/*.conf;", f"include {target / 'default.conf'};"),
    ):
        main = replace_once(main, old, new, source="nginx.conf")
    temp_paths = "".join(f"    {name}_temp_path {target / name};\n" for name in NGINX_TEMP_PATHS)
    main = replace_once(main, "http {\n", "http {\n" + temp_paths, source="nginx.conf")
    (target / "nginx.conf").write_text(main, encoding="utf-8")
    return target / "nginx.conf"


def local_upstream(server: str, addresses: Sequence[str]) -> str:
    """default.conf's upstream with `addresses` in place of compose's `api` replicas."""
    if not addresses:
        raise ValueError("an upstream needs at least one address")
    entry = "".join(f"    server {address} max_fails=0;\n" for address in addresses)
    server = replace_once(
        server, COMPOSE_UPSTREAM_ENTRY, entry, source="default.conf", times=UPSTREAM_ENTRIES
    )
    return replace_once(server, COMPOSE_UPSTREAM_RESOLVER, "", source="default.conf")


def write_cors_origins(target: Path, origins: Sequence[str]) -> None:
    """nginx's CORS allowlist, by the script nginx's container runs at start (one implementation)."""
    written = subprocess.run(  # noqa: S603 (fixed argv, our own script)
        ["sh", str(NGINX_DIR / "cors-origins.sh"), str(target)],  # noqa: S607 (POSIX sh)
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CORS_ORIGINS": ",".join(origins)},
        capture_output=True,
        text=True,
        check=False,
    )
    if written.returncode != 0:
        raise ValueError(written.stderr.strip())


@contextlib.contextmanager
def throwaway_database(admin_url: str, *, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield (
            make_url(admin_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def check_nginx_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed argv, our own config file)
        [nginx_binary(), "-t", "-q", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()), None
    )
    if found is None:
        raise FileNotFoundError("nginx is not installed (Debian/Ubuntu: apt-get install nginx)")
    return found


def start_nginx(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "nginx.stderr").open("wb") as stderr:  # the child keeps its own copy
        return subprocess.Popen(  # noqa: S603
            [nginx_binary(), "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so stop() can reach the workers too
        )


def migrate(env: Mapping[str, str]) -> None:
    subprocess.run([sys.executable, "main.py", "migrate"], cwd=PROJECT_DIR, env=dict(env), check=True)


def start_gunicorn(
    *, bind: str, workers: int, env: Mapping[str, str], log: Path, app: str | None = None
) -> subprocess.Popen[bytes]:
    """gunicorn with the committed config; `app` replaces Studybase's (the benchmark's ceiling)."""
    environment = dict(env) | {"GUNICORN_BIND": bind, "WEB_CONCURRENCY": str(workers)}
    with log.open("wb") as stderr:  # the child keeps its own copy
        return subprocess.Popen(  # noqa: S603 (fixed argv)
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *([app] if app else [])],
            cwd=PROJECT_DIR,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so stop() can reach the workers too
        )


def start_worker(*, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python main.py worker`: a job queue worker (imports with IMPORT_RUNNER=queue) on `env`'s
    DATABASE_URL. Appends to `log`: several workers (or one restarted) can share it."""
    with log.open("ab") as stderr:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "main.py", "worker"],
            cwd=PROJECT_DIR,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so stop() can reach it whatever it started
        )


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_embedded(*, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python main.py` as a new user runs it: one uvicorn process, migrating DATABASE_URL first,
    listening on HOST:PORT from `env`."""
    with log.open("wb") as stderr:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "main.py"],
            cwd=PROJECT_DIR,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so stop() can reach it whatever it started
        )


def wait_until_answering(
    url: str, *, process: subprocess.Popen[bytes], status: int | None = 200, timeout: float = 30.0
) -> None:
    """Polls `url` until it answers with `status` (any status when None) or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL we built)
                answered = response.status
        except urllib.error.HTTPError as error:
            answered = error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            answered = None
        if answered is not None and status in (None, answered):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


# Longer than gunicorn's graceful_timeout (30s), so a graceful stop is never cut short.
STOP_TIMEOUT_SECONDS = 40.0


def stop(process: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM (a graceful stop for gunicorn and nginx), then SIGKILL to the whole process group.

    Killing only the master would leave its workers running, still bound to the port.
    """
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever the group still has: orphaned workers
    process.wait(timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080, help="where nginx listens (127.0.0.1)")
    parser.add_argument("--api-port", type=int, default=8000, help="where gunicorn listens (127.0.0.1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="only run `nginx -t` on the rendered config")
    parser.add_argument(
        "--max-upload-mb", type=int, default=int(os.environ.get("MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
    )
    parser.add_argument(
        "--server-names",
        default=os.environ.get("SERVER_NAMES", DEFAULT_SERVER_NAMES),
        help="the host names nginx answers for (others get 421)",
    )
    parser.add_argument(
        "--trusted-client",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="exempt this address or CIDR from the rate and connection limits (a load generator)",
    )
    args = parser.parse_args()
    from src.config import settings  # the API's CORS_ORIGINS (environment or .env), for nginx too

    options = {
        "max_upload_mb": args.max_upload_mb,
        "server_names": args.server_names,
        "trusted_clients": args.trusted_client,
        "cors_origins": settings.CORS_ORIGINS,
    }

    if args.check:
        check_only(**options)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a SIGTERM'd runner still stops its children
    work = Path(tempfile.mkdtemp(prefix="studybase-stack-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    config = rendered_and_checked(work / "nginx", args.port, args.api_port, **options)
    env = dict(os.environ) | {"FORWARDED_ALLOW_IPS": "127.0.0.1"}
    migrate(env)
    api = Supervised(bind=f"127.0.0.1:{args.api_port}", workers=args.workers, env=env, work=work)
    nginx = None
    try:
        wait_until_answering(f"http://127.0.0.1:{args.api_port}/api/v1/health", process=api.process)
        nginx = start_nginx(config)
        wait_until_answering(f"http://127.0.0.1:{args.port}/healthz", process=nginx)
        print(f"Studybase through nginx: http://127.0.0.1:{args.port}/docs  (logs in {work}; Ctrl-C stops)")
        api.run_until_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        # gunicorn first: while it finishes the requests in flight, nginx answers new ones 503.
        api.stop()
        if nginx is not None:
            stop(nginx)


# A gunicorn that dies is started again this many times in RESTART_WINDOW_SECONDS, then given up.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


class Supervised:
    """gunicorn, started again when it dies (nginx answers 503 meanwhile); a clean exit (0: someone
    stopped it on purpose) ends the runner cleanly, with exit status 0."""

    def __init__(self, *, bind: str, workers: int, env: Mapping[str, str], work: Path) -> None:
        self.bind, self.workers, self.env, self.work = bind, workers, env, work
        self.restarts: list[float] = []
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return start_gunicorn(
            bind=self.bind, workers=self.workers, env=self.env, log=self.work / "gunicorn.log"
        )

    def run_until_stopped(self) -> None:
        while True:
            exit_code = self.process.wait()
            if exit_code == 0:
                return
            now = time.monotonic()
            self.restarts = [at for at in self.restarts if now - at < RESTART_WINDOW_SECONDS] + [now]
            if len(self.restarts) > MAX_RESTARTS:
                raise SystemExit(
                    f"gunicorn keeps exiting (last with {exit_code}); see {self.work / 'gunicorn.log'}"
                )
            print(f"gunicorn exited with {exit_code}; starting it again (nginx answers 503 meanwhile)")
            self.process = self._start()

    def stop(self) -> None:
        stop(self.process)


def rendered_and_checked(target: Path, port: int, api_port: int, **options) -> Path:
    config = render_nginx_config(
        target, listen=f"127.0.0.1:{port}", upstream=f"127.0.0.1:{api_port}", **options
    )
    checked = check_nginx_config(config)
    if checked.returncode != 0:
        raise SystemExit(f"nginx -t failed:\n{checked.stderr}")
    return config


def check_only(**options) -> None:
    work = Path(tempfile.mkdtemp(prefix="studybase-nginx-check-"))
    try:
        rendered_and_checked(work / "nginx", 18080, 18000, **options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("nginx -t: the committed configuration is valid")


if __name__ == "__main__":
    main()
