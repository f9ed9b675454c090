"""The worksheet's fast path (xlsx_reading.py: plain rows read by regular expressions, their bytes
checked by expat first) reads exactly what expat's handlers read, refuses what they refuse with the
same error, and is taken for rows as spreadsheet programs write them.

Each workbook is read twice, with and without the fast path; the chunk fed to expat at a time is made
small so that a few hundred rows span many chunks (the fast path starts after a chunk's last row).
"""

import datetime as dt
import io
import re

import pytest

from src.sampleFileUpload import xlsx_reading, xlsx_xml
from src.sampleFileUpload.reading_errors import SheetError
from tests.sampleFileUpload import files

SHEET = "xl/worksheets/sheet1.xml"
# A workbook whose styles 1, 2 and 3 are a date, a date-time and a duration format.
BASE = files.xlsx_bytes(
    [["a"], [dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5), dt.timedelta(hours=30)]]
)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(xlsx_xml, "XML_CHUNK_BYTES", 512)  # the chunks fed to expat
    monkeypatch.setattr(xlsx_reading, "XML_CHUNK_BYTES", 512)  # the incomplete row held back


def workbook(rows_xml: bytes, *, declaration: bytes = b"", prefix: bytes = b"") -> bytes:
    def edit(xml: bytes) -> bytes:
        xml = re.sub(
            rb"<sheetData>.*</sheetData>", lambda _m: b"<sheetData>" + rows_xml + b"</sheetData>", xml
        )
        if prefix:
            xml = xml.replace(b"<worksheet xmlns=", b"<x:worksheet xmlns:x=").replace(
                b"</worksheet>", b"</x:worksheet>"
            )
            xml = re.sub(
                rb"<(/?)(sheetData|sheetPr|outlinePr|pageSetUpPr|dimension|sheetViews|sheetView|selection|"
                rb"sheetFormatPr|pageMargins)\b",
                rb"<\1x:\2",
                xml,
            )
        return declaration + xml

    return files.with_sheet_xml(BASE, edit)


def read(content: bytes, *, fast: bool, monkeypatch, max_rows: int = 10_000, max_columns: int = 50):
    """(rows, error, rows the fast path read) of the workbook's sheet; error is (code, message)."""
    taken = []
    with monkeypatch.context() as patch:
        if fast:
            original = xlsx_reading._SheetReader._read_fast_rows

            def counted(self, rows):
                taken.extend(rows)
                return original(self, rows)

            patch.setattr(xlsx_reading._SheetReader, "_read_fast_rows", counted)
        else:
            patch.setattr(xlsx_reading._SheetReader, "_fast_rows", lambda self, parser, data: data)
        rows: list = []
        error = None
        try:
            with xlsx_reading.workbook_records(
                io.BytesIO(content), max_rows=max_rows, max_columns=max_columns, deadline=None
            ) as records:
                for row in records.rows:
                    rows.append(row)
        except SheetError as refused:
            error = (refused.code, str(refused))
    return rows, error, len(taken)


def both(content: bytes, monkeypatch, **limits):
    fast_rows, fast_error, taken = read(content, fast=True, monkeypatch=monkeypatch, **limits)
    slow_rows, slow_error, _ = read(content, fast=False, monkeypatch=monkeypatch, **limits)
    assert fast_rows == slow_rows
    assert fast_error == slow_error
    return fast_rows, fast_error, taken


def plain_row(number: int) -> bytes:
    return (
        f'<row r="{number}" spans="1:6" x14ac:dyDescent="0.25">'
        f'<c r="A{number}" t="inlineStr"><is><t>S-{number:05d}</t></is></c>'
        f'<c r="B{number}" t="n"><v>{number * 1.5}</v></c><c r="C{number}"><v>{number}</v></c>'
        f'<c r="D{number}" s="1" t="n"><v>{45000 + number}</v></c>'
        f'<c r="E{number}" s="2"><v>{45000 + number}.{number:04d}</v></c>'
        f'<c r="F{number}" t="b"><v>{number % 2}</v></c></row>'
    ).encode()


