"""Issue 16, finding 5: what an activity entry keeps of its details. Each text cut to its beginning,
the whole within a few KB of JSON, and every cut named by its JSON Pointer under `truncated`; applied
in record_activity, where every module writes activity."""

import json
import random
from typing import Any

import pytest

from src.database import SessionFactory
from src.study import activity as study_activity
from src.study.constants import (
    ACTIVITY_CUT_MARK,
    ACTIVITY_DETAILS_MAX_BYTES,
    ACTIVITY_TEXT_MAX_LENGTH,
    ActivityAction,
)
from src.study.utils import bounded_details
from tests.study.conftest import study_url

LIMIT = ACTIVITY_TEXT_MAX_LENGTH


def json_bytes(value: Any) -> int:
    """The size of a value as the API answers it (compact JSON, UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def resolved(document: Any, pointer: str) -> Any:
    """The value a JSON Pointer (RFC 6901) names; KeyError or IndexError when there is none."""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def texts_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(text for member in value.values() for text in texts_in(member))]
    if isinstance(value, list):
        return [text for item in value for text in texts_in(item)]
    return [value] if isinstance(value, str) else []


def test_details_that_fit_are_kept_as_they_are():
    details = {"sample_id": "S1", "old": {"values": {"note": "x" * LIMIT}}, "new": {"values": {"note": None}}}

    assert bounded_details(details) == details


def test_a_long_text_keeps_its_beginning_ends_in_the_mark_and_is_named():
    kept = bounded_details({"old": {"title": "a" * 900_000}, "new": {"title": "b" * (LIMIT + 1)}})

    assert kept["old"]["title"] == "a" * (LIMIT - 1) + ACTIVITY_CUT_MARK
    assert kept["new"]["title"] == "b" * (LIMIT - 1) + ACTIVITY_CUT_MARK
    assert kept["truncated"] == ["/old/title", "/new/title"]


def test_a_text_that_merely_ends_like_a_cut_one_is_not_named():
    text = "a" * (LIMIT - 1) + ACTIVITY_CUT_MARK

    assert bounded_details({"title": text}) == {"title": text}


def test_pointers_escape_tilde_and_slash():
    kept = bounded_details({"a/b~c": {"": "x" * (LIMIT + 1)}})

    assert kept["truncated"] == ["/a~1b~0c/"]
    assert resolved(kept, "/a~1b~0c/") == "x" * (LIMIT - 1) + ACTIVITY_CUT_MARK


def test_old_and_new_share_the_room_and_each_keeps_its_first_values():
    many = {f"f{number:03}": "v" * 10_000 for number in range(90)}

    kept = bounded_details({"sample_id": "S1", "old": {"values": many}, "new": {"values": many}})

    assert json_bytes(kept) <= ACTIVITY_DETAILS_MAX_BYTES
    assert kept["sample_id"] == "S1"
    old, new = list(kept["old"]["values"]), list(kept["new"]["values"])
    assert old[:2] == new[:2] == ["f000", "f001"]
    assert (old, new) == (list(many)[: len(old)], list(many)[: len(new)])
    assert {"/old/values", "/new/values", "/old/values/f000", "/new/values/f000"} <= set(kept["truncated"])


def test_small_members_are_kept_whole_beside_a_large_one():
    kept = bounded_details(
        {"old": {"values": {"note": "x" * 5_000}}, "new": {"values": {"note": None}}, "z": 1}
    )

    assert kept["new"] == {"values": {"note": None}}
    assert kept["z"] == 1
    assert kept["truncated"] == ["/old/values/note"]


def test_a_list_keeps_only_its_first_items():
    fields = [{"name": f"f{number:03}", "type": "text", "description": "d" * 250} for number in range(200)]

    kept = bounded_details({"code": "ONC-1", "sample_fields": fields})

    assert json_bytes(kept) <= ACTIVITY_DETAILS_MAX_BYTES
    names = [field["name"] for field in kept["sample_fields"] if "name" in field]
    assert names == [f"f{number:03}" for number in range(len(names))]
    assert "/sample_fields" in kept["truncated"]


def test_truncated_is_reserved_for_what_was_cut():
    with pytest.raises(ValueError, match="truncated"):
        bounded_details({"truncated": []})


# Characters of each JSON length: ASCII, 2, 3 and 4 bytes of UTF-8, escaped.
CHARACTERS = 'a~/ \u00e9\u65e5\u202e\U0001f600"\\\n\x01'
NAMES = ["old", "new", "values", "sample_id", "", "a/b", "~"]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(CHARACTERS) * rng.randint(LIMIT - 2, 5 * LIMIT)
    return "".join(rng.choices(CHARACTERS, k=rng.randint(0, 8)))


def random_json(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False, rng.randint(-(2**63), 2**63), rng.uniform(-1e300, 1e300)])
    if kind in (1, 2, 3):
        return random_text(rng)
    members = range(rng.randint(0, 12))
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in members]
    return {rng.choice([*NAMES, random_text(rng)[:6]]): random_json(rng, depth + 1) for _ in members}


@pytest.mark.parametrize("seed", range(300))
def test_any_details_are_kept_within_the_bounds_and_name_each_cut(seed):
    rng = random.Random(seed)
    details = {rng.choice(NAMES): random_json(rng, 1) for _ in range(rng.randint(0, 8))}

    kept = bounded_details(details)

    assert json_bytes(kept) <= ACTIVITY_DETAILS_MAX_BYTES
    cut = kept.pop("truncated", [])
    assert all(len(text) <= LIMIT for text in texts_in(kept))
    for pointer in cut:
        value = resolved(kept, pointer)
        if isinstance(value, str):
            assert value.endswith(ACTIVITY_CUT_MARK)
            assert len(value) == LIMIT
    fits = json_bytes(details) <= ACTIVITY_DETAILS_MAX_BYTES - 20
    if fits and all(len(text) <= LIMIT for text in texts_in(details)):
        assert (kept, cut) == (details, [])


async def test_record_activity_bounds_what_any_module_writes(alice, make_study, client, alice_headers):
    study = await make_study(owner=alice)
    async with SessionFactory() as session:
        study_activity.record_activity(
            session,
            study_id=study.id,
            actor=alice,
            action=ActivityAction.SAMPLE_FILE_REJECTED,
            details={"sample_file_id": "0e1d2c3b", "filename": "f" * 100_000 + ".csv", "errors_total": 3},
        )
        await session.commit()

    response = await client.get(study_url(study, "activity"), params={"page_size": 1}, headers=alice_headers)

    (entry,) = response.json()["items"]
    assert entry["details"] == {
        "sample_file_id": "0e1d2c3b",
        "filename": "f" * (LIMIT - 1) + ACTIVITY_CUT_MARK,
        "errors_total": 3,
        "truncated": ["/filename"],
    }
    assert entry["file"] is None  # "0e1d2c3b" is no file's id: the entry names none, and is still written
