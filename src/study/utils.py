"""Pure helpers of the study module."""

from collections.abc import Iterable
from typing import Any


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
