"""Pure helpers of the study module."""

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from src.study.constants import (
    ACTIVITY_CUT_MARK,
    ACTIVITY_DETAILS_MAX_BYTES,
    ACTIVITY_TEXT_MAX_LENGTH,
    ACTIVITY_TRUNCATED_KEY,
    FIELD_FILLED,
    FieldType,
)


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


def choice_field_names(fields: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names of a study's `choice` fields, of its sample_fields."""
    return frozenset(field["name"] for field in fields if field["type"] == FieldType.CHOICE)


def field_value_deltas(
    fields: Iterable[Mapping[str, Any]], changes: Iterable[ValuesChange]
) -> Counter[tuple[str, str]]:
    """How samples' values going from old to new (None: no sample) move the per-field counters:
    (field, FIELD_FILLED) for a value present (not null), (field, choice) for a choice field's value.

    Counted a field at a time over all the rows (a list of its values, C-level counting), not a
    row at a time: an import batch of 10,000 rows took 59 ms the row-wise way on the shared machine.
    """
    choice_fields = choice_field_names(fields)
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


# What an activity entry keeps of its details.
#
# Each text longer than ACTIVITY_TEXT_MAX_LENGTH keeps its beginning and ends in ACTIVITY_CUT_MARK,
# and the whole stays within ACTIVITY_DETAILS_MAX_BYTES of JSON (UTF-8, as answered). Details that
# fit are kept whole. Otherwise an object keeps whole the members that fit in an equal share of its
# room (smallest first), then its larger objects and lists share what is left equally and its
# larger texts and numbers take what they need while it fits; a list keeps its first items. The
# JSON Pointer (RFC 6901) of every text cut and of every object or list that lost a member or an
# item is listed under `truncated`, which counts towards the bytes too: a value that was cut and
# one that merely looks so are told apart by it.


# A part as it fits in its room: its value, the bytes it takes, the pointers of what was cut in it.
_Fitted = tuple[Any, int, list[str]]
# Compact, as the API answers; `default` only sizes what the JSON column would refuse anyway.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def bounded_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The details as an activity entry keeps them: each text at most ACTIVITY_TEXT_MAX_LENGTH
    characters and the whole at most ACTIVITY_DETAILS_MAX_BYTES of JSON, with what was cut listed
    under `truncated`."""
    if ACTIVITY_TRUNCATED_KEY in details:
        raise ValueError(f"{ACTIVITY_TRUNCATED_KEY!r} is the key that lists what was cut")
    cut: list[str] = []
    whole = _with_texts_cut(details, "", cut)
    # `,"truncated":[]` around the pointers, should anything be cut.
    room = ACTIVITY_DETAILS_MAX_BYTES - _json_size(ACTIVITY_TRUNCATED_KEY) - 4
    value, _size, cut = _fitted(_Part("", whole, cut), room) or ({}, 0, [""])
    if cut:
        value[ACTIVITY_TRUNCATED_KEY] = cut
    return value


def _json_size(value: Any) -> int:
    # Lone surrogates (which no stored value has) are counted as the 3 bytes they would take.
    return len(_ENCODER.encode(value).encode("utf-8", "surrogatepass"))


def _pointer_size(pointer: str) -> int:
    """What naming a place in `truncated` costs: its JSON text and a comma."""
    return _json_size(pointer) + 1


def _name_size(name: str) -> int:
    """What a member's name costs in its object: its JSON text, the colon and a comma."""
    return _json_size(name) + 2


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _with_texts_cut(value: Any, pointer: str, cut: list[str]) -> Any:
    """The value (objects and lists copied) with each longer text cut; the pointer of each is added to
    `cut`, in document order."""
    if isinstance(value, str):
        if len(value) <= ACTIVITY_TEXT_MAX_LENGTH:
            return value
        cut.append(pointer)
        return value[: ACTIVITY_TEXT_MAX_LENGTH - len(ACTIVITY_CUT_MARK)] + ACTIVITY_CUT_MARK
    if isinstance(value, Mapping):
        return {
            str(name): _with_texts_cut(member, f"{pointer}/{_pointer_token(str(name))}", cut)
            for name, member in value.items()
        }
    if isinstance(value, list | tuple):
        return [_with_texts_cut(item, f"{pointer}/{index}", cut) for index, item in enumerate(value)]
    return value


class _Part:
    """A value whose texts are cut, where it is, and the pointers of those texts. Its size (JSON bytes
    with those pointers) and its members or items are worked out only when the fitting asks: details
    that fit are measured once, as a whole."""

    __slots__ = ("_size", "cut", "pointer", "value")

    def __init__(self, pointer: str, value: Any, cut: list[str]) -> None:
        self.pointer = pointer
        self.value = value
        self.cut = cut
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = _json_size(self.value) + sum(map(_pointer_size, self.cut))
        return self._size

    def parts(self, names: Iterable[str]) -> list["_Part"]:
        """Its members or items (by their names or indices as text), each with the pointers under it."""
        under: dict[str, list[str]] = {}
        start = len(self.pointer) + 1
        for pointer in self.cut:
            under.setdefault(pointer[start:].split("/", 1)[0], []).append(pointer)
        children = self.value.values() if isinstance(self.value, dict) else self.value
        return [
            _Part(f"{self.pointer}/{token}", child, under.get(token, []))
            for token, child in zip(map(_pointer_token, names), children, strict=True)
        ]


def _fitted(part: _Part, room: int) -> _Fitted | None:
    """The part within `room` bytes, or None when not even its smallest form fits."""
    if part.size <= room:
        return part.value, part.size, list(part.cut)
    if isinstance(part.value, dict):
        return _fitted_object(part, room)
    if isinstance(part.value, list):
        return _fitted_list(part, room)
    return None


def _fitted_object(part: _Part, room: int) -> _Fitted | None:
    # Its braces, and its own pointer in reserve should a member not fit.
    reserve = _pointer_size(part.pointer)
    left = room - 2 - reserve
    if left < 0:
        return None
    names = list(part.value)
    members = dict(zip(names, part.parts(names), strict=True))
    kept: dict[str, _Fitted] = {}
    by_size = sorted(names, key=lambda name: _name_size(name) + members[name].size)
    larger: set[str] = set()
    for index, name in enumerate(by_size):
        need = _name_size(name) + members[name].size
        if larger or need > left // (len(by_size) - index):
            larger.add(name)
            continue
        kept[name] = _fitted(members[name], members[name].size)
        left -= need
    in_order = [name for name in names if name in larger]
    for index, name in enumerate(in_order):
        member = members[name]
        share = left // (len(in_order) - index) if isinstance(member.value, dict | list) else left
        fitted = _fitted(member, share - _name_size(name))
        if fitted is not None:
            kept[name] = fitted
            left -= _name_size(name) + fitted[1]
    value = {name: kept[name][0] for name in names if name in kept}
    cut = [pointer for name in names if name in kept for pointer in kept[name][2]]
    if len(kept) == len(names):
        return value, room - left - reserve, cut
    return value, room - left, [*cut, part.pointer]


def _fitted_list(part: _Part, room: int) -> _Fitted | None:
    reserve = _pointer_size(part.pointer)
    left = room - 2 - reserve
    if left < 0:
        return None
    values: list[Any] = []
    cut: list[str] = []
    for item in part.parts(map(str, range(len(part.value)))):
        fitted = _fitted(item, left - 1)
        if fitted is None:
            # Only its first items: one left out in the middle would move the ones after it.
            return values, room - left, [*cut, part.pointer]
        values.append(fitted[0])
        cut += fitted[2]
        left -= fitted[1] + 1
    return values, room - left - reserve, cut
