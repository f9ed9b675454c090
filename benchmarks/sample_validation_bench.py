"""Rows per second of the sample validator on one core, for the values of a CSV file and of JSON,
and of a file's cells read in its dialect first (issue 18) as an import reads them.

    python -m benchmarks.sample_validation_bench [--rows 200000] [--rounds 3]

A 10-field schema of every type (one text field with a pattern) validates rows of CSV-like
strings (untrimmed, a decimal comma, "yes"/"no") and rows of typed JSON values. The "file cells"
lines are what an import does with a row's cells: each read by its column's reader in the file's
dialect (sheet_import.RowChecker._values, cell_dialect.py), then validated: once with the same
strings as "CSV strings" in a file whose decimal mark is `.` (the cost of reading in a dialect,
against "cells, no dialect": the same cells put in the validator's dict as an import did before),
and once with a German Excel row (`234,5`, `14.03.2025`, `WAHR`, `Ja`, `NA`). Rates are per
second of CPU time of this process (one core), best of a few rounds: these machines are shared,
and wall-clock time would count the time other processes held the core. The file-import target is
50,000 rows/s end to end, so validation alone must be well above it.
"""

import argparse
import contextlib
import random
import time
from collections.abc import Mapping
from operator import itemgetter

from src.sampleFileUpload.cell_dialect import FileCells, ReadingOptions
from src.sampleFileUpload.constants import IMPORT_BATCH_ROWS, DecimalMark, ImportMode
from src.sampleFileUpload.sheet_import import RowChecker, plan_columns
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


def point_file_row(rng: random.Random) -> dict[str, str]:
    """The CSV strings of csv_row in a file whose one decimal mark is `.`."""
    return {**csv_row(rng), "volume": f"{rng.uniform(0, 1000):.2f}"}


def german_row(rng: random.Random) -> dict[str, str]:
    """A row as German Excel saves it (decimal commas, dotted dates, WAHR/FALSCH and Ja/Nein, NA)."""
    return {
        "tissue": rng.choice(["Blood", "saliva", "URINE"]),
        "volume": f"{rng.uniform(0, 1000):.2f}".replace(".", ","),
        "aliquots": str(rng.randint(1, 50)),
        "patient": f" P-{rng.randint(0, 99999):05d} ",
        "consent": rng.choice(["WAHR", "FALSCH", "Ja", "nein"]),
        "collected_on": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2025",
        "frozen_at": f"{rng.randint(1, 28):02d}.03.2025 {rng.randint(0, 23):02d}:15",
        "concentration": rng.choice(["NA", f"{rng.uniform(0, 90):.3f}".replace(".", ",")]),
        "notes": rng.choice(["", "haemolysed", "second draw"]),
        "box": f"{rng.randint(1, 400)}",
    }


def file_cells_per_second(
    validator: SampleValidator, rows: list[Mapping[str, str]], rounds: int, *, decimal_mark: DecimalMark
) -> float:
    """Rows per second through an import's reading of its value cells (a batch of IMPORT_BATCH_ROWS
    at a time, column by column, as RowChecker.check_batch reads them) and their validation."""
    headers = list(rows[0])
    plan = plan_columns(headers, validator)
    sheet_rows = [[row[header] for header in headers] for row in rows]
    numbered = list(enumerate(sheet_rows, start=2))
    options = ReadingOptions(decimal_mark=decimal_mark)
    cells = FileCells(options, delimiter=None, rows_again=lambda: contextlib.nullcontext(iter(numbered)))
    checker = RowChecker(plan, validator, mode=ImportMode.INSERT, max_rows=1, cells=cells)
    checker.seen_ids.close()  # sample_ids are not this benchmark's
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for start in range(0, len(sheet_rows), IMPORT_BATCH_ROWS):
            batch = sheet_rows[start : start + IMPORT_BATCH_ROWS]
            numbers = list(range(start + 2, start + 2 + len(batch)))
            columns = [
                reader.read(list(map(itemgetter(reader.index), batch)), numbers) for reader in checker.readers
            ]
            for values in zip(*(column.values for column in columns), strict=True):
                _, issues = validator.validate(dict(zip(checker.names, values, strict=True)))
                if issues:
                    raise SystemExit(f"benchmark row refused: {issues}")
            if any(column.refusals for column in columns):
                raise SystemExit("a benchmark cell was refused")
        best = min(best, time.process_time() - started)
    return len(rows) / best


def undialected_cells_per_second(
    validator: SampleValidator, rows: list[Mapping[str, str]], rounds: int
) -> float:
    """The reference for the file cells: a row's cells made the validator's dict as they are, what an
    import did before cells had a dialect (they were put in a dict one by one)."""
    headers = list(rows[0])
    sheet_rows = [[row[header] for header in headers] for row in rows]
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for cells in sheet_rows:
            _, issues = validator.validate(dict(zip(headers, cells, strict=True)))
            if issues:
                raise SystemExit(f"benchmark row refused: {issues}")
        best = min(best, time.process_time() - started)
    return len(rows) / best


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
    rates = {}
    for label, make_row in (("CSV strings", csv_row), ("typed JSON", json_row)):
        rows = [make_row(rng) for _ in range(arguments.rows)]
        rates[label] = rows_per_second(validator, rows, arguments.rounds)
    point_rows = [point_file_row(rng) for _ in range(arguments.rows)]
    rates["cells, no dialect"] = undialected_cells_per_second(validator, point_rows, arguments.rounds)
    rates["file cells, ."] = file_cells_per_second(
        validator, point_rows, arguments.rounds, decimal_mark=DecimalMark.POINT
    )
    german_rows = [german_row(rng) for _ in range(arguments.rows)]
    rates["file cells, German"] = file_cells_per_second(
        validator, german_rows, arguments.rounds, decimal_mark=DecimalMark.COMMA
    )
    for label, rate in rates.items():
        print(
            f"{label:>18}: {rate:>10,.0f} rows/s  ({len(SCHEMA)} fields, {arguments.rows:,} rows, one core)"
        )
    print(
        f"file cells, . / cells, no dialect: {rates['file cells, .'] / rates['cells, no dialect']:.2f}; "
        f"/ CSV strings: {rates['file cells, .'] / rates['CSV strings']:.2f}"
    )


if __name__ == "__main__":
    main()
