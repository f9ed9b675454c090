"""Cells as spreadsheets write them (issue 18): the dates, numbers, booleans, choices and missing
values that Excel and LibreOffice save in most locales, read into the values the study's validator
takes (src/study/sample_validation.py). The validator, and so the JSON API, stay as they are: these
rules are for files only.

One reader per column, made once per file from the field's type and the file's dialect: its one
decimal mark, the upload's `date_order` and its missing-value markers (`na_values`). A batch's column
is read at once where it can be (ColumnReader), else cell by cell; a cell's reader sees text only,
trimmed, not empty and not a marker: an XLSX number, date or boolean cell is typed already and goes
to the validator as it is. Nothing is guessed: what a reader cannot read for certain it refuses,
with a message that says how to write it or which form field decides.

- Dates: `YYYY-MM-DD` always; `D.M.YYYY` is day-first; a four-digit first part (`2025/03/14`,
  `2025.03.14`) is year-first. A slash date `D/M/YYYY` or `M/D/YYYY` is read in its column's order:
  the upload's `date_order` when given, else the order the first value of the column that fits only
  one order settles (`14/03/2025`: day-first). A value that fits both orders (`03/04/2025`) in a column
  not settled yet makes the reader look ahead in the file (DateOrders); a column no value settles is
  one `ambiguous_date` error of the column. Two-digit years are refused. Datetimes are any of these,
  then `H:MM[:SS]` and an optional AM/PM.
- Numbers: the file's decimal mark; the other mark, a space, U+00A0 or U+202F between groups of
  three digits; an exponent (`1,5E-03`) without groups. What reads only with the other mark names
  the form field `decimal_mark`.
- Booleans: the spellings of constants.BOOLEAN_TRUE_SPELLINGS and _FALSE_SPELLINGS, in any case.
- Choices: trimmed, NFC, case-folded, stored in the spelling the study defines.
"""

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from src.sampleFileUpload.constants import (
    BOOLEAN_FALSE_SPELLINGS,
    BOOLEAN_TRUE_SPELLINGS,
    DEFAULT_NA_VALUES,
    DateOrder,
    DecimalMark,
    ReportCode,
)
from src.study.constants import FieldType
from src.study.sample_schema import SampleField
from src.study.sample_validation import MAX_NUMERIC_TEXT_LENGTH

# A reader: the text of a cell (trimmed, not empty) → the value the validator takes; CellRefused if none.
CellReader = Callable[[str], object]
# The rows of the file again, from its first data row: for the look-ahead of DateOrders.
RowsAgain = Callable[[], AbstractContextManager[Iterator[tuple[int, list[object]]]]]


