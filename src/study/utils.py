"""Pure helpers of the study module."""

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from src.study.constants import FIELD_FILLED, FieldType


def duplicates(items: Iterable[str]) -> list[str]:
    """Each item that occurs more than once, once, in order of its second occurrence."""
    seen: set[str] = set()
    repeated: list[str] = []
    for item in items:
        if item in seen and item not in repeated:
            repeated.append(item)
        seen.add(item)
    return repeated


def without_nul(text: str) -> str:
    # PostgreSQL cannot store NUL in text; multi-line text is fine otherwise.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def normalize_code(code: str) -> str:
    """The form a study code is unique under: `onc-2026-01` and `ONC-2026-01` are the same study."""
    return code.strip().upper()


def changed_values(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only what differs between two value maps, as (before, after); a key missing on one side is None."""
    keys = [key for key in {**old, **new} if old.get(key) != new.get(key)]
    return {key: old.get(key) for key in keys}, {key: new.get(key) for key in keys}


ValuesChange = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


def field_value_deltas(
    fields: Iterable[Mapping[str, Any]], changes: Iterable[ValuesChange]
) -> Counter[tuple[str, str]]:
    """How samples' values going from old to new (None: no sample) move the per-field counters:
    (field, FIELD_FILLED) for a value present (not null), (field, choice) for a choice field's value.

    Counted a field at a time over all the rows (a list of its values, C-level counting), not a
    row at a time: an import batch of 10,000 rows took 59 ms the row-wise way on the shared machine.
    """
    choice_fields = {field["name"] for field in fields if field["type"] == FieldType.CHOICE}
    pairs = list(changes)
    deltas: Counter[tuple[str, str]] = Counter()
    for rows, sign in (([old for old, _ in pairs if old], -1), ([new for _, new in pairs if new], 1)):
        for name in set().union(*rows):
            column = [values.get(name) for values in rows]
            deltas[name, FIELD_FILLED] += sign * (len(column) - column.count(None))
            if name in choice_fields:
                for choice, count in Counter(column).items():
                    if choice is not None:
                        deltas[name, str(choice)] += sign * count
    return deltas
