"""The compact set of sample_ids seen in a file: exact, however the hashes fall."""

from src.sampleFileUpload.sheet_import import SeenIds


def test_an_id_is_new_once_and_a_duplicate_after():
    seen = SeenIds()
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
    seen = SeenIds(hash_of=lambda _key: 42 << 32)  # every id lands on the same slot with the same tag
    try:
        assert all(seen.add(f"s-{number}") for number in range(300))
        assert not any(seen.add(f"s-{number}") for number in range(300))
    finally:
        seen.close()


def test_the_table_grows_and_keeps_every_id():
    seen = SeenIds()
    try:
        assert all(seen.add(f"s-{number}") for number in range(50_000))
        assert not any(seen.add(f"s-{number}") for number in range(0, 50_000, 7))
        assert seen.add("s-50000")
    finally:
        seen.close()
