"""What stops the reading of a sample file: a file we do not read (SheetError), or its deadline.

Both readers (readers.py for text and the format; xlsx_reading.py, xlsx_parts.py and xlsx_xml.py for
workbooks) raise these; the service turns a SheetError into a 415 or 422 that carries its code, and
decides what a deadline means.
"""

from time import monotonic
from typing import ClassVar


class SheetError(ValueError):
    """Why a file cannot be read as a sheet, in one sentence a researcher can act on."""

    # code → True when the answer is 415 (a kind of file we do not take), False for 422. The codes
    # are sent to the client (`errors[].code` of the problem), so they are stable.
    UNSUPPORTED: ClassVar[dict[str, bool]] = {
        "unsupported_format": True,
        "not_a_spreadsheet": True,
        "encrypted": True,
        "macros": True,
        "zip_bomb": False,
        "too_many_rows": False,
        "too_many_columns": False,
        "row_too_large": False,
        "header_too_long": False,
        "strings_table_too_large": False,
        "invalid_encoding": False,
        "unreadable": False,
        "empty": False,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.unsupported = self.UNSUPPORTED[code]


class TimeLimitReached(Exception):
    """The deadline given to open_sheet passed while the file was being read.

    Not a SheetError: the file may be fine, only too slow to read within the time an import has.
    """

    def __init__(self) -> None:
        super().__init__("The file took too long to read.")


def check_deadline(deadline: float | None) -> None:
    """Raises TimeLimitReached once `deadline` (a time.monotonic() instant) has passed."""
    if deadline is not None and monotonic() > deadline:
        raise TimeLimitReached()
