"""Sign-in and registration costs, measured in-process on a throwaway SQLite database.

    python -m benchmarks.auth_bench [--rounds 15]

Prints medians and ratios measured in the same run (these machines are shared and noisy):
- unknown email vs wrong password: near 1.0 means timing does not reveal who has an account;
- registering a taken address vs a new one: the same, for registration, with addresses verified
  later (test's default: a new address gets its account at once) and verified first (staging and
  production: a new address gets a pending registration until its link is followed);
- /health while sign-ins run vs /health alone: password hashing runs in worker threads, so
  other requests on the same event loop keep answering.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

_DB_DIR = Path(tempfile.mkdtemp(prefix="studybase-bench-"))
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATABASE_URL": f"sqlite+aiosqlite:///{(_DB_DIR / 'bench.db').as_posix()}",
        "LOG_LEVEL": "WARNING",
        "LOGIN_MAX_FAILURES": "1000000",
        "LOGIN_ACCOUNT_MAX_FAILURES": "1000000",
        "REGISTRATION_MAX_REQUESTS": "1000000",
    }
)

import httpx  # noqa: E402

from main import migrate  # noqa: E402
from src.app import create_app  # noqa: E402
from src.auth.config import auth_settings  # noqa: E402
from src.database import run_async  # noqa: E402

PASSWORD = "benchmark passphrase"  # noqa: S105 (a throwaway account in a temp database)


async def timed(call) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def median_ms(call, rounds: int) -> float:
    return statistics.median([await timed(call) for _ in range(rounds)])


async def interleaved_medians_ms(calls, rounds: int) -> list[float]:
    """Medians of calls taken in turns, so a slow patch of a shared machine hits all of them alike."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for taken, call in zip(samples, calls, strict=True):
            taken.append(await timed(call))
    return [statistics.median(taken) for taken in samples]


async def health_latency_during_logins(client: httpx.AsyncClient, rounds: int) -> float:
    async def sign_ins() -> None:
        for _ in range(rounds):
            await client.post("/api/v1/auth/token", data={"username": "a@example.org", "password": PASSWORD})

    background = [asyncio.create_task(sign_ins()) for _ in range(2)]
    await asyncio.sleep(0.05)
    samples = []
    while not all(task.done() for task in background) and len(samples) < rounds * 4:
        samples.append(await timed(lambda: client.get("/api/v1/health")))
        await asyncio.sleep(0.005)
    await asyncio.gather(*background)
    return statistics.median(samples)


async def registration_medians_ms(client: httpx.AsyncClient, rounds: int, *, new: str) -> list[float]:
    """Registering the one taken address again and again vs a new address (`{new}{n}@…`) each time."""
    new_addresses = (f"{new}{n}@example.org" for n in range(rounds))

    def registering(email: str):
        body = {"email": email, "password": PASSWORD, "full_name": "Bench"}
        return lambda: client.post("/api/v1/auth/register", json=body)

    return await interleaved_medians_ms(
        [registering("a@example.org"), lambda: registering(next(new_addresses))()], rounds
    )


async def run(rounds: int) -> None:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        body = {"email": "a@example.org", "password": PASSWORD, "full_name": "Bench"}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 202

        def login(email: str, password: str):
            return lambda: client.post("/api/v1/auth/token", data={"username": email, "password": password})

        success, wrong, unknown = await interleaved_medians_ms(
            [
                login("a@example.org", PASSWORD),
                login("a@example.org", "wrong passphrase"),
                login("nobody@example.org", "wrong passphrase"),
            ],
            rounds,
        )
        taken_registration, new_registration = await registration_medians_ms(client, rounds, new="new")
        auth_settings.REQUIRE_EMAIL_VERIFICATION = True  # from here on, as in staging and production
        taken_pending, new_pending = await registration_medians_ms(client, rounds, new="pending")
        idle_health = await median_ms(lambda: client.get("/api/v1/health"), rounds * 4)
        busy_health = await health_latency_during_logins(client, rounds)

    print(f"sign-in success          median {success:8.2f} ms")
    print(f"wrong password           median {wrong:8.2f} ms")
    print(f"unknown email            median {unknown:8.2f} ms")
    print(f"unknown / wrong-password ratio  {unknown / wrong:8.2f}   (1.00 = indistinguishable)")
    print(f"register a new address   median {new_registration:8.2f} ms")
    print(f"register a taken address median {taken_registration:8.2f} ms")
    registration_ratio = taken_registration / new_registration
    print(f"taken / new ratio               {registration_ratio:8.2f}   (1.00 = indistinguishable)")
    print(f"verification required: new      {new_pending:8.2f} ms   (a pending registration, no account)")
    print(f"verification required: taken    {taken_pending:8.2f} ms")
    print(f"taken / new ratio               {taken_pending / new_pending:8.2f}   (1.00 = indistinguishable)")
    print(f"/health idle             median {idle_health:8.2f} ms")
    print(f"/health during sign-ins  median {busy_health:8.2f} ms")
    print(f"/health busy / sign-in success  {busy_health / success:8.2f}   (far below 1 = not blocked)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="samples per measurement (bounded)")
    rounds = min(parser.parse_args().rounds, 200)
    try:
        migrate(os.environ["DATABASE_URL"])
        run_async(run(rounds))
    finally:
        shutil.rmtree(_DB_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
