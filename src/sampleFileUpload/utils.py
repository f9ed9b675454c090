"""Pure helpers of the sample-file module: file names as stored and as served, and what an upload's
`Prefer` header asks."""

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import quote

FILENAME_MAX_LENGTH = 255
_EXTENSION_MAX_LENGTH = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._ ()+,=@\[\]-]")


def clean_filename(sent: str | None, *, default: str = "upload") -> str:
    """The client's file name for display: its last path part, without control characters, ≤ 255.

    Never used as a path (stored files have server-generated keys); cleaned so that it reads
    safely in a listing, a log and a Content-Disposition header.
    """
    name = unicodedata.normalize("NFC", sent or "")
    name = _CONTROL.sub("", name)
    name = re.split(r"[/\\]", name)[-1].strip().lstrip(".").strip()
    return _shortened(name) or default


def _shortened(name: str) -> str:
    """At most FILENAME_MAX_LENGTH characters, cut in the stem: the extension is what the reader
    checks the content against, and a name cut inside it would claim an unknown type."""
    if len(name) <= FILENAME_MAX_LENGTH:
        return name
    suffix = PurePosixPath(name).suffix
    if not suffix or len(suffix) > _EXTENSION_MAX_LENGTH:
        return name[:FILENAME_MAX_LENGTH]
    return name[: FILENAME_MAX_LENGTH - len(suffix)] + suffix


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name percent-encoded (RFC 6266)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = _UNSAFE_ASCII.sub("_", ascii_name).strip() or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def prefers_respond_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240: comma-separated preferences, each `name[=value]` with
    `;` parameters, names case-insensitive) asks for `respond-async`."""
    for preference in (prefer or "").split(","):
        name = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if name == "respond-async":
            return True
    return False
