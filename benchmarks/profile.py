"""Profiles of the API's gunicorn workers under the stack benchmark's load, summarised by layer.

Part of `python -m benchmarks.stack --profile DIR`: while an endpoint's last round runs (and the
sign-in run, and the first import), every API worker is recorded with `py-spy record --pid`.
Each recording is written under DIR as `<key>.txt` (collapsed stacks of both workers, py-spy's
`--format raw`: one line per stack, root first, then its sample count; flamegraph.pl reads it)
and `<key>.speedscope.json` (one profile per worker; open it at https://www.speedscope.app).

The summary gives every sample to the layer of its innermost frame (self time), by the rules of
LAYER_RULES, and lists the functions with the most self time. Frames are per function
(`--function`: the line is where the function starts), so a function's samples add up in one.

Idle threads are left out (py-spy's default, `--idle` off): a worker's thread pool keeps threads
waiting on a queue, and each would add a sample per tick, so with `--idle` the shares would depend
on how many threads exist rather than on where the CPU goes. py-spy runs `--nonblocking` (reads
the worker's memory without pausing it): paused at every sample, as by default, the idle pool
threads were still counted as active (15-21% of a /health profile in `Condition.wait`, none
without pausing), and the pauses slow the very run being measured. The price: read while the
worker runs on, about one stack in six comes out cut short at the root end; the summary uses
only the innermost frame, which py-spy reads first.
Where else the time goes shows in two columns, from /proc: `cpu`, the workers' CPU time over the
window's wall time, and `queue`, the time their event loops were ready to run but waited for a
core (the machine's other processes, PostgreSQL and nginx among them, held both). The rest of the
window the loops had nothing to run: they waited on PostgreSQL, the pool or the clients. A loop
waiting for a core is still sampled (py-spy counts it active), so on a busy machine a function
that wakes another process, such as a socket write to PostgreSQL, can collect the samples of the
time the woken process keeps the core.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.stack_import import worker_pids

INSTALL_HINT = "py-spy is not installed (pip install py-spy)"
SAMPLE_RATE = 100  # py-spy's default
TOP_FUNCTIONS = 10
STARTUP_TIMEOUT_S = 15.0
QUIET_CPU_SHARE = 0.05  # a worker below this share of a core is done with the previous load
QUIET_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0

# The layers, in the order the summary prints them.
SRC = "src"
SQLALCHEMY = "SQLAlchemy"
PSYCOPG = "psycopg"
FASTAPI = "FastAPI"
PYDANTIC = "pydantic"
HTTP = "HTTP"
JSON = "json"
LOOP = "loop"
WAITING = "waiting"
OTHER = "other"
LAYERS = (SRC, SQLALCHEMY, PSYCOPG, FASTAPI, PYDANTIC, HTTP, JSON, LOOP, WAITING, OTHER)
LAYER_MEANINGS = {
    SRC: "our code (src/)",
    SQLALCHEMY: "SQLAlchemy",
    PSYCOPG: "psycopg",
    FASTAPI: "FastAPI/Starlette: routing, dependency solving, middleware",
    PYDANTIC: "pydantic",
    HTTP: "uvicorn/httptools/h11",
    JSON: "json",
    LOOP: "event loop: asyncio/uvloop, and anyio under Starlette",
    WAITING: "idle/waiting: a thread caught in a wait py-spy still counted as active",
    OTHER: "everything else: stdlib helpers, jose, argon2, ...",
}

# Module path prefix → layer; the first match wins. Paths are as py-spy prints them: relative to
# the sys.path entry they were found on (`sqlalchemy/orm/session.py`, `asyncio/events.py`, `src/...`).
# C code (uvloop, httptools, psycopg's C parts, the json encoder) has no frames of its own: its time
# goes to the Python function that called it.
LAYER_RULES: tuple[tuple[str, str], ...] = (
    ("src/", SRC),
    ("sqlalchemy/", SQLALCHEMY),
    ("psycopg/", PSYCOPG),
    ("psycopg_c/", PSYCOPG),
    ("psycopg_binary/", PSYCOPG),
    ("psycopg_pool/", PSYCOPG),
    ("fastapi/", FASTAPI),
    ("starlette/", FASTAPI),
    ("pydantic/", PYDANTIC),
    ("pydantic_core/", PYDANTIC),
    ("uvicorn/", HTTP),
    ("uvicorn_worker/", HTTP),
    ("httptools/", HTTP),
    ("h11/", HTTP),
    ("json/", JSON),
    ("asyncio/", LOOP),
    ("uvloop/", LOOP),
    ("anyio/", LOOP),
    ("threading.py", WAITING),
    ("selectors.py", WAITING),
    ("queue.py", WAITING),
)

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_INSTALL_ROOT = re.compile(r"^.*/(?:site-packages|dist-packages|lib/python\d+\.\d+)/")


# Reading and summarising collapsed stacks (pure functions).


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str  # as a module path: `sqlalchemy/orm/session.py`
    line: int | None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{self.function} ({where})" if where else self.function


def parse_frame(text: str) -> Frame:
    """`Session.execute (sqlalchemy/orm/session.py:2290)`; an absolute path loses its install root."""
    match = _FRAME.match(text)
    if match is None:
        return Frame(function=text, file="", line=None)
    line = match.group("line")
    return Frame(
        function=match.group("function"),
        file=_INSTALL_ROOT.sub("", match.group("file")),
        line=int(line) if line else None,
    )


def layer_of(file: str) -> str:
    for prefix, layer in LAYER_RULES:
        if file.startswith(prefix):
            return layer
    return OTHER


def read_collapsed(text: str) -> Counter[str]:
    """Collapsed stacks (`root;...;innermost COUNT` per line) → samples per stack."""
    stacks: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def write_collapsed(path: Path, stacks: Mapping[str, int]) -> None:
    path.write_text(
        "".join(f"{stack} {count}\n" for stack, count in sorted(stacks.items())), encoding="utf-8"
    )


@dataclass(frozen=True, slots=True)
class FunctionShare:
    function: str  # `name (module/path.py:first line)`
    layer: str
    share: float  # of all samples, 0..1


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    samples: int
    layers: dict[str, float]  # every layer of LAYERS, in that order: share of samples, 0..1
    top_functions: list[FunctionShare]


def summarise(stacks: Mapping[str, int], *, top: int = TOP_FUNCTIONS) -> ProfileSummary:
    """Each sample to its innermost frame: the layers' shares and the functions with most self time."""
    by_layer: Counter[str] = Counter()
    by_function: Counter[Frame] = Counter()
    for stack, count in stacks.items():
        innermost = parse_frame(stack.rpartition(";")[2])
        by_layer[layer_of(innermost.file)] += count
        by_function[innermost] += count
    total = sum(by_layer.values())

    def share(count: int) -> float:
        return round(count / total, 4) if total else 0.0

    return ProfileSummary(
        samples=total,
        layers={layer: share(by_layer[layer]) for layer in LAYERS},
        top_functions=[
            FunctionShare(function=str(frame), layer=layer_of(frame.file), share=share(count))
            for frame, count in sorted(by_function.items(), key=lambda item: (-item[1], str(item[0])))[:top]
        ],
    )


