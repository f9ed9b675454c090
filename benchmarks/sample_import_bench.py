"""Rows per second of a sample-file import in-process: httpx on the ASGI app, PostgreSQL (or SQLite).

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/sb_bench \\
        python -m benchmarks.sample_import_bench [--rows 100000] [--mode insert]

The database named by DATABASE_URL is emptied and migrated first: give it one of its own. A
CSV of --rows rows and 10 typed columns (the schema of sample_validation_bench) is generated,
uploaded once with dry_run (check only) and once for real; the script prints the rows per second
of each, wall clock, the CPU time of this process per row (app and client, all threads: not
PostgreSQL's; steadier than the wall clock on a shared machine), and the peak RSS of this process
(app and client share it). The end-to-end
benchmark through nginx and gunicorn is `python -m benchmarks.stack`'s.
"""

import argparse
import asyncio
import os
import random
import resource
import tempfile
import time
from pathlib import Path

BENCH_PASSWORD = "a long benchmark password"  # noqa: S105 (a throwaway account in a throwaway database)


def generate_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(
            "sample_id,tissue,volume [mL],aliquots,patient,consent,collected_on,frozen_at,"
            "concentration [ng/uL],notes,box\r\n"
        )
        for number in range(rows):
            out.write(
                f"S-{number:08d},{rng.choice(['blood', 'saliva', 'urine'])},{rng.uniform(0, 1000):.2f},"
                f"{rng.randint(1, 50)},P-{rng.randint(0, 99999):05d},{rng.choice(['yes', 'no'])},"
                f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},2025-03-04T05:06:07Z,"
                f"{rng.uniform(0, 100):.3f},note {number % 97},{rng.randint(1, 500)}\r\n"
            )


async def run(rows: int, mode: str) -> None:
    import httpx
    from sqlalchemy import text

    from benchmarks.sample_validation_bench import SCHEMA
    from main import migrate
    from src.app import create_app
    from src.auth import service as auth_service
    from src.auth.constants import Role
    from src.config import settings
    from src.database import SessionFactory, create_engine_for
    from src.study import service as study_service
    from src.study.schemas import StudyCreate

    if settings.DATABASE_URL.startswith("postgresql"):
        engine = create_engine_for(settings.DATABASE_URL)
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        await engine.dispose()
    await asyncio.to_thread(migrate, settings.DATABASE_URL)
    async with SessionFactory() as session:
        owner = await auth_service.create_user(
            session,
            email="bench@example.org",
            password=BENCH_PASSWORD,
            full_name="B",
            role=Role.RESEARCHER,
            email_verified=True,
        )
        study = (
            await study_service.create_study(
                session, owner=owner, data=StudyCreate(code="BENCH", title="Bench", sample_fields=SCHEMA)
            )
        ).study
    app = create_app()
    work = Path(tempfile.mkdtemp(prefix="import-bench-"))
    sheet = work / "samples.csv"
    generate_csv(sheet, rows)
    print(
        f"{rows:,} rows, {sheet.stat().st_size / 2**20:.1f} MB CSV, database {settings.DATABASE_URL.split('://')[0]}"
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
        token = (
            await client.post(
                "/api/v1/auth/token",
                data={"username": "bench@example.org", "password": BENCH_PASSWORD},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for dry_run in ("true", "false"):
            with sheet.open("rb") as content:
                started, cpu_started = time.perf_counter(), time.process_time()
                response = await client.post(
                    f"/api/v1/studies/{study.id}/sample-files",
                    files={"file": ("samples.csv", content, "text/csv")},
                    data={"mode": mode, "dry_run": dry_run},
                    headers=headers,
                )
                elapsed = time.perf_counter() - started
                cpu_us = (time.process_time() - cpu_started) / rows * 1e6
            report = response.json()["report"]
            assert response.status_code in (200, 201), response.text[:500]
            assert report["errors_total"] == 0, report["errors"][:3]
            label = "dry run (check only)" if dry_run == "true" else "import"
            print(
                f"{label:22} {response.status_code}  {elapsed:6.2f} s  {rows / elapsed:9,.0f} rows/s"
                f"  {cpu_us:6.1f} us CPU/row"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (app + client): {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    arguments = parser.parse_args()
    os.environ.setdefault("UPLOAD_DIR", tempfile.mkdtemp(prefix="import-bench-uploads-"))
    # The import is timed to its end: an upload answers 202 (and the script would stop) once its
    # import runs past IMPORT_WAIT_SECONDS (20 s by default), as 100,000 rows do on a busy machine.
    os.environ.setdefault("IMPORT_WAIT_SECONDS", "600")
    asyncio.run(run(arguments.rows, arguments.mode))


if __name__ == "__main__":
    main()