def plain_rows(count: int, start: int = 1) -> bytes:
    return b"".join(plain_row(number) for number in range(start, start + count))


def with_x14ac(content: bytes) -> bytes:
    """The rows' x14ac:dyDescent attribute needs its namespace declared, as Excel does."""
    return files.with_sheet_xml(
        content,
        lambda xml: xml.replace(
            b"<worksheet ",
            b'<worksheet xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac" ',
            1,
        ),
    )


def test_plain_rows_take_the_fast_path_and_read_as_the_handlers_read_them(monkeypatch):
    rows, error, taken = both(with_x14ac(workbook(plain_rows(300))), monkeypatch)

    assert error is None
    assert len(rows) == 300
    assert taken > 250  # all but the first chunk's
    assert rows[9] == (
        10,
        ["S-00010", 15.0, 10, dt.datetime(2023, 3, 25), dt.datetime(2023, 3, 25, 0, 1, 26, 400000), False],
    )


def test_every_kind_of_value_reads_as_the_handlers_read_it(monkeypatch):
    special = (
        b'<row r="150"><c r="A150" t="inlineStr"><is><t xml:space="preserve"> a &amp; b &lt;c&gt; '
        b"&quot;d&apos; &#x41;&#66; \xc3\xa9\xe2\x82\xac > e\r\nf\rg</t></is></c>"
        b'<c r="B150" t="str"><v>formula &amp; text</v></c><c r="C150" t="e"><v>#N/A</v></c>'
        b'<c r="D150" t="d"><v>2024-02-03T04:05:06</v></c><c r="E150" s="3"><v>1.25</v></c>'
        b'<c r="F150" s="1"><v>15</v></c><c r="G150" s="1"><v>60.5</v></c><c r="H150" s="2"><v>0.75</v></c>'
        b'<c r="I150" s="1"><v>1e300</v></c><c r="J150"><v>-2.5E-3</v></c><c r="K150"><v></v></c>'
        b'<c r="L150" t="inlineStr"><v>7</v></c><c r="M150" t="b"><v>0</v></c></row>'
        b'<row r="151"><c r="C151"><v>3</v></c><c r="A151"><v>1</v></c><c><v>2</v></c><c r="E151"/>'
        b'<c r="F151" t="inlineStr"><is><t></t></is></c><c r="G151" t="n"/></row>'
        b'<row><c><v>4</v></c><c t="inlineStr"><is><t>no references</t></is></c></row>'
        b'<row r="160"><c r="A160" t="s"><v>0</v></c></row>'
    )
    content = with_x14ac(workbook(plain_rows(149) + special + plain_rows(100, 161)))
    content = files.with_shared_strings(content, files.shared_strings_xml(["shared text"]))
    rows, error, taken = both(content, monkeypatch)

    assert error is None
    by_number = dict(rows)
    assert by_number[150][0] == " a & b <c> \"d' AB \xe9\u20ac > e\nf\ng"
    assert by_number[150][1:4] == ["formula & text", "#N/A", dt.datetime(2024, 2, 3, 4, 5, 6)]
    assert by_number[150][8] == "#VALUE!"
    assert by_number[151] == [1, 2, 3, None, None, "", None]
    assert by_number[152] == [4, "no references"]
    assert by_number[160] == ["shared text"]
    assert taken > 200


@pytest.mark.parametrize(
    "rows_xml",
    [
        # Rows inside a comment are no rows, nor are those in a CDATA section.
        plain_rows(100) + b"<!-- </row>" + plain_rows(5, 500) + b" -->" + plain_rows(100, 101),
        plain_rows(100) + b'<row r="101"><c r="A101"><v><![CDATA[5]]></v></c></row>' + plain_rows(100, 102),
        # A formula, a rich text, attributes in another order, spaces between cells.
        plain_rows(100)
        + b'<row r="101"><c r="A101"><f>1+1</f><v>2</v></c><c r="B101" t="inlineStr"><is><r><t>x</t></r>'
        b'<rPh><t>y</t></rPh></is></c><c t="n" r="C101"><v>3</v></c>\n  <c r="D101"><v>4</v></c></row>'
        + plain_rows(100, 102),
    ],
    ids=["comment", "cdata", "unusual-cells"],
)
def test_what_the_fast_path_does_not_take_the_handlers_read(rows_xml, monkeypatch):
    rows, error, _taken = both(with_x14ac(workbook(rows_xml)), monkeypatch)

    assert error is None
    assert 500 not in dict(rows)