def speedscope_document(name: str, per_worker: Mapping[int, Mapping[str, int]]) -> dict[str, object]:
    """Speedscope's file format: shared frames, one sampled profile per worker."""
    frames: dict[str, int] = {}
    profiles = []
    for pid, stacks in per_worker.items():
        samples, weights = [], []
        for stack, count in sorted(stacks.items()):
            samples.append([frames.setdefault(frame, len(frames)) for frame in stack.split(";")])
            weights.append(count)
        total = sum(weights)
        profiles.append(
            {
                "type": "sampled",
                "name": f"{name}: worker {pid}",
                "unit": "none",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        )
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": name,
        "exporter": "benchmarks.profile",
        "shared": {"frames": [_speedscope_frame(text) for text in frames]},
        "profiles": profiles,
    }


def _speedscope_frame(text: str) -> dict[str, object]:
    frame = parse_frame(text)
    described: dict[str, object] = {"name": frame.function}
    if frame.file:
        described["file"] = frame.file
    if frame.line is not None:
        described["line"] = frame.line
    return described


# Recording the workers.


def py_spy_binary() -> str:
    """py-spy on PATH, or next to this Python (a virtualenv that is not activated)."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (every thread) so far; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queued_seconds(pid: int) -> float:
    """How long the process's main thread (a worker's event loop) sat runnable, waiting for a core."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (FileNotFoundError, IndexError, ValueError):
        return 0.0


