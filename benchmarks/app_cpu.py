"""CPU time per request of the API app in this process: no server, no network, no database.

    python -m benchmarks.app_cpu [--path /api/v1/health] [--requests 3000] [--rounds 5] 2>/dev/null

Calls the ASGI app of `create_app()` directly with one GET, again and again (it must answer the same
status every time), and prints the best and the median of the rounds' CPU time per request
(microseconds, this process only: other processes on a shared machine do not count, which makes it
steadier than the stack's req/s under load). What it
measures is the app's own cost around a route that needs no database: middleware, routing,
dependencies, serialisation and the access log line (on stderr: send it to /dev/null). For a
before/after pair, run it in a checkout of each commit in turn.
"""

import argparse
import asyncio
import statistics
import time

from starlette.types import Message

from src.app import create_app

WARM_UP_REQUESTS = 300


def request_scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"user-agent", b"app_cpu")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def microseconds_per_request(path: str, requests: int, rounds: int) -> tuple[list[float], int]:
    app = create_app()
    scope = request_scope(path)
    statuses: set[int] = set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    for _ in range(WARM_UP_REQUESTS):
        await app({**scope, "state": {}}, receive, send)
    per_round = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            await app({**scope, "state": {}}, receive, send)
        per_round.append((time.process_time() - started) / requests * 1e6)
    if len(statuses) != 1:
        raise SystemExit(f"{path} answered {sorted(statuses)}: not one answer, nothing to measure")
    return per_round, statuses.pop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        default="/api/v1/health",
        help="a GET that needs no database (`/api/v1/auth/me`: its 401 without a token, the routing and "
        "dependencies of an authenticated route up to the session check)",
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    options = parser.parse_args()
    per_round, status = asyncio.run(microseconds_per_request(options.path, options.requests, options.rounds))
    print(
        f"GET {options.path} ({status}): {min(per_round):.1f} µs CPU per request (best of {options.rounds}), "
        f"median {statistics.median(per_round):.1f}"
    )


if __name__ == "__main__":
    main()
