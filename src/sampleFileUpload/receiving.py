"""Receiving an upload: the multipart body streamed to a file, hashed and counted as it arrives,
refused past the limit as it comes. Nothing here touches the database."""

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import anyio
from pydantic import TypeAdapter, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from src.exceptions import ValidationFailed
from src.sampleFileUpload.cell_dialect import ReadingOptions, na_values_of
from src.sampleFileUpload.constants import (
    DEFAULT_NA_VALUES,
    MAX_FORM_FIELD_BYTES,
    MULTIPART_OVERHEAD_BYTES,
    UPLOAD_FIELD_DATE_ORDER,
    UPLOAD_FIELD_DECIMAL_MARK,
    UPLOAD_FIELD_DRY_RUN,
    UPLOAD_FIELD_FILE,
    UPLOAD_FIELD_MODE,
    UPLOAD_FIELD_NA_VALUES,
    DateOrder,
    DecimalMark,
    ImportMode,
)
from src.sampleFileUpload.exceptions import MalformedUpload, UploadTooLarge
from src.sampleFileUpload.utils import clean_filename
from src.schemas import has_control_characters

_BOOLEAN = TypeAdapter(bool)
_Choice = TypeVar("_Choice", DateOrder, DecimalMark)
# The small parts of the form besides `file`, each sent at most once.
UPLOAD_FIELDS = (
    UPLOAD_FIELD_MODE,
    UPLOAD_FIELD_DRY_RUN,
    UPLOAD_FIELD_DATE_ORDER,
    UPLOAD_FIELD_DECIMAL_MARK,
    UPLOAD_FIELD_NA_VALUES,
)


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    filename: str
    size_bytes: int
    sha256: str
    mode: ImportMode
    dry_run: bool
    options: ReadingOptions = field(default_factory=ReadingOptions)


