"""Rows per second of readers.open_sheet on CSV and XLSX, and its peak memory as a CSV file grows.

    python -m benchmarks.sheet_reading_bench [--rows 200000] [--memory-rows 100000 1000000]
        [--xlsx-memory-rows 10000 100000] [--rounds 2]

The files (10 typed columns, as an export of samples would hold) are written with writers.py into a
temporary directory and deleted afterwards. Rates are rows per second of CPU time of this process
(one core), best of a few rounds: these machines are shared, and wall-clock time would count the
time other processes held the core. Reading means what the importer does before validation:
detect the format and encoding, then iterate every row. Peak memory is the peak of Python's
allocations (tracemalloc) while one file (CSV, then XLSX) is read, which must not grow with the file.
"""

import argparse
import datetime as dt
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

from src.sampleFileUpload.readers import open_sheet
from src.sampleFileUpload.writers import csv_chunks, xlsx_file

HEADER = [
    "sample_id",
    "tissue",
    "volume [mL]",
    "aliquots",
    "patient",
    "consent",
    "collected_on",
    "frozen_at",
    "concentration [ng/uL]",
    "notes",
]


def sample_rows(count: int, seed: int = 7) -> Iterator[list[object]]:
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    yield HEADER
    start = dt.date(2024, 1, 1)
    for number in range(count):
        yield [
            f"S-{number:07d}",
            rng.choice(["blood", "saliva", "urine"]),
            round(rng.uniform(0, 1000), 2),
            rng.randint(1, 50),
            f"P-{rng.randint(0, 99999):05d}",
            rng.random() < 0.5,
            start + dt.timedelta(days=rng.randint(0, 700)),
            dt.datetime(2025, 3, rng.randint(1, 28), rng.randint(0, 23), 15),
            round(rng.uniform(0, 90), 3),
            rng.choice([None, "haemolysed", "second draw, after lunch"]),
        ]


def write_csv(path: Path, rows: int) -> Path:
    with path.open("wb") as file:
        for chunk in csv_chunks(sample_rows(rows)):
            file.write(chunk)
    return path


def read_all(path: Path, filename: str) -> int:
    with open_sheet(path, filename=filename, max_rows=10_000_000) as sheet:
        return sum(1 for _ in sheet.rows)


def best_rate(read: Callable[[], int], rounds: int) -> tuple[float, int]:
    best = 0.0
    rows = 0
    for _ in range(rounds):
        started = time.process_time()
        rows = read()
        best = max(best, rows / (time.process_time() - started))
    return best, rows


def peak_memory_mb(read: Callable[[], int]) -> float:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1] / 1024**2
    finally:
        tracemalloc.stop()


def report_rate(label: str, rows: int, rate: float, path: Path) -> None:
    size_mb = path.stat().st_size / 1024**2
    print(f"{label} {rows:>9,} rows x 10 columns: {rate:>9,.0f} rows/s (CPU), file {size_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the rate files")
    parser.add_argument("--memory-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--xlsx-memory-rows", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sheet-bench-") as directory:
        folder = Path(directory)
        csv_path = write_csv(folder / "rate.csv", options.rows)
        rate, rows = best_rate(lambda: read_all(csv_path, "samples.csv"), options.rounds)
        report_rate("CSV ", rows, rate, csv_path)
        xlsx_path = xlsx_file(sample_rows(options.rows), sheet_name="samples", directory=folder)
        rate, rows = best_rate(lambda: read_all(xlsx_path, "samples.xlsx"), options.rounds)
        report_rate("XLSX", rows, rate, xlsx_path)
        xlsx_path.unlink()
        csv_path.unlink()
        for count in options.memory_rows:
            path = write_csv(folder / f"memory-{count}.csv", count)
            peak = peak_memory_mb(lambda path=path: read_all(path, "samples.csv"))
            print(f"CSV  {count:>9,} rows: peak traced memory while reading {peak:6.2f} MB")
            path.unlink()
        for count in options.xlsx_memory_rows:
            path = xlsx_file(sample_rows(count), sheet_name="samples", directory=folder)
            peak = peak_memory_mb(lambda path=path: read_all(path, "samples.xlsx"))
            print(f"XLSX {count:>9,} rows: peak traced memory while reading {peak:6.2f} MB")
            path.unlink()


if __name__ == "__main__":
    main()
