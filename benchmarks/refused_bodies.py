"""What a refused JSON body costs, measured in-process on a throwaway SQLite database.

    python -m benchmarks.refused_bodies [--rounds 3] [--uvicorn]

For each hostile shape of a body just under the 1 MB nginx limit, prints the median time of one
request through the ASGI app (one worker's time) and the size of the answer, for
`POST /api/v1/auth/refresh` and `POST /api/v1/auth/register`. With `--uvicorn` it also starts
the app under uvicorn on a loopback port and prints the `/api/v1/health` p99 while 30 of the
largest refused requests are in flight (bounded: 30 bodies, 200 health probes).
"""

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_DB_DIR = Path(tempfile.mkdtemp(prefix="studybase-bench-"))
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATABASE_URL": f"sqlite+aiosqlite:///{(_DB_DIR / 'bench.db').as_posix()}",
        "LOG_LEVEL": "WARNING",
    }
)

import httpx  # noqa: E402

from main import migrate  # noqa: E402
from scripts.local_stack import free_port  # noqa: E402
from src.app import create_app  # noqa: E402

BODY_LIMIT = 1024 * 1024
ENDPOINTS = ("/api/v1/auth/refresh", "/api/v1/auth/register")


def unknown_keys() -> bytes:
    """120,000 distinct three-letter keys, 960 KB, as in the issue."""
    keys = ("".join(letters) for letters in itertools.product(string.ascii_letters + string.digits, repeat=3))
    return json.dumps(dict.fromkeys(itertools.islice(keys, 120_000), 0), separators=(",", ":")).encode()


def duplicate_keys() -> bytes:
    return b"{" + b",".join([b'"refresh_token":"x"'] * 50_000) + b"}"


def hostile_bodies() -> dict[str, bytes]:
    return {
        "120k unknown keys": unknown_keys(),
        "100k open brackets": b"[" * 100_000,
        "400k nested arrays": b"[" * 400_000 + b"]" * 400_000,
        "long array": b"[" + b",".join([b"0"] * 450_000) + b"]",
        "long array in a field": b'{"email":[' + b",".join([b"0"] * 400_000) + b"]}",
        "1e308 numbers": b"[" + b",".join([b"1e308"] * 160_000) + b"]",
        "500k-digit integer": b'{"refresh_token":' + b"9" * 500_000 + b"}",
        "50k duplicate keys": duplicate_keys(),
        "500 x depth-900 columns": b"[" + b",".join([b"[" * 900 + b"]" * 900] * 500) + b"]",
        "250 x 4000-digit ints": b"[" + b",".join([b"9" * 4000] * 250) + b"]",
        "49,995 floats in limits": b"["
        + b",".join([b"[" + b",".join([b"1.5e308"] * 9_999) + b"]"] * 5)
        + b"]",
        "999 unknown keys (errors)": json.dumps({f"k{i}": "x" * 300 for i in range(999)}).encode(),
    }


async def measure(client: httpx.AsyncClient, path: str, body: bytes, rounds: int) -> tuple[float, int, int]:
    times, size, status = [], 0, 0
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
        times.append((time.perf_counter() - started) * 1000)
        size, status = len(response.content), response.status_code
    return statistics.median(times), size, status


async def in_process(rounds: int) -> None:
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        print(f"{'shape':26} {'KB':>5}  {'endpoint':22} {'status':>6} {'ms':>8} {'bytes':>9}")
        for name, body in hostile_bodies().items():
            assert len(body) <= BODY_LIMIT, name
            for path in ENDPOINTS:
                ms, size, status = await measure(client, path, body, rounds)
                print(f"{name:26} {len(body) // 1024:>5}  {path[8:]:22} {status:>6} {ms:>8.1f} {size:>9}")


async def health_p99_under_load(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    body = unknown_keys()
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for _ in range(100):
            try:
                await client.get("/api/v1/health")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        latencies: list[float] = []

        async def flood() -> None:
            await client.post(
                "/api/v1/auth/refresh", content=body, headers={"Content-Type": "application/json"}
            )

        async def probe() -> None:
            for _ in range(200):
                started = time.perf_counter()
                await client.get("/api/v1/health")
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.005)

        started = time.perf_counter()
        await asyncio.gather(probe(), *(flood() for _ in range(30)))
        took = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\nuvicorn, 1 worker: health p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
        f"max {latencies[-1]:.1f} ms, while 30 x 120k-key bodies were refused ({took:.1f} s in all)"
    )


def under_uvicorn() -> None:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "src.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
    )
    try:
        asyncio.run(health_p99_under_load(port))
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvicorn", action="store_true")
    args = parser.parse_args()
    try:
        migrate(os.environ["DATABASE_URL"])
        asyncio.run(in_process(args.rounds))
        if args.uvicorn:
            under_uvicorn()
    finally:
        shutil.rmtree(_DB_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
