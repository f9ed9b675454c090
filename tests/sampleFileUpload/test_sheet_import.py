"""Checking rows against a study's schema, and the sample_ids seen in a file, kept on disk."""

import contextlib
import uuid

import pytest

from src.sampleFileUpload import importer
from src.sampleFileUpload.cell_dialect import FileCells, ReadingOptions
from src.sampleFileUpload.constants import ImportMode
from src.sampleFileUpload.sheet_import import RowChecker, SeenIds, batches, plan_columns
from src.study.sample_validation import compile_sample_schema
from tests.study.conftest import FIELDS

VALIDATOR = compile_sample_schema(FIELDS)


def checked(headers: list[str], rows: list[list[object]]):
    """The checked rows of a sheet with `headers` (header on row 1, rows numbered from 2)."""
    plan = plan_columns(headers, VALIDATOR)
    numbered = [(number, list(cells)) for number, cells in enumerate(rows, start=2)]
    again = lambda: contextlib.nullcontext(iter(numbered))  # noqa: E731 - the file's rows read again
    cells = FileCells(ReadingOptions(), delimiter=",", rows_again=again)
    checker = RowChecker(plan, VALIDATOR, mode=ImportMode.INSERT, max_rows=len(rows) + 1, cells=cells)
    try:
        return [row for batch in batches(numbered, checker, size=100) for row in batch]
    finally:
        checker.seen_ids.close()


def test_values_right_of_the_header_give_one_error_per_column_on_the_header_row_not_one_per_row():
    rows = [[f"S-{number}", "blood", *(["extra"] * 400)] for number in range(200)]

    result = checked(["sample_id", "tissue"], rows)

    errors = [
        (e.row, e.column, e.code, e.message) for row in result for e in (*row.errors, *row.column_errors)
    ]
    assert errors == [(1, None, "unknown_column", "columns 3-402 have values but no header (first on row 2)")]
    assert not any(row.errors for row in result)  # an error of the columns, not of the rows (issue 18)


def test_a_column_right_of_the_header_is_reported_when_its_first_value_comes():
    rows = [["S-1", "blood", None, "x"], ["S-2", "blood", "y", "z"], ["S-3", "blood", "w", None, None, "v"]]

    result = checked(["sample_id", "tissue"], rows)

    assert [(row.row, [(e.row, e.value, e.message) for e in row.column_errors]) for row in result] == [
        (2, [(1, "x", "column 4 has values but no header (first on row 2)")]),
        (3, [(1, "y", "column 3 has values but no header (first on row 3)")]),
        (4, [(1, "v", "column 6 has values but no header (first on row 4)")]),
    ]


def test_a_rejected_row_keeps_only_the_cells_under_the_header():
    [row] = checked(["sample_id", "tissue"], [["S-1", "plasma", *(["extra"] * 50)]])

    assert row.cells == ["S-1", "plasma"]
    assert [error.code for error in row.errors] == ["not_a_choice"]
    assert [error.code for error in row.column_errors] == ["unknown_column"]


def test_an_id_is_new_once_and_after_that_answers_the_row_it_came_on_first():
    seen = SeenIds(capacity=50_001)
    try:
        keys = ("s-1", "s-2", "s-1", "é-∂", "é-∂", "s-2")
        assert [seen.earlier_row(key, row) for row, key in enumerate(keys, start=2)] == [
            None,
            None,
            2,
            None,
            5,
            3,
        ]
    finally:
        seen.close()


def test_colliding_hashes_never_make_a_false_duplicate():
    seen = SeenIds(capacity=300, hash_of=lambda _key: 42)  # every id on one slot, one hash
    try:
        assert all(seen.earlier_row(f"s-{number}", number) is None for number in range(300))
        assert [seen.earlier_row(f"s-{number}", 1_000) for number in range(300)] == list(range(300))
    finally:
        seen.close()


def test_a_full_table_keeps_every_id_and_its_row():
    seen = SeenIds(capacity=50_001)
    try:
        assert all(seen.earlier_row(f"s-{number}", number + 2) is None for number in range(50_000))
        assert all(seen.earlier_row(f"s-{number}", 0) == number + 2 for number in range(0, 50_000, 7))
        assert seen.earlier_row("s-50000", 50_002) is None
    finally:
        seen.close()


def test_more_ids_than_its_capacity_is_an_error_not_a_wrong_answer():
    seen = SeenIds(capacity=2)
    try:
        assert seen.earlier_row("a", 2) is None
        assert seen.earlier_row("b", 3) is None
        assert seen.earlier_row("a", 4) == 2
        with pytest.raises(OverflowError):
            seen.earlier_row("c", 5)
    finally:
        seen.close()


def test_new_sample_ids_drawn_in_bulk_are_distinct_random_uuids():
    texts = importer._new_ids(5_000)
    ids = [uuid.UUID(text) for text in texts]

    assert [str(value) for value in ids] == texts  # the canonical text COPY sends
    assert len(set(ids)) == 5_000
    assert {value.version for value in ids} == {4}
    assert {value.variant for value in ids} == {uuid.RFC_4122}
    assert importer._new_ids(0) == []


def test_scattered_columns_right_of_the_header_are_named_as_runs():
    cells = ["S-1", "blood", "a", None, "b", None, "c", "d", "e"]

    [row] = checked(["sample_id", "tissue"], [cells])

    assert [(error.value, error.message) for error in row.column_errors] == [
        ("a", "columns 3, 5, 7-9 have values but no header (first on row 2)")
    ]


def test_a_missing_value_marker_is_an_empty_sample_id_or_status():
    rows = checked(["sample_id", "status", "tissue"], [["NA", "N/A", "blood"], ["S-1", "#N/A", "blood"]])

    assert [[(error.column, error.code) for error in row.errors] for row in rows] == [
        [("sample_id", "required")],
        [],
    ]
    assert rows[1].status is None