def test_a_namespace_prefix_or_another_encoding_reads_as_the_handlers_read_it(monkeypatch):
    unprefixed = plain_rows(200).replace(b"x14ac:dyDescent", b"ht")
    prefixed = re.sub(rb"<(/?)(row|c|v|is|t)\b", rb"<\1x:\2", unprefixed)
    rows, error, taken = both(workbook(prefixed, prefix=b"x"), monkeypatch)
    assert error is None
    assert len(rows) == 200
    assert taken == 0

    rows, error, _ = both(workbook(unprefixed, prefix=b"x"), monkeypatch)
    assert error is None
    assert rows == []  # rows of no namespace are not the sheet's

    latin = workbook(
        plain_rows(200)
        .replace(b"x14ac:dyDescent", b"ht")
        .replace(b"S-00150", "S-00150-\xe9".encode("latin-1")),
        declaration=b'<?xml version="1.0" encoding="ISO-8859-1"?>',
    )
    rows, error, taken = both(latin, monkeypatch)
    assert error is None
    assert dict(rows)[150][0] == "S-00150-\xe9"
    assert taken == 0


@pytest.mark.parametrize(
    ("rows_xml", "limits", "code"),
    [
        (
            plain_rows(150) + b'<row r="151"><c r="A151"><v>1\x01</v></c></row>' + plain_rows(10, 152),
            {},
            "unreadable",
        ),
        (
            plain_rows(150) + b'<row r="151"><c r="A151"><v>1</v></c></raw>' + plain_rows(10, 152),
            {},
            "unreadable",
        ),
        (plain_rows(150) + b'<row r="151"><c r="A151"><v>x</v></c></row>', {}, "unreadable"),
        (plain_rows(150) + b'<row r="151"><c r="A151" t="s"><v>5</v></c></row>', {}, "unreadable"),
        (plain_rows(150) + plain_rows(1, 150), {}, "unreadable"),
        (plain_rows(150) + b'<row r="0"><c><v>1</v></c></row>', {}, "unreadable"),
        (plain_rows(150), {"max_rows": 120}, "too_many_rows"),
        (
            plain_rows(150) + b'<row r="151"><c r="A9999"><v>1</v></c></row>',
            {"max_rows": 200},
            "too_many_rows",
        ),
        (
            plain_rows(150) + b'<row r="151"><c r="H151"><v>1</v></c></row>',
            {"max_columns": 6},
            "too_many_columns",
        ),
        (
            plain_rows(150) + b'<row r="151">' + b"<c><v>1</v></c>" * 7 + b"</row>",
            {"max_columns": 6},
            "too_many_columns",
        ),
        (
            plain_rows(150) + b'<row r="151"><c r="B151"/><c r="A151"/>' + b"<c/>" * 5 + b"</row>",
            {"max_columns": 6},
            "too_many_columns",
        ),
    ],
    ids=[
        "bad-character",
        "bad-end-tag",
        "not-a-number",
        "no-such-string",
        "row-again",
        "row-zero",
        "too-many-rows",
        "cell-past-the-rows",
        "cell-past-the-columns",
        "more-cells-than-columns",
        "cells-counted-not-numbered",
    ],
)
def test_the_fast_path_refuses_what_the_handlers_refuse_after_the_same_rows(
    rows_xml, limits, code, monkeypatch
):
    _rows, error, taken = both(with_x14ac(workbook(rows_xml)), monkeypatch, **limits)

    assert error is not None
    assert error[0] == code
    assert taken > 0