class _MultipartReceiver:
    """python-multipart callbacks: the `file` part's bytes collected per chunk, small fields kept."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.file_parts = 0
        self.file_bytes = 0
        self.pending: list[bytes] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._current: str | None = None  # "file", a field name, or None until a part's headers are read

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def take_pending(self) -> list[bytes]:
        pending, self.pending = self.pending, []
        return pending

    def _part_begin(self) -> None:
        self._disposition = b""
        self._current = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 4096:
            raise MalformedUpload

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == UPLOAD_FIELD_FILE:
            self.file_parts += 1
            if self.file_parts > 1:
                raise MalformedUpload("Send exactly one `file` part.")
            filename = options.get(b"filename", b"")
            if b"\x00" in filename:  # no file system has such a name: refused, not cleaned
                raise MalformedUpload("The file name must not contain a NUL character.")
            self.filename = filename.decode("utf-8", "replace")
            self._current = UPLOAD_FIELD_FILE
        elif name in UPLOAD_FIELDS:
            if name in self.fields:  # `dry_run` true then false: which one the client meant is unknown
                raise MalformedUpload(f"Send `{name}` at most once.")
            self._current = name
            self.fields[name] = bytearray()
        else:
            # A misspelt `dry_run` must not import the file for real.
            known = ", ".join(f"`{part}`" for part in (UPLOAD_FIELD_FILE, *UPLOAD_FIELDS))
            raise MalformedUpload(f"Unknown part `{name[:40]}`: send only {known}.")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == UPLOAD_FIELD_FILE:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file_bytes:
                raise UploadTooLarge
            self.pending.append(data[start:end])
        elif self._current is not None:
            value = self.fields[self._current]
            value += data[start:end]
            if len(value) > MAX_FORM_FIELD_BYTES:
                raise MalformedUpload(f"`{self._current}` is too long.")


def _boundary_of(content_type: str | None) -> bytes:
    media_type, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise MalformedUpload
    return boundary


def _append(sink: BinaryIO, hasher: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        hasher.update(piece)
        sink.write(piece)


async def receive_upload(
    stream: AsyncIterator[bytes], *, content_type: str | None, into: Path, max_bytes: int
) -> ReceivedUpload:
    """The multipart body streamed into `into`; UploadTooLarge as soon as the file passes max_bytes."""
    receiver = _MultipartReceiver(max_bytes)
    parser = MultipartParser(_boundary_of(content_type), receiver.callbacks())
    hasher = hashlib.sha256()
    body_bytes = 0
    with into.open("wb") as sink:
        try:
            async for chunk in stream:
                body_bytes += len(chunk)
                if body_bytes > max_bytes + MULTIPART_OVERHEAD_BYTES:
                    raise UploadTooLarge
                parser.write(chunk)
                pending = receiver.take_pending()
                if pending:
                    await anyio.to_thread.run_sync(_append, sink, hasher, pending)
            parser.finalize()
        except FormParserError:
            raise MalformedUpload from None
    if receiver.file_parts != 1:
        raise ValidationFailed(errors=[{"loc": ["body", "file"], "msg": "Field required", "code": "missing"}])
    return ReceivedUpload(
        filename=clean_filename(receiver.filename),
        size_bytes=receiver.file_bytes,
        sha256=hasher.hexdigest(),
        mode=_mode_of(receiver.fields.get(UPLOAD_FIELD_MODE)),
        dry_run=_dry_run_of(receiver.fields.get(UPLOAD_FIELD_DRY_RUN)),
        options=_reading_options_of(receiver.fields),
    )


def _mode_of(raw: bytearray | None) -> ImportMode:
    text = raw.decode("utf-8", "replace").strip() if raw is not None else ImportMode.INSERT
    try:
        return ImportMode(text)
    except ValueError:
        raise ValidationFailed(
            errors=[{"loc": ["body", "mode"], "msg": "must be insert or upsert", "code": "enum"}]
        ) from None


def _dry_run_of(raw: bytearray | None) -> bool:
    if raw is None:
        return False
    try:
        return _BOOLEAN.validate_python(raw.decode("utf-8", "replace").strip())
    except ValidationError:
        raise ValidationFailed(
            errors=[{"loc": ["body", "dry_run"], "msg": "must be true or false", "code": "bool_parsing"}]
        ) from None


def _reading_options_of(fields: dict[str, bytearray]) -> ReadingOptions:
    """The upload's `date_order`, `decimal_mark` and `na_values`. An empty `date_order` or
    `decimal_mark` is the same as none (what a form's "automatic" choice sends); an empty
    `na_values` turns the markers off."""
    date_order = _choice_of(fields.get(UPLOAD_FIELD_DATE_ORDER), UPLOAD_FIELD_DATE_ORDER, DateOrder)
    decimal_mark = _choice_of(fields.get(UPLOAD_FIELD_DECIMAL_MARK), UPLOAD_FIELD_DECIMAL_MARK, DecimalMark)
    na_values = _na_values_of(fields.get(UPLOAD_FIELD_NA_VALUES))
    return ReadingOptions(date_order=date_order, decimal_mark=decimal_mark, na_values=na_values)


def _choice_of(raw: bytearray | None, name: str, choices: type[_Choice]) -> _Choice | None:
    text = _text_of(raw, name)
    if not text:
        return None
    try:
        return choices(text)
    except ValueError:
        allowed = " or ".join(f"`{choice}`" for choice in choices)
        raise _invalid(name, f"must be {allowed}, or empty (decided from the file)", "enum") from None


def _na_values_of(raw: bytearray | None) -> frozenset[str]:
    if raw is None:
        return frozenset(DEFAULT_NA_VALUES)
    text = _text_of(raw, UPLOAD_FIELD_NA_VALUES)
    if has_control_characters(text):
        message = "must be one line of comma-separated markers, without control characters"
        raise _invalid(UPLOAD_FIELD_NA_VALUES, message, "value_error")
    return na_values_of(text.split(","))


def _text_of(raw: bytearray | None, name: str) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _invalid(name, "must be UTF-8 text", "unicode_error") from None


def _invalid(name: str, message: str, code: str) -> ValidationFailed:
    return ValidationFailed(errors=[{"loc": ["body", name], "msg": message, "code": code}])
