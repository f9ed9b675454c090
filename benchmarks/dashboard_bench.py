"""Time of the dashboard routes in-process (httpx on the ASGI app) over the benchmark data set.

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/sb_bench \\
        python -m benchmarks.dashboard_bench [--samples 1000000] [--repeat 20] [--reuse]

The database named by DATABASE_URL is emptied, migrated and seeded by benchmarks/seed.py (1,000
studies, 1,000,000 samples by default): give it one of its own. `--reuse` skips that and measures
the data an earlier run seeded (seeding a million samples takes a minute or more). Prints the median
and worst time of the summary for a member (the seed's owner: the big study and a few others), for
an administrator (every study), of the big study's figures, and of each answered 304 (`If-None-Match`
with the tag just received). LOG_LEVEL=WARNING keeps the access log quiet. The end-to-end run is
`python -m benchmarks.stack`'s.
"""

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
from sqlalchemy import select, text

from benchmarks import seed
from main import migrate
from src.app import create_app
from src.auth import service as auth_service
from src.auth.constants import Role
from src.config import settings
from src.database import SessionFactory, create_engine_for
from src.study.models import Study

BENCH_PASSWORD = "a long benchmark password"  # noqa: S105 (a throwaway account in a throwaway database)


async def _timed(
    client, url: str, headers: dict[str, str], repeat: int, *, expected: int = 200
) -> tuple[float, float, str]:
    """Median and worst time in ms, and the last answer's ETag."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == expected, response.text[:500]
    return statistics.median(times), max(times), response.headers["ETag"]


async def _seed_fresh(samples: int) -> seed.SeededData:
    """Empties the database, migrates it, registers the two accounts and seeds the data set."""
    engine = create_engine_for(settings.DATABASE_URL)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    await asyncio.to_thread(migrate, settings.DATABASE_URL)
    async with SessionFactory() as session:
        for email, role in (("bench@example.org", Role.RESEARCHER), ("admin@example.org", Role.ADMIN)):
            await auth_service.create_user(
                session, email=email, password=BENCH_PASSWORD, full_name="B", role=role, email_verified=True
            )
    seeded = await asyncio.to_thread(
        seed.seed, settings.DATABASE_URL, owner_email="bench@example.org", samples=samples
    )
    print(f"seeded {samples:,} samples in {seeded.seconds:.1f} s")
    return seeded


async def _seeded_before() -> uuid.UUID:
    """The big study of an earlier run's data set: the owner's study with most samples."""
    async with SessionFactory() as session:
        return await session.scalar(select(Study.id).order_by(Study.sample_count.desc()).limit(1))


async def run(samples: int, repeat: int, *, reuse: bool) -> None:
    big_study_id = await _seeded_before() if reuse else (await _seed_fresh(samples)).big_study_id
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
            ("big study (200,000 samples)", f"/api/v1/dashboard/studies/{big_study_id}", member),
        ]
        for label, url, headers in cases:
            median, worst, tag = await _timed(client, url, headers, repeat)
            print(f"{label:34} median {median:7.1f} ms   worst {worst:7.1f} ms   ({repeat} requests)")
            unchanged = {**headers, "If-None-Match": tag}
            median, worst, _ = await _timed(client, url, unchanged, repeat, expected=304)
            print(f"{'  ... 304 (If-None-Match)':34} median {median:7.1f} ms   worst {worst:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="measure the data an earlier run seeded")
    options = parser.parse_args()
    asyncio.run(run(options.samples, options.repeat, reuse=options.reuse))


if __name__ == "__main__":
    main()
