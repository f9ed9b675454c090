"""Rows per second of the sample validator on one core, for the values of a CSV file and of JSON.

    python -m benchmarks.sample_validation_bench [--rows 200000] [--rounds 3]

A 10-field schema of every type (one text field with a pattern) validates rows of CSV-like
strings (untrimmed, a decimal comma, "yes"/"no") and rows of typed JSON values. Rates are per
second of CPU time of this process (one core), best of a few rounds: these machines are shared,
and wall-clock time would count the time other processes held the core. The file-import target is 50,000
rows/s end to end, so validation alone must be well above it.
"""

import argparse
import random
import time
from collections.abc import Mapping

from src.study.sample_validation import SampleValidator, compile_sample_schema

SCHEMA = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva", "urine", "tissue"]},
    {"name": "volume", "type": "number", "required": True, "min": 0, "max": 1000, "unit": "mL"},
    {"name": "aliquots", "type": "integer", "min": 1, "max": 50},
    {"name": "patient", "type": "text", "required": True, "pattern": r"P-[0-9]{5}", "max_length": 7},
    {"name": "consent", "type": "boolean", "required": True},
    {"name": "collected_on", "type": "date", "required": True},
    {"name": "frozen_at", "type": "datetime"},
    {"name": "concentration", "type": "number", "unit": "ng/uL"},
    {"name": "notes", "type": "text", "max_length": 200},
    {"name": "box", "type": "integer"},
]


def csv_row(rng: random.Random) -> dict[str, str]:
    return {
        "tissue": rng.choice(["blood", "saliva", "urine"]),
        "volume": f"{rng.uniform(0, 1000):.2f}".replace(".", ","),
        "aliquots": str(rng.randint(1, 50)),
        "patient": f" P-{rng.randint(0, 99999):05d} ",
        "consent": rng.choice(["yes", "no", "TRUE"]),
        "collected_on": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "frozen_at": f"2025-03-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00+01:00",
        "concentration": f"{rng.uniform(0, 90):.3f}",
        "notes": rng.choice(["", "haemolysed", "second draw"]),
        "box": str(rng.randint(1, 400)),
    }


def json_row(rng: random.Random) -> dict[str, object]:
    return {
        "tissue": rng.choice(["blood", "saliva", "urine"]),
        "volume": rng.uniform(0, 1000),
        "aliquots": rng.randint(1, 50),
        "patient": f"P-{rng.randint(0, 99999):05d}",
        "consent": rng.random() < 0.5,
        "collected_on": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "frozen_at": f"2025-03-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00Z",
        "concentration": rng.uniform(0, 90),
        "notes": None,
        "box": rng.randint(1, 400),
    }


def rows_per_second(validator: SampleValidator, rows: list[Mapping[str, object]], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for row in rows:
            _, issues = validator.validate(row)
            if issues:
                raise SystemExit(f"benchmark row refused: {issues}")
        best = min(best, time.process_time() - started)
    return len(rows) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 (synthetic rows, not secrets)
    validator = compile_sample_schema(SCHEMA)
    for label, make_row in (("CSV strings", csv_row), ("typed JSON", json_row)):
        rows = [make_row(rng) for _ in range(arguments.rows)]
        rate = rows_per_second(validator, rows, arguments.rounds)
        print(
            f"{label:>12}: {rate:>10,.0f} rows/s  ({len(SCHEMA)} fields, {arguments.rows:,} rows, one core)"
        )


if __name__ == "__main__":
    main()