@dataclass(frozen=True, slots=True)
class WorkerTimes:
    cpu_s: float
    queued_s: float

    @classmethod
    def now(cls, pid: int) -> "WorkerTimes":
        return cls(cpu_s=cpu_seconds(pid), queued_s=queued_seconds(pid))

    def __sub__(self, earlier: "WorkerTimes") -> "WorkerTimes":
        return WorkerTimes(cpu_s=self.cpu_s - earlier.cpu_s, queued_s=self.queued_s - earlier.queued_s)


@dataclass
class Profile:
    key: str  # the endpoint's --only key, `sign_in` or `import_<rows>`
    label: str
    workers: int
    seconds: float
    cpu_share: float  # the workers' CPU time over the window's wall time, per worker, 0..1
    queued_share: float  # the time their event loops waited for a core, over the same, 0..1
    files: list[str]
    summary: ProfileSummary
    problems: list[str] = field(default_factory=list)  # what py-spy said when it failed on a worker


class Profiler:
    """Records the workers of one gunicorn master into `directory`, one profile per `recording`."""

    def __init__(self, directory: Path, master_pid: int) -> None:
        self.directory = directory
        self.master_pid = master_pid
        self.profiles: list[Profile] = []

    @contextlib.contextmanager
    def recording(self, key: str, label: str, *, longest_s: float) -> Iterator[None]:
        """py-spy on every worker for as long as the block runs (`longest_s` at most)."""
        pids = worker_pids(self.master_pid)
        _wait_until_quiet(pids)
        with tempfile.TemporaryDirectory(prefix="studybase-py-spy-") as folder:
            spies = {pid: _start_py_spy(pid, Path(folder), longest_s=longest_s) for pid in pids}
            try:
                for spy in spies.values():
                    _wait_until_sampling(spy)
                before = {pid: WorkerTimes.now(pid) for pid in pids}
                started = time.perf_counter()
                yield
                seconds = time.perf_counter() - started
                spent = [WorkerTimes.now(pid) - before[pid] for pid in pids]
            finally:
                for spy in spies.values():
                    _stop(spy)
            self.profiles.append(self._written(key, label, spies, seconds=seconds, spent=spent))

    def _written(
        self, key: str, label: str, spies: Mapping[int, "_Spy"], *, seconds: float, spent: list[WorkerTimes]
    ) -> Profile:
        per_worker = {pid: spy.stacks() for pid, spy in spies.items()}
        merged: Counter[str] = Counter()
        for stacks in per_worker.values():
            merged.update(stacks)
        collapsed = self.directory / f"{key}.txt"
        speedscope = self.directory / f"{key}.speedscope.json"
        write_collapsed(collapsed, merged)
        speedscope.write_text(json.dumps(speedscope_document(label, per_worker)), encoding="utf-8")
        return Profile(
            key=key,
            label=label,
            workers=len(spies),
            seconds=round(seconds, 2),
            cpu_share=_per_worker(sum(times.cpu_s for times in spent), seconds, len(spent)),
            queued_share=_per_worker(sum(times.queued_s for times in spent), seconds, len(spent)),
            files=[str(collapsed), str(speedscope)],
            summary=summarise(merged),
            problems=[spy.said() for spy in spies.values() if spy.failed()],
        )


def _per_worker(total_s: float, window_s: float, workers: int) -> float:
    return round(total_s / (window_s * workers), 3) if window_s and workers else 0.0