@dataclass(frozen=True, slots=True)
class ReadingOptions:
    """How the upload asks its cells to be read (its form fields); None: decided from the file."""

    date_order: DateOrder | None = None
    decimal_mark: DecimalMark | None = None
    na_values: frozenset[str] = frozenset(DEFAULT_NA_VALUES)

    def as_json(self) -> dict[str, Any]:
        """As a sample file's record keeps them for its import job."""
        return {
            "date_order": self.date_order,
            "decimal_mark": self.decimal_mark,
            "na_values": sorted(self.na_values),
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> "ReadingOptions":
        """The options a record kept (None, a record made before jobs: the defaults)."""
        if stored is None:
            return cls()
        date_order, decimal_mark = stored.get("date_order"), stored.get("decimal_mark")
        return cls(
            date_order=DateOrder(date_order) if date_order else None,
            decimal_mark=DecimalMark(decimal_mark) if decimal_mark else None,
            na_values=frozenset(stored.get("na_values", DEFAULT_NA_VALUES)),
        )


class CellRefused(Exception):
    """A cell the reader cannot read: its error's code and message; code None when the cell has no
    error of its own (its column's error says it all, as `ambiguous_date` does)."""

    def __init__(self, code: str | None, message: str = "") -> None:
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ColumnProblem:
    """An error of a whole column found while reading its cells, reported once on the header row."""

    header: str
    value: str
    code: str
    message: str


def decimal_mark_of(options: ReadingOptions, delimiter: str | None) -> tuple[DecimalMark, str]:
    """The file's one decimal mark, and why it is that one (for the messages that name it)."""
    if options.decimal_mark is not None:
        return options.decimal_mark, "the upload's decimal_mark"
    if delimiter == ";":
        return DecimalMark.COMMA, "the default for a file separated by semicolons"
    if delimiter is None:
        return DecimalMark.POINT, "the default for a workbook's text cells"
    return DecimalMark.POINT, "the default for a file not separated by semicolons"


# ---------------------------------------------------------------------------------------------
# Numbers

_GROUP_SPACES = " \u00a0\u202f"


def _number_pattern(mark: str) -> re.Pattern[str]:
    """Every number written with `mark`: digits in groups of three, or plain with an exponent."""
    other = "," if mark == "." else "."
    point = re.escape(mark)
    separators = re.escape(other) + _GROUP_SPACES
    return re.compile(
        rf"(?P<sign>[+-]?)(?:"
        # A first group of 1-3 digits not starting with 0, then groups of 3, each after the same separator.
        rf"(?P<grouped>[1-9][0-9]{{0,2}}(?P<separator>[{separators}])[0-9]{{3}}(?:(?P=separator)[0-9]{{3}})*)"
        rf"(?:{point}(?P<grouped_fraction>[0-9]+))?"
        rf"|(?P<whole>[0-9]*)(?:{point}(?P<fraction>[0-9]+))?(?:[eE](?P<exponent>[+-]?[0-9]{{1,3}}))?"
        rf")"
    )


_NUMBER_PATTERNS = {mark: _number_pattern(mark) for mark in (DecimalMark.POINT, DecimalMark.COMMA)}


def _number_parts(text: str, mark: DecimalMark) -> tuple[str, str, str | None, str | None] | None:
    """Sign, digits, fraction and exponent of a number written with `mark`; None if it is none."""
    if len(text) > MAX_NUMERIC_TEXT_LENGTH:
        return None
    parts = _NUMBER_PATTERNS[mark].fullmatch(text)
    if parts is None:
        return None
    if parts["grouped"] is not None:
        digits = parts["grouped"].replace(parts["separator"], "")
        return parts["sign"], digits, parts["grouped_fraction"], None
    if not parts["whole"] and parts["fraction"] is None:
        return None  # a sign alone, or an exponent without digits
    return parts["sign"], parts["whole"] or "0", parts["fraction"], parts["exponent"]


def _number_readers(mark: DecimalMark, why: str) -> tuple[CellReader, CellReader]:
    """The readers of number and integer cells of a file whose decimal mark is `mark`."""
    comma = mark == DecimalMark.COMMA
    other = "." if comma else ","

    def read_number(text: str) -> float:
        # The common case first, in C: no group separator, and the mark a point once replaced.
        if (
            text.isascii()
            and other not in text
            and " " not in text
            and "_" not in text
            and len(text) <= MAX_NUMERIC_TEXT_LENGTH
        ):
            try:
                return float(text.replace(",", ".") if comma else text)
            except ValueError:
                pass  # read by the pattern below, which refuses it with the reason
        parts = _number_parts(text, mark)
        if parts is None:
            raise _not_a_number(text, mark, why, integer=False)
        sign, digits, fraction, exponent = parts
        return float(f"{sign}{digits}.{fraction or 0}e{exponent or 0}")

    def read_integer(text: str) -> int | float:
        if text.isdigit() and text.isascii() and len(text) <= MAX_NUMERIC_TEXT_LENGTH:
            return int(text)
        parts = _number_parts(text, mark)
        if parts is None or parts[3] is not None:
            raise _not_a_number(text, mark, why, integer=True)
        sign, digits, fraction, _ = parts
        # A fraction is the validator's to judge: 42,0 is 42, and 42,5 is not a whole number.
        return int(sign + digits) if fraction is None else float(f"{sign}{digits}.{fraction}")

    return read_number, read_integer


def _not_a_number(text: str, mark: DecimalMark, why: str, *, integer: bool) -> CellRefused:
    code = ReportCode.NOT_AN_INTEGER if integer else ReportCode.NOT_A_NUMBER
    other = DecimalMark.POINT if mark == DecimalMark.COMMA else DecimalMark.COMMA
    if _number_parts(text, mark) is None and _number_parts(text, other) is not None:
        return CellRefused(
            code,
            f'is written with "{other}" as its decimal mark, but this file is read with "{mark}" ({why}): '
            f"send decimal_mark={other} with the upload",
        )
    grouping = "." if mark == "," else ","
    example = f"1234 or 1{grouping}234" if integer else _number_example(mark)
    kind = "a whole number" if integer else "a number"
    return CellRefused(code, f"must be {kind}, such as {example}")


def _number_example(mark: str) -> str:
    return "1234,5 or 1.234,5" if mark == "," else "1234.5 or 1,234.5"


# ---------------------------------------------------------------------------------------------
# Booleans and choices

_BOOLEANS = {
    **dict.fromkeys(BOOLEAN_TRUE_SPELLINGS, True),
    **dict.fromkeys(BOOLEAN_FALSE_SPELLINGS, False),
}
# "true/false, yes/no, ..., oui/non; also sí, si": each true spelling beside its false one, the rest after.
_BOOLEAN_SPELLINGS = ", ".join(
    f"{true}/{false}" for true, false in zip(BOOLEAN_TRUE_SPELLINGS, BOOLEAN_FALSE_SPELLINGS, strict=False)
) + "".join(
    f"; also {', '.join(rest)}" for rest in [BOOLEAN_TRUE_SPELLINGS[len(BOOLEAN_FALSE_SPELLINGS) :]] if rest
)


def _folded(text: str) -> str:
    """Case-insensitive and NFC, as the validator compares names."""
    return (text if text.isascii() else unicodedata.normalize("NFC", text)).casefold()


def read_boolean(text: str) -> bool:
    value = _BOOLEANS.get(text.lower())
    if value is None and not text.isascii():
        value = _BOOLEANS.get(_folded(text))
    if value is None:
        raise CellRefused(
            ReportCode.NOT_A_BOOLEAN, f"must be true or false, written one of: {_BOOLEAN_SPELLINGS}"
        )
    return value


def _choice_reader(choices: tuple[str, ...]) -> CellReader:
    """A choice in its defined spelling; other text as it is, for the validator to refuse."""
    exact = frozenset(choices)
    by_folded: dict[str, str | None] = {}
    for choice in choices:
        key = _folded(choice)
        # Two choices that differ only in case (`A`, `a`): neither is read from another spelling.
        by_folded[key] = None if key in by_folded else choice

    def read_choice(text: str) -> str:
        if text in exact:
            return text
        return by_folded.get(_folded(text)) or text

    return read_choice


# ---------------------------------------------------------------------------------------------
# Dates

_DATE = (
    r"(?P<first>[0-9]{1,4})(?P<separator>[./-])(?P<second>[0-9]{1,2})(?P=separator)(?P<third>[0-9]{1,4})\.?"
)
_TIME = (
    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second_of>[0-9]{2})(?:[.,](?P<micro>[0-9]{1,6}))?)?"
    r"(?:\s*(?P<half>[AaPp])\.?[Mm]\.?)?"
)
_DATE_TIME = re.compile(rf"{_DATE}(?:(?:\s+|T){_TIME})?")
_NOT_A_DATE = "must be a date, such as 2025-03-14, 14.03.2025 or 14/03/2025"
_NOT_A_DATETIME = "must be a date and time, such as 2025-03-14 10:15, 14.03.2025 10:15 or 3/14/2025 10:15 PM"
_CORRECT_IT = "correct it, or write it as YYYY-MM-DD"


