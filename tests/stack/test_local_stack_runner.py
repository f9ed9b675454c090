"""`python -m scripts.local_stack` as an operator runs it: gunicorn that dies is started again while
nginx answers 503 for it, and a SIGTERM stops gunicorn gracefully first, then nginx, with exit status 0."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from scripts import local_stack
from tests.stack.conftest import stack_environment

pytestmark = pytest.mark.stack

PROJECT_DIR = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def status_of(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.TransportError:
        return None


def test_the_runner_restarts_a_dead_gunicorn_behind_nginx_and_stops_cleanly(stack_database, tmp_path):
    port, api_port = local_stack.free_port(), local_stack.free_port()
    env = stack_environment(stack_database, tmp_path) | {"WEB_CONCURRENCY": "1"}
    runner = subprocess.Popen(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "scripts.local_stack",
            "--port",
            str(port),
            "--api-port",
            str(api_port),
            "--workers",
            "1",
        ],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    health = f"http://127.0.0.1:{port}/api/v1/health"
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode() for line in runner.stdout), daemon=True
    )
    reader.start()
    try:
        # Up, and supervising: the runner says so once nginx answers for gunicorn.
        wait_for(lambda: any("Studybase through nginx" in line for line in lines), timeout=60, what="started")
        (gunicorn,) = [
            pid for pid in children_of(runner.pid) if "gunicorn" in Path(f"/proc/{pid}/cmdline").read_text()
        ]

        os.killpg(gunicorn, signal.SIGKILL)  # the master and its worker, as an OOM kill would
        answers_while_down = []
        wait_for(
            lambda: answers_while_down.append(status_of(health)) or answers_while_down[-1] == 503,
            timeout=10,
            what="nginx answers 503 while gunicorn is down",
        )
        wait_for(lambda: status_of(health) == 200, timeout=60, what="gunicorn started again")
        assert runner.poll() is None

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        assert status_of(health) is None  # nginx stopped too
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
        reader.join(timeout=10)
        runner.stdout.close()
        output = "".join(lines)
        print(output)
    assert "starting it again" in output
