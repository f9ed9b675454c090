"""The structural limits every JSON request body is held to before a route's schema sees it.

Pydantic's cost grows with what a body holds, not with its size in bytes: 120,000 unknown keys in
960 KB made 120,000 errors and a second of blocked event loop. Building arrays and objects is
what costs most in json.loads (400,000 nested `[]` take a third of a second), then reading
many values (160,000 floats: 60 ms), so both counts are bounded before parsing, by counting
bytes; the walk after parsing looks at containers only.
"""

import json
import re
from typing import Any

from src.constants import (
    MAX_JSON_ARRAY_ITEMS,
    MAX_JSON_CONTAINERS,
    MAX_JSON_DEPTH,
    MAX_JSON_OBJECT_KEYS,
    MAX_JSON_VALUES,
)
from src.exceptions import BodyTooComplex, MalformedBody

_CONTAINERS = (dict, list)
# Possessive, and an unterminated string runs to the end: one linear pass, never backtracking.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TOO_DEEP = f"JSON may be nested at most {MAX_JSON_DEPTH} levels deep."


def _refuse_constant(name: str) -> None:
    raise MalformedBody(f"{name} is not JSON.")


def _check_container_size(container: dict[str, Any] | list[Any]) -> None:
    if isinstance(container, dict) and len(container) > MAX_JSON_OBJECT_KEYS:
        raise BodyTooComplex(f"A JSON object may have at most {MAX_JSON_OBJECT_KEYS} keys.")
    if isinstance(container, list) and len(container) > MAX_JSON_ARRAY_ITEMS:
        raise BodyTooComplex(f"A JSON array may have at most {MAX_JSON_ARRAY_ITEMS} items.")


def _check_shape(document: Any) -> None:
    """Depth, keys and items, one level at a time; a container's size is checked before its
    members are looked at, so a huge array costs one len() and the walk stays bounded."""
    level = [document] if isinstance(document, _CONTAINERS) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return
        below: list[Any] = []
        for container in level:
            _check_container_size(container)
            members = container.values() if isinstance(container, dict) else container
            below.extend(member for member in members if type(member) in _CONTAINERS)
        level = below
    if level:
        raise BodyTooComplex(_TOO_DEEP)


def _outside_strings(body: bytes) -> bytes:
    """The body with every string's content removed, so brackets and commas in text don't count."""
    return _JSON_STRING.sub(b'""', body)


def _check_counts(body: bytes) -> None:
    """Containers and values, counted on the raw bytes first (free); only a body over a limit pays
    for the exact count outside strings, so a text value full of commas or brackets passes."""
    containers, values = body.count(b"[") + body.count(b"{"), body.count(b",")
    if containers > MAX_JSON_CONTAINERS or values >= MAX_JSON_VALUES:
        if body.count(b'"') > 2 * MAX_JSON_VALUES:
            # More strings than values are allowed (each is a value or a key): no closer look needed,
            # and the closer look's cost grows with the number of strings.
            raise BodyTooComplex(f"A JSON body may hold at most {MAX_JSON_VALUES} values.")
        structure = _outside_strings(body)
        containers, values = structure.count(b"[") + structure.count(b"{"), structure.count(b",")
    if containers > MAX_JSON_CONTAINERS:
        raise BodyTooComplex(f"A JSON body may hold at most {MAX_JSON_CONTAINERS} arrays and objects.")
    if values >= MAX_JSON_VALUES:
        raise BodyTooComplex(f"A JSON body may hold at most {MAX_JSON_VALUES} values.")


def _check_unicode(body: bytes, document: Any) -> None:
    """A lone surrogate (`"\\ud800"`) is valid JSON but not text any database can store."""
    if _SURROGATE_ESCAPE.search(body) is None:
        return
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise MalformedBody("The body has text that is not valid Unicode (a lone surrogate).") from exc


def check_json_body(body: bytes) -> None:
    """Raise BodyTooComplex or MalformedBody for a body past a limit; let anything else through.

    A body json.loads cannot read is left to the route, which answers it as it always has
    (422 `json_invalid`, or 400 for bytes that are not text).
    """
    _check_counts(body)
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError as exc:
        # json.loads stops at the interpreter's recursion limit (about 1,000 levels) in microseconds.
        raise BodyTooComplex(_TOO_DEEP) from exc
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    except ValueError as exc:
        # Python refuses integers of more than sys.get_int_max_str_digits() (4,300) digits, whose
        # conversion would be quadratic.
        raise BodyTooComplex("A JSON number has too many digits.") from exc
    _check_shape(document)
    _check_unicode(body, document)
