"""Time of the dashboard routes in-process (httpx on the ASGI app) over the benchmark data set.

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/sb_bench \\
        python -m benchmarks.dashboard_bench [--samples 1000000] [--repeat 20]

The database named by DATABASE_URL is emptied, migrated and seeded by benchmarks/seed.py (1,000
studies, 1,000,000 samples by default): give it one of its own. Prints the median and worst time of
the summary for a member (the seed's owner: the big study and a few others), for an administrator
(every study), and of the big study's figures. The end-to-end run is `python -m benchmarks.stack`'s.
"""

import argparse
import asyncio
import statistics
import time

BENCH_PASSWORD = "a long benchmark password"  # noqa: S105 (a throwaway account in a throwaway database)


async def _timed(client, url: str, headers: dict[str, str], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:500]
    return statistics.median(times), max(times)


async def run(samples: int, repeat: int) -> None:
    import httpx
    from sqlalchemy import text

    from benchmarks import seed
    from main import migrate
    from src.app import create_app
    from src.auth import service as auth_service
    from src.auth.constants import Role
    from src.config import settings
    from src.database import SessionFactory, create_engine_for

    engine = create_engine_for(settings.DATABASE_URL)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    await asyncio.to_thread(migrate, settings.DATABASE_URL)
    async with SessionFactory() as session:
        for email, role in (("bench@example.org", Role.RESEARCHER), ("admin@example.org", Role.ADMIN)):
            await auth_service.create_user(
                session, email=email, password=BENCH_PASSWORD, full_name="B", role=role
            )
    seeded = await asyncio.to_thread(
        seed.seed, settings.DATABASE_URL, owner_email="bench@example.org", samples=samples
    )
    print(f"seeded {samples:,} samples in {seeded.seconds:.1f} s")
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
        runs = []
        for email in ("bench@example.org", "admin@example.org"):
            token = (
                await client.post("/api/v1/auth/token", data={"username": email, "password": BENCH_PASSWORD})
            ).json()["access_token"]
            runs.append((email, {"Authorization": f"Bearer {token}"}))
        (_, member), (_, admin) = runs
        cases = [
            ("summary, member", "/api/v1/dashboard/summary", member),
            ("summary, admin", "/api/v1/dashboard/summary", admin),
            ("summary, admin, days=365", "/api/v1/dashboard/summary?days=365", admin),
            ("big study (200,000 samples)", f"/api/v1/dashboard/studies/{seeded.big_study_id}", member),
        ]
        for label, url, headers in cases:
            median, worst = await _timed(client, url, headers, repeat)
            print(f"{label:30} median {median:7.1f} ms   worst {worst:7.1f} ms   ({repeat} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    asyncio.run(run(options.samples, options.repeat))


if __name__ == "__main__":
    main()