@dataclass(frozen=True, slots=True)
class _Spy:
    pid: int
    process: "subprocess.Popen[bytes]"
    output: Path
    log: Path

    def stacks(self) -> Counter[str]:
        return read_collapsed(self.output.read_text(encoding="utf-8")) if self.output.exists() else Counter()

    def failed(self) -> bool:
        """An idle worker (one import's other worker) records nothing, and that is no failure."""
        return self.process.returncode != 0 or not self.output.exists()

    def said(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        message = text.partition("Stack backtrace")[0]  # py-spy's own trace says nothing to a reader
        said = " ".join(word for word in message.split() if word != "py-spy>")
        return f"worker {self.pid}: py-spy exited with {self.process.returncode}: {said or 'no output'}"


def _wait_until_quiet(pids: list[int]) -> None:
    """Requests still in flight from the previous load (sign-ins hashing) stay out of the profile."""
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    while time.monotonic() < deadline:
        before = {pid: cpu_seconds(pid) for pid in pids}
        time.sleep(0.5)
        if all(cpu_seconds(pid) - before[pid] < QUIET_CPU_SHARE * 0.5 for pid in pids):
            return


def _start_py_spy(pid: int, folder: Path, *, longest_s: float) -> _Spy:
    output, log = folder / f"{pid}.txt", folder / f"{pid}.log"
    argv = [
        py_spy_binary(),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--function",
        "--rate",
        str(SAMPLE_RATE),
        "--duration",
        str(max(1, round(longest_s))),  # a bound even if nobody stops it
        "--output",
        str(output),
        "--nonblocking",  # see the module's docstring
    ]
    with log.open("wb") as written:  # the child keeps its own copy
        process = subprocess.Popen(  # noqa: S603 (fixed argv)
            argv,
            stdout=written,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by us with SIGINT, not by a Ctrl-C meant for the benchmark
        )
    return _Spy(pid=pid, process=process, output=output, log=log)


def _wait_until_sampling(spy: _Spy) -> None:
    """py-spy says so once attached; a window opened before that would lose its first samples."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and spy.process.poll() is None:
        if b"Sampling process" in spy.log.read_bytes():
            return
        time.sleep(0.05)


def _stop(spy: _Spy) -> None:
    """SIGINT: py-spy stops sampling and writes its file, as on Ctrl-C."""
    if spy.process.poll() is None:
        spy.process.send_signal(signal.SIGINT)
    try:
        spy.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        spy.process.kill()
        spy.process.wait()


# The report.


def summary_lines(profiles: Iterable[Profile]) -> list[str]:
    profiles = list(profiles)
    if not profiles:
        return []
    widths = {layer: max(len(layer), 5) for layer in LAYERS}
    header = f"{'profile':<18} {'samples':>7} {'cpu':>5} {'queue':>5}  " + " ".join(
        f"{layer:>{widths[layer]}}" for layer in LAYERS
    )
    lines = textwrap.wrap(
        f"profiles (py-spy at {SAMPLE_RATE}/s, every thread of the API workers, idle threads left out): "
        "% of the samples by the layer of their innermost frame (self time); cpu: the workers' CPU "
        "time over the window's wall time, per worker; queue: the time their event loops were ready to "
        "run but waited for a core, over the same (what the workers neither ran nor queued for, they "
        "waited on: PostgreSQL, clients)",
        width=len(header),
    )
    lines += [header, "-" * len(header)]
    for profile in profiles:
        summary = profile.summary
        lines.append(
            f"{profile.key:<18} {summary.samples:>7} {profile.cpu_share:>5.0%} {profile.queued_share:>5.0%}  "
            + " ".join(f"{summary.layers[layer]:>{widths[layer]}.1%}" for layer in LAYERS)
        )
    lines += textwrap.wrap(
        "; ".join(f"{layer} = {LAYER_MEANINGS[layer]}" for layer in LAYERS),
        width=len(header),
        initial_indent="layers: ",
        subsequent_indent="  ",
    )
    for profile in profiles:
        lines.append("")
        lines.append(
            f"{profile.key}: {profile.label}, {profile.summary.samples:,} samples in {profile.seconds} s "
            f"({profile.files[0]}); top functions by self time:"
        )
        lines += [
            f"  {top.share:>6.1%}  {top.layer:<10} {top.function}" for top in profile.summary.top_functions
        ]
        lines += [f"  ! {problem}" for problem in profile.problems]
    return lines


def print_summary(profiles: Iterable[Profile]) -> None:
    lines = summary_lines(profiles)
    if lines:
        print()
        print("\n".join(lines))


def as_json(profiles: Iterable[Profile]) -> list[dict[str, object]]:
    return [asdict(profile) for profile in profiles]