@dataclass(frozen=True, slots=True)
class _Written:
    """A date as written: its parts, its separator, and the time after it, if any."""

    first: str
    second: str
    third: str
    separator: str
    time: dt.time | None


def _written(text: str, code: str = ReportCode.NOT_A_DATETIME) -> _Written | None:
    """The parts of a date (and time) as written; None when it is none of the forms; CellRefused
    (with `code`) for a time of day that does not exist."""
    parts = _DATE_TIME.fullmatch(text)
    if parts is None:
        return None
    time = _time_of(parts, code) if parts["hour"] is not None else None
    return _Written(parts["first"], parts["second"], parts["third"], parts["separator"], time)


def _time_of(parts: re.Match[str], code: str) -> dt.time:
    hour, minute = int(parts["hour"]), int(parts["minute"])
    second = int(parts["second_of"] or 0)
    micro = int((parts["micro"] or "0").ljust(6, "0"))
    half = parts["half"]
    if half is not None:
        if not 1 <= hour <= 12:
            raise CellRefused(code, "has an hour that AM or PM does not take (1 to 12)")
        hour = hour % 12 + (12 if half in "Pp" else 0)
    try:
        return dt.time(hour, minute, second, micro)
    except ValueError:
        raise CellRefused(code, "is not a time of day (hours 0-23, minutes 0-59)") from None


