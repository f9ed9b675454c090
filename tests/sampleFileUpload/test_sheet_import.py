"""The sample_ids seen in a file, kept on disk: exact, however the hashes fall."""

import uuid

import pytest

from src.sampleFileUpload import importer
from src.sampleFileUpload.sheet_import import SeenIds


def test_an_id_is_new_once_and_a_duplicate_after():
    seen = SeenIds(capacity=50_001)
    try:
        assert [seen.add(key) for key in ("s-1", "s-2", "s-1", "é-∂", "é-∂", "s-2")] == [
            True,
            True,
            False,
            True,
            False,
            False,
        ]
    finally:
        seen.close()


def test_colliding_hashes_never_make_a_false_duplicate():
    seen = SeenIds(capacity=300, hash_of=lambda _key: 42)  # every id on one slot, one hash
    try:
        assert all(seen.add(f"s-{number}") for number in range(300))
        assert not any(seen.add(f"s-{number}") for number in range(300))
    finally:
        seen.close()


def test_a_full_table_keeps_every_id():
    seen = SeenIds(capacity=50_001)
    try:
        assert all(seen.add(f"s-{number}") for number in range(50_000))
        assert not any(seen.add(f"s-{number}") for number in range(0, 50_000, 7))
        assert seen.add("s-50000")
    finally:
        seen.close()


def test_more_ids_than_its_capacity_is_an_error_not_a_wrong_answer():
    seen = SeenIds(capacity=2)
    try:
        assert seen.add("a")
        assert seen.add("b")
        assert not seen.add("a")
        with pytest.raises(OverflowError):
            seen.add("c")
    finally:
        seen.close()


def test_new_sample_ids_drawn_in_bulk_are_distinct_random_uuids():
    ids = importer._new_ids(5_000)

    assert len(set(ids)) == 5_000
    assert {value.version for value in ids} == {4}
    assert {value.variant for value in ids} == {uuid.RFC_4122}
    assert importer._new_ids(0) == []
