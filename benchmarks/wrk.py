"""Running wrk and reading what it prints: requests per second, latency percentiles, non-2xx count."""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
_UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m)"


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * _UNIT_TO_MS[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """What `wrk --latency` printed; absent lines (no errors, no non-2xx) count as zero."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(rf"^\s+50%\s+{_DURATION}", text, re.MULTILINE)
    p99 = re.search(rf"^\s+99%\s+{_DURATION}", text, re.MULTILINE)
    total = re.search(r"(\d+) requests in", text)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unexpected wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        p50_ms=_milliseconds(*p50.groups()),
        p99_ms=_milliseconds(*p99.groups()),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def _lua_script(method: str, bodies: Sequence[str], headers: dict[str, str]) -> str:
    """Sets method and headers; with bodies, each request takes the next one in turn."""
    lines = [f'wrk.method = "{method}"']
    lines += [f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}" for name, value in headers.items()]
    if bodies:
        lines.append("local bodies = {" + ", ".join(_lua_string(body) for body in bodies) + "}")
        lines.append("local turn = 0")
        lines.append("request = function()")
        lines.append("  turn = turn % #bodies + 1")
        lines.append("  return wrk.format(nil, nil, nil, bodies[turn])")
        lines.append("end")
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_wrk(
    url: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 2,
    method: str = "GET",
    bodies: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> "subprocess.Popen[str]":
    """wrk in the background; `finish_wrk` waits for it and reads its result."""
    script = Path(tempfile.mkstemp(prefix="studybase-wrk-", suffix=".lua")[1])
    script.write_text(_lua_script(method, bodies, headers or {}), encoding="utf-8")
    argv = [
        wrk_binary(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # noqa: S603
    process.script = script  # type: ignore[attr-defined]  (removed by finish_wrk)
    return process


def finish_wrk(process: "subprocess.Popen[str]", *, timeout: float) -> WrkResult:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        process.script.unlink(missing_ok=True)  # type: ignore[attr-defined]
    return parse_wrk_output(output)


def run_wrk(url: str, *, connections: int, duration_s: float, **options: object) -> WrkResult:
    process = start_wrk(url, connections=connections, duration_s=duration_s, **options)  # type: ignore[arg-type]
    return finish_wrk(process, timeout=duration_s + 30)
