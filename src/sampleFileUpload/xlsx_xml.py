"""A workbook part's XML fed to expat a chunk at a time, within bounds: how xlsx_parts.py and
xlsx_reading.py read their parts.

Expat keeps an unfinished text, tag or comment in memory whole, and every element still open: a part
is fed to it in chunks, and no tag, text or nesting may grow past a bound. A DOCTYPE is refused (no
workbook has one; entity tricks start there), and a part that does not decompress or does not parse
makes the workbook damaged. The names of the elements and attributes read in the parts are here too,
as expat reports them (namespace and name).
"""

import zipfile
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any
from xml.parsers import expat

from openpyxl.xml.constants import CONTYPES_NS, PKG_REL_NS, REL_NS, SHEET_MAIN_NS

from src.sampleFileUpload.reading_errors import SheetError, check_deadline

# The XML is fed to expat in chunks. Between two tags there may be at most this much of it (a text,
# an attribute, a comment): expat keeps an unfinished one in memory whole.
XML_CHUNK_BYTES = 64 * 1024
MAX_XML_TOKEN_BYTES = 1024**2
# Spreadsheet XML nests 7 deep (worksheet, sheetData, row, c, is, r, t); expat keeps every open one.
MAX_XML_DEPTH = 64
# Elements within one row, or one shared string (a rich text has a dozen per run of formatting).
MAX_ELEMENTS_PER_RECORD = 20_000

_SEPARATOR = "}"  # expat reports a namespaced name as "<namespace>}<name>"
_MAIN = SHEET_MAIN_NS + _SEPARATOR
SHEET_DATA, ROW, CELL, VALUE, INLINE_STRING = (_MAIN + name for name in ("sheetData", "row", "c", "v", "is"))
TEXT, RUN, STRING_ENTRY = _MAIN + "t", _MAIN + "r", _MAIN + "si"
DIMENSION = _MAIN + "dimension"
CELL_FORMATS, CELL_FORMAT, NUMBER_FORMATS, NUMBER_FORMAT = (
    _MAIN + name for name in ("cellXfs", "xf", "numFmts", "numFmt")
)
WORKBOOK_PROPERTIES, SHEET = _MAIN + "workbookPr", _MAIN + "sheet"
RELATIONSHIP_ID = REL_NS + _SEPARATOR + "id"
RELATIONSHIP = PKG_REL_NS + _SEPARATOR + "Relationship"
CONTENT_DEFAULT = CONTYPES_NS + _SEPARATOR + "Default"
CONTENT_OVERRIDE = CONTYPES_NS + _SEPARATOR + "Override"


def damaged(after_row: int = 0) -> SheetError:
    where = f" after row {after_row:,}" if after_row else ""
    return SheetError("unreadable", f"The Excel workbook is damaged{where} and cannot be read.")


# ---------------------------------------------------------------------------------------------
# Feeding a part's XML to expat


class Done(Exception):
    """Raised by a handler that has read all it needs of its part."""


class Handler:
    """Receives one part's elements from expat. The sheet and shared strings handlers, which see
    millions of elements, keep `tags` and `depth` in their own start and end; the small parts'
    handlers get that here and implement `element`."""

    def __init__(self) -> None:
        # Elements started so far: how fed sees that the XML moves on (between two starts there are
        # at most MAX_XML_DEPTH ends, and the text and tags fed bounds).
        self.tags = 0
        self.depth = 0

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.tags += 1
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise too_deep()
        self.element(self.depth, name, attributes)

    def end(self, _name: str) -> None:
        self.depth -= 1

    def text(self, data: str) -> None:
        pass

    def prepare(self, parser: Any) -> None:
        """Sets any further handlers on the part's parser before it reads anything."""

    def feed(self, parser: Any, chunk: bytes, final: bool) -> None:
        parser.Parse(chunk, final)

    def element(self, depth: int, name: str, attributes: dict[str, str]) -> None:
        raise NotImplementedError

    def damaged(self) -> SheetError:
        return damaged()


def fed(archive: zipfile.ZipFile, part: str, handler: Handler, deadline: float | None) -> Iterator[None]:
    """Feeds a part to expat a chunk at a time, yielding after each one (the handler then holds what
    the chunk had). A failure inside a chunk is raised after that chunk's yield, so that what came
    before it is taken first. A DOCTYPE is refused (no workbook has one; entity tricks start there)."""
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
    parser.buffer_text = True
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.text
    parser.StartDoctypeDeclHandler = _refuse_doctype
    handler.prepare(parser)
    without_tags = 0
    for chunk in chain(member_chunks(archive, part, XML_CHUNK_BYTES, handler.damaged), (b"",)):
        check_deadline(deadline)
        tags = handler.tags
        failure: SheetError | None = None
        try:
            handler.feed(parser, chunk, not chunk)
        except Done:
            yield
            return
        except SheetError as error:
            failure = error
        except Exception:  # expat's errors, and a value expat passed that does not convert
            failure = handler.damaged()
        without_tags = without_tags + len(chunk) if handler.tags == tags else 0
        if failure is None and without_tags > MAX_XML_TOKEN_BYTES:
            failure = SheetError(
                "unreadable",
                f"The workbook's XML has more than {MAX_XML_TOKEN_BYTES / 1024**2:g} MB in one text, tag "
                "or comment: it is damaged or was not written by a spreadsheet program.",
            )
        yield
        if failure is not None:
            raise failure


def member_chunks(
    archive: zipfile.ZipFile, part: str, size: int, damaged: Callable[[], SheetError]
) -> Iterator[bytes]:
    """A member's bytes, decompressed a chunk at a time. One that does not decompress (corrupt data,
    a wrong CRC, an encrypted member, a method zipfile lacks) makes the workbook damaged."""
    try:
        with archive.open(part) as stream:
            while chunk := stream.read(size):
                yield chunk
    except Exception:  # zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError...
        raise damaged() from None


def _refuse_doctype(*_args: object) -> None:
    raise SheetError(
        "unreadable", "The workbook's XML declares a DOCTYPE, which no spreadsheet program writes."
    )


def too_deep() -> SheetError:
    return SheetError("unreadable", f"The workbook's XML nests deeper than {MAX_XML_DEPTH} elements.")
