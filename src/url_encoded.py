"""Query strings and form bodies (application/x-www-form-urlencoded) hold percent-encoded UTF-8.

Starlette decodes them with errors="replace", so `%FF` or a lone surrogate (`%ED%A0%80`) would reach a
route as U+FFFD and be searched for, or tried as an email at sign-in; they are refused instead.
"""

from urllib.parse import unquote_to_bytes


def _decoded(encoded: bytes) -> str:
    return unquote_to_bytes(encoded.replace(b"+", b" ")).decode("utf-8")


def undecodable_names(encoded: bytes) -> list[str]:
    """The names of the pairs whose name or value is not UTF-8 once percent-decoded (in order)."""
    names = []
    for pair in encoded.split(b"&"):
        name, _, value = pair.partition(b"=")
        try:
            _decoded(name)
            _decoded(value)
        except UnicodeDecodeError:
            names.append(unquote_to_bytes(name).decode("utf-8", "replace"))
    return names