def _day(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


_ORDER_NAMES = {DateOrder.DMY: "day-first", DateOrder.MDY: "month-first", DateOrder.YMD: "year-first"}


@dataclass(slots=True)
class DateColumn:
    """One date or datetime column: the order of its slash dates, once known, and what decided it."""

    header: str
    index: int
    order: DateOrder | None = None
    # The value that settled the order and its row; None while unsettled, or when date_order gave it.
    settled_by: tuple[str, int] | None = None
    reported: bool = False

    def settle(self, order: DateOrder, text: str, row: int) -> None:
        self.order, self.settled_by = order, (text, row)

    def source(self, given: DateOrder | None) -> str:
        """Why the column's dates are in their order, for a message."""
        if self.settled_by is None:
            return f"as the upload's date_order={given} says"
        text, row = self.settled_by
        return f"as {text} on row {row} shows"


@dataclass(slots=True)
class DateOrders:
    """The order of the slash dates of each date column of one file.

    A value that fits one order only settles its column. A value that fits both, in a column not
    settled yet, asks for the look-ahead: the file is read again from the current row, its text cells
    of every unsettled date column looked at, until each has a value that settles it or the file
    ends. Reading stays one pass unless such a value comes before the value that settles its
    column, and a second pass at most: after it every column is settled or known to be ambiguous
    (no value settles it: not before the look-ahead's row, since it was unsettled there, nor after).
    The second pass keeps no rows, and stops at the sheet's deadline as the first one does.
    """

    given: DateOrder | None
    columns: list[DateColumn]
    rows_again: RowsAgain
    # The row being checked (set by the row checker), where a look-ahead starts and contradictions point.
    row: int = 0
    problems: list[ColumnProblem] = field(default_factory=list)
    looked_ahead: bool = False
    # The orders dates were read in (dotted dates: day-first), for the report's dialect.
    orders_read: set[DateOrder] = field(default_factory=set)

    def slash_order(
        self, column: DateColumn, text: str, day_first: bool, month_first: bool
    ) -> DateOrder | None:
        """The order of a slash date of `column`, settling the column by it when it can; None when the
        column is ambiguous (its error is then reported, once)."""
        if column.order is not None:
            return column.order
        if day_first != month_first:
            column.settle(DateOrder.DMY if day_first else DateOrder.MDY, text, self.row)
            return column.order
        if not self.looked_ahead:
            self._look_ahead()
        if column.order is None and not column.reported:
            column.reported = True
            self.problems.append(_ambiguous(column.header, text))
        return column.order

    def _look_ahead(self) -> None:
        self.looked_ahead = True
        unsettled = [column for column in self.columns if column.order is None]
        if not unsettled:
            return
        with self.rows_again() as rows:
            for number, cells in rows:
                if number < self.row:
                    continue
                for column in list(unsettled):
                    order = _order_settled_by(cells[column.index] if column.index < len(cells) else None)
                    if order is not None:
                        column.settle(order, str(cells[column.index]).strip(), number)
                        unsettled.remove(column)
                if not unsettled:
                    return


def _order_settled_by(cell: object) -> DateOrder | None:
    """DMY or MDY when the cell is a slash date that fits that order only."""
    if cell.__class__ is not str or "/" not in cell:
        return None
    try:
        written = _written(cell.strip())
    except CellRefused:
        return None
    if written is None or written.separator != "/" or len(written.third) != 4 or len(written.first) > 2:
        return None
    year, first, second = int(written.third), int(written.first), int(written.second)
    day_first = _day(year, second, first) is not None
    month_first = _day(year, first, second) is not None
    if day_first == month_first:
        return None
    return DateOrder.DMY if day_first else DateOrder.MDY


def _ambiguous(header: str, text: str) -> ColumnProblem:
    written = _written(text)
    example = ""
    if written is not None:
        first, second, year = int(written.first), int(written.second), written.third
        example = (
            f" (date_order=dmy reads {text} as {first} {calendar.month_name[second]} {year}, "
            f"date_order=mdy as {calendar.month_name[first]} {second}, {year})"
        )
    return ColumnProblem(
        header,
        text,
        ReportCode.AMBIGUOUS_DATE,
        f"every date of this column could be day-first or month-first, such as {text}: send date_order=dmy "
        f"or date_order=mdy with the upload to say which{example}, or write the dates as YYYY-MM-DD",
    )


def _date_reader(column: DateColumn, orders: DateOrders, *, with_time: bool) -> CellReader:
    """The reader of a date column (with_time False) or a datetime column."""
    code = ReportCode.NOT_A_DATETIME if with_time else ReportCode.NOT_A_DATE
    not_one = _NOT_A_DATETIME if with_time else _NOT_A_DATE

    def read_date(text: str) -> object:
        # ISO dates (and ISO datetimes with T) are the validator's own forms, checked by it.
        if len(text) >= 10 and text[4] == "-" and text[7] == "-" and (len(text) == 10 or text[10] == "T"):
            return text
        written = _written(text, code)
        if written is None:
            if len(text) > 10 and text[4] == "-" and text[7] == "-":
                return text  # an ISO form with an offset, say: the validator's to read or refuse
            raise CellRefused(code, not_one)
        day = _date_of(written, text, column, orders, code)
        if with_time:
            return dt.datetime.combine(day, written.time or dt.time())
        if written.time is not None and written.time != dt.time():
            raise CellRefused(code, "has a time of day, but this field holds dates without time")
        return day

    return read_date


def _date_of(written: _Written, text: str, column: DateColumn, orders: DateOrders, code: str) -> dt.date:
    first, second, third = written.first, written.second, written.third
    if len(third) == 2 and len(first) <= 2:
        raise CellRefused(code, f"has a two-digit year ({third}): write years with four digits")
    if written.separator == "-" and (len(first), len(second), len(third)) != (4, 2, 2):
        raise CellRefused(code, _NOT_A_DATE)
    if len(first) == 4 and len(third) <= 2:
        return _calendar_day(int(first), int(second), int(third), code)  # year first: 2025-03-14, 2025/03/14
    if len(third) != 4 or len(first) > 2:
        raise CellRefused(code, _NOT_A_DATE)
    year, a, b = int(third), int(first), int(second)
    if written.separator == ".":
        orders.orders_read.add(DateOrder.DMY)
        return _calendar_day(year, b, a, code)
    as_day_first, as_month_first = _day(year, b, a), _day(year, a, b)
    if as_day_first is None and as_month_first is None:
        raise CellRefused(code, "is not a day of the calendar, day-first or month-first")
    if as_day_first == as_month_first:
        return as_day_first  # 03/03/2025: the same day in either order
    if orders.given is DateOrder.YMD:
        raise CellRefused(code, f"is not year-first, as the upload's date_order=ymd says: {_CORRECT_IT}")
    order = orders.slash_order(column, text, as_day_first is not None, as_month_first is not None)
    if order is None:
        raise CellRefused(None)  # the column's ambiguous_date says it
    orders.orders_read.add(order)
    day = as_day_first if order is DateOrder.DMY else as_month_first
    if day is None:
        raise CellRefused(
            code,
            f"cannot be {_ORDER_NAMES[order]}, and this column's dates are {_ORDER_NAMES[order]} "
            f"{column.source(orders.given)}: {_CORRECT_IT}",
        )
    return day


def _calendar_day(year: int, month: int, day: int, code: str) -> dt.date:
    found = _day(year, month, day)
    if found is None:
        raise CellRefused(code, "is not a day of the calendar")
    return found


# ---------------------------------------------------------------------------------------------
# A column of a batch of rows, read at once

# The value of a refused cell in a column's values: the row checker leaves the field out.
REFUSED = object()
_BOOLEAN_VALUES = frozenset({True, False, ""})
# Characters that a date or datetime the validator reads as it is (ISO, with T) never has.
_NOT_IN_ISO = "./ \t"


@dataclass(slots=True)
class ColumnValues:
    """A column of a batch read: a value per cell (None or "" for no value, REFUSED for a refused
    cell), and the refusals and column problems with the position of the cell in the batch."""

    values: list[object]
    # Empty tuples unless the column is read cell by cell: no lists made for the common case.
    refusals: list[tuple[int, CellRefused]] | tuple[()] = ()
    problems: list[tuple[int, ColumnProblem]] | tuple[()] = ()


class ColumnReader:
    """Reads one column of a batch of rows into the values the validator takes.

    A batch's column is read whole when it can be, in C: its texts trimmed by map(str.strip), the
    missing-value markers looked for by one set operation, and a test over all its cells (set
    inclusion, characters absent from their joined text) that says the validator reads every one of
    them as the file's dialect would (or refuses it as the dialect would, in its own words): then
    the texts go to the validator as they are, or converted in C (a comma file's decimal commas,
    booleans by a dict). Else, and for cells of other types than text (an XLSX number or date is
    passed as it is), the column is read cell by cell by the column's reader. Measured with
    benchmarks/sample_validation_bench.py: a file in the validator's own forms is read at the speed
    it was read before cells had a dialect; the per-cell Python loop this replaces cost a quarter.
    """

    def __init__(
        self, cells: "FileCells", definition: SampleField, read: CellReader | None, *, index: int, header: str
    ) -> None:
        self.index = index
        self.name = definition.name
        self.header = header
        self._kind = definition.type
        self._read = read
        self._na_values = cells.na_values
        self._dates = cells.dates
        self._comma = cells.decimal_mark == DecimalMark.COMMA
        self._choices = frozenset(definition.choices or ())

    def read(self, column: list[object], rows: list[int]) -> ColumnValues:
        kinds = set(map(type, column))
        if str not in kinds:
            return ColumnValues(column)  # typed XLSX cells, or none at all: as they are
        if len(kinds) == 1:
            # Only a text column is trimmed here: a typed column's test fails on any untrimmed text
            # (a space, or a text that is no number, choice or boolean), which is then read cell by
            # cell, trimmed, as is a marker with spaces around it.
            texts = list(map(str.strip, column)) if self._kind is FieldType.TEXT else column
            if self._na_values.isdisjoint(texts):
                values = self._read_whole(texts)
                if values is not None:
                    return ColumnValues(values)
        return self._read_cell_by_cell(column, rows)

    def _read_whole(self, texts: list[str]) -> list[object] | None:
        """The column's values when every text is in a form the validator reads; None otherwise."""
        kind = self._kind
        if kind is FieldType.TEXT:
            return texts
        if kind is FieldType.CHOICE:
            return texts if self._choices.issuperset(filter(None, texts)) else None
        if kind is FieldType.BOOLEAN:
            # Each text's boolean, by one dict look-up in C; a text that is none (nor empty) stays.
            values = list(map(_BOOLEANS.get, map(str.lower, texts), texts))
            return values if _BOOLEAN_VALUES.issuperset(values) else None
        joined = "".join(texts)
        if kind is FieldType.INTEGER:
            # Digits only (what is not ASCII the validator refuses, as the reader does).
            return texts if not joined or joined.isdigit() else None
        if not joined.isascii():
            return None
        if kind is FieldType.NUMBER:
            # Longer than MAX_NUMERIC_TEXT_LENGTH: the validator refuses it, as the reader does.
            if " " in joined or "_" in joined:
                return None
            if not self._comma:
                return texts if "," not in joined else None
            # A comma file's decimal commas made points; a point there would be a group separator.
            return "\0".join(texts).replace(",", ".").split("\0") if "." not in joined else None
        return texts if not any(character in joined for character in _NOT_IN_ISO) else None

    def _read_cell_by_cell(self, column: list[object], rows: list[int]) -> ColumnValues:
        read, na_values, dates = self._read, self._na_values, self._dates
        result = ColumnValues([], [], [])
        values = result.values
        for position, cell in enumerate(column):
            if cell.__class__ is not str:
                values.append(cell)
                continue
            text = cell.strip()
            if not text or text in na_values:
                values.append(None)
                continue
            if read is None:
                values.append(text)
                continue
            dates.row = rows[position]
            try:
                values.append(read(text))
            except CellRefused as refusal:
                values.append(REFUSED)
                result.refusals.append((position, refusal))  # type: ignore[union-attr]
            if dates.problems:
                result.problems += [(position, problem) for problem in dates.problems]  # type: ignore[operator]
                dates.problems.clear()
        return result


class FileCells:
    """How one file's cells are read: its dialect, its columns' readers, and what reading them found
    out about the file (the order of its date columns)."""

    def __init__(
        self,
        options: ReadingOptions,
        *,
        delimiter: str | None,
        rows_again: RowsAgain,
    ) -> None:
        self.na_values = options.na_values
        self.decimal_mark, self._why_mark = decimal_mark_of(options, delimiter)
        self.delimiter = delimiter
        self._read_number, self._read_integer = _number_readers(self.decimal_mark, self._why_mark)
        self.dates = DateOrders(options.date_order, [], rows_again)

    def column_reader(self, definition: SampleField, *, index: int, header: str) -> ColumnReader:
        return ColumnReader(
            self, definition, self._reader_of(definition, index, header), index=index, header=header
        )

    def _reader_of(self, definition: SampleField, index: int, header: str) -> CellReader | None:
        """The reader of one cell of a column of `definition`; None for text, read as it is."""
        kind = definition.type
        if kind is FieldType.NUMBER:
            return self._read_number
        if kind is FieldType.INTEGER:
            return self._read_integer
        if kind is FieldType.BOOLEAN:
            return read_boolean
        if kind is FieldType.CHOICE:
            return _choice_reader(definition.choices or ())
        if kind in (FieldType.DATE, FieldType.DATETIME):
            column = DateColumn(header, index, order=self.dates.given)
            self.dates.columns.append(column)
            return _date_reader(column, self.dates, with_time=kind is FieldType.DATETIME)
        return None

    def dialect(self) -> dict[str, object]:
        """How the file was read, for its report (and its errors.csv, written back the same way)."""
        orders = self.dates.orders_read
        date_order = self.dates.given or (next(iter(orders)) if len(orders) == 1 else None)
        return {
            "delimiter": self.delimiter,
            "decimal_mark": str(self.decimal_mark),
            "date_order": str(date_order) if date_order is not None else None,
            "na_values": sorted(self.na_values),
        }


def na_values_of(markers: Iterable[str]) -> frozenset[str]:
    """The missing-value markers of a comma-separated list's items: trimmed, empty ones dropped."""
    return frozenset(marker.strip() for marker in markers if marker.strip())
