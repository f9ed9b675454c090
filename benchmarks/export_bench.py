"""Rows per second and time to the first byte of a study's export (CSV in both dialects, XLSX).

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/sb_export \\
        python -m benchmarks.export_bench [--samples 1000000] [--rounds 2] [--reuse]

The database named by DATABASE_URL is emptied, migrated and seeded by benchmarks/seed.py (1,000,000
samples by default, of which the big study holds 200,000): give it one of its own. `--reuse`
measures the data an earlier run seeded. The export is what the route streams (exports.export_csv,
exports.export_xlsx: pages of samples read on the event loop, the sheet written in a worker thread),
taken chunk by chunk as the response takes it, without the HTTP layer around it. Prints, per format,
the time to the first chunk, the time to the last, rows per second of wall-clock time and the MB
written, best of `--rounds`.
"""

import argparse
import asyncio
import time
import uuid

import anyio
from sqlalchemy import select

from benchmarks import dashboard_bench
from src.database import SessionFactory
from src.sampleFileUpload import exports, writers
from src.study import samples as study_samples
from src.study.models import Study


def _drain(chunks) -> tuple[float, float, int]:
    """(seconds to the first chunk, seconds to the last, bytes) of an export's chunks."""
    started = time.perf_counter()
    first = None
    size = 0
    for chunk in chunks:
        if first is None:
            first = time.perf_counter() - started
        size += len(chunk)
    return first or 0.0, time.perf_counter() - started, size


async def _export(make_chunks) -> tuple[float, float, int]:
    return await anyio.to_thread.run_sync(lambda: _drain(make_chunks()))


async def run(samples: int, rounds: int, *, reuse: bool, csv_only: bool = False) -> None:
    study_id: uuid.UUID = (
        await dashboard_bench._seeded_before()
        if reuse
        else (await dashboard_bench._seed_fresh(samples)).big_study_id
    )
    async with SessionFactory() as session:
        study = await session.scalar(select(Study).where(Study.id == study_id))
        validator = study_samples.validator_of(study)
        rows = study.sample_count
    cases = [
        ("CSV, excel", lambda: exports.export_csv(study_id, validator, writers.EXCEL)),
        ("CSV, excel-eu", lambda: exports.export_csv(study_id, validator, writers.EXCEL_EU)),
        ("XLSX", lambda: exports.export_xlsx(study_id, validator)),
    ]
    for label, make_chunks in cases[:2] if csv_only else cases:
        best = None
        for _ in range(rounds):
            first, total, size = await _export(make_chunks)
            if best is None or total < best[1]:
                best = (first, total, size)
        first, total, size = best
        print(
            f"{label:14} {rows:,} samples: first byte {first:6.3f} s, whole {total:6.2f} s, "
            f"{rows / total:9,.0f} rows/s, {size / 1024**2:6.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=1_000_000, help="of the data set (the big study: 20%%)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="measure the data an earlier run seeded")
    parser.add_argument("--csv-only", action="store_true", help="leave out the XLSX export")
    options = parser.parse_args()
    asyncio.run(run(options.samples, options.rounds, reuse=options.reuse, csv_only=options.csv_only))


if __name__ == "__main__":
    main()
