"""What a hostile sample file costs the server that refuses it: time to the answer and peak memory.

    python -m benchmarks.hostile_files [--rounds 1] [--timeout 30] [--only endless-rows,wide-header]

Each file of issue 16's probe (variants built here, never the literal files) is posted once per
round to `POST /api/v1/studies/{id}/sample-files`, each time into a new study, of a real server:
`python main.py` (one uvicorn process, SQLite in a temporary folder), started afresh for every file
so that one file's memory or runaway work never counts against the next. For each file it prints the
answer (status and problem code), the seconds until it came, the process's peak resident memory
above its idle size (VmHWM reset just before the request, and VmRSS sampled every 10 ms beside it),
and what the upload folder grew by. Goal, printed beside each: refused (4xx) within 2 s and less
than 50 MB above idle. It prints numbers and never fails on them.

Bounded: each file once per round; the server's IMPORT_MAX_SECONDS is --timeout, the client waits
10 s longer (to see the server's own answer to its deadline), and each server is stopped after its file.
"""

import argparse
import contextlib
import io
import os
import random
import secrets
import shutil
import statistics
import struct
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scripts import local_stack

# Every file's header names the sample id and this one field, so the study accepts its header.
FIELDS = [{"name": "note", "type": "text", "required": False}]
HEADER = ("sample_id", "note")

# ---------------------------------------------------------------------------------------------
# The files

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOCUMENT_RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SPREADSHEETML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# The row reference of the endless-rows workbook: openpyxl's reader yields every row it skips.
ENDLESS_ROW_REFERENCE = 10**15
# The shared-strings workbook: 5,000,000 entries of 18 bytes (91 MB of XML) that deflate about
# 84:1, inside the readers' 100:1 bomb check. Most entries are alike; a few in a hundred vary,
# chosen by a seeded generator, which is what keeps deflate from doing better.
SHARED_STRINGS_ENTRIES = 5_000_000
SHARED_STRING_FILLER = "aa"
SHARED_STRING_VARIED_SHARE = 0.064
SHARED_STRINGS_BLOCK = 100_000  # entries drawn once and repeated: deflate's window is only 32 KB
SNIFFED_BYTES = 16 * 1024


def _sheet_xml(cells_by_row: Iterable[tuple[int, Iterable[str]]]) -> bytes:
    """A worksheet whose rows carry the given references; each cell is an inline string, or a
    shared-string index when it is written `#N`."""
    rows = []
    for reference, cells in cells_by_row:
        written = []
        for column, text in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", cells, strict=False):
            if text.startswith("#"):
                written.append(f'<c r="{column}{reference}" t="s"><v>{text[1:]}</v></c>')
            else:
                written.append(f'<c r="{column}{reference}" t="inlineStr"><is><t>{text}</t></is></c>')
        rows.append(f'<row r="{reference}">{"".join(written)}</row>')
    sheet_data = f"<sheetData>{''.join(rows)}</sheetData>"
    return f'{XML_DECLARATION}<worksheet xmlns="{MAIN_NS}">{sheet_data}</worksheet>'.encode()


def workbook_parts(sheet_xml: bytes, *, shared_strings_xml: bytes | None = None) -> dict[str, bytes]:
    """The members of a minimal valid workbook, one sheet named "samples" (and a shared-strings table)."""
    overrides = [
        f'<Override PartName="/xl/workbook.xml" ContentType="{SPREADSHEETML}.sheet.main+xml"/>',
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{SPREADSHEETML}.worksheet+xml"/>',
    ]
    relationships = [
        f'<Relationship Id="rId1" Type="{DOCUMENT_RELATIONSHIPS}/worksheet" Target="worksheets/sheet1.xml"/>'
    ]
    if shared_strings_xml is not None:
        overrides.append(
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SPREADSHEETML}.sharedStrings+xml"/>'
        )
        relationships.append(
            f'<Relationship Id="rId2" Type="{DOCUMENT_RELATIONSHIPS}/sharedStrings" '
            'Target="sharedStrings.xml"/>'
        )
    parts = {
        "[Content_Types].xml": (
            f'{XML_DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f"{''.join(overrides)}</Types>"
        ).encode(),
        "_rels/.rels": (
            f'{XML_DECLARATION}<Relationships xmlns="{RELATIONSHIPS_NS}"><Relationship Id="rId1" '
            f'Type="{DOCUMENT_RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ).encode(),
        "xl/workbook.xml": (
            f'{XML_DECLARATION}<workbook xmlns="{MAIN_NS}" xmlns:r="{DOCUMENT_RELATIONSHIPS}"><sheets>'
            '<sheet name="samples" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ).encode(),
        "xl/_rels/workbook.xml.rels": (
            f'{XML_DECLARATION}<Relationships xmlns="{RELATIONSHIPS_NS}">'
            f"{''.join(relationships)}</Relationships>"
        ).encode(),
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    if shared_strings_xml is not None:
        parts["xl/sharedStrings.xml"] = shared_strings_xml
    return parts


def deflated_zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def endless_rows_xlsx(row_reference: int = ENDLESS_ROW_REFERENCE) -> bytes:
    """About 1.5 KB: a header row, then one row whose reference is `row_reference` (finding 1)."""
    sheet = _sheet_xml([(1, HEADER), (row_reference, ("ENDLESS-1", "far down"))])
    return deflated_zip(workbook_parts(sheet))


def shared_strings_xml(entries: int = SHARED_STRINGS_ENTRIES) -> bytes:
    """A table of `entries` strings: the header's two names, then 18-byte entries that deflate ~84:1."""
    rng = random.Random(16)  # noqa: S311 (file content, not secrets)

    def text() -> str:
        varied = rng.random() < SHARED_STRING_VARIED_SHARE
        return "".join(rng.choices("abcd", k=2)) if varied else SHARED_STRING_FILLER

    block = "".join(f"<si><t>{text()}</t></si>" for _ in range(SHARED_STRINGS_BLOCK)).encode()
    entry_bytes = len(block) // SHARED_STRINGS_BLOCK
    filler = max(0, entries - len(HEADER))
    whole, rest = divmod(filler, SHARED_STRINGS_BLOCK)
    names = "".join(f"<si><t>{name}</t></si>" for name in HEADER).encode()
    return b"".join(
        [
            f'{XML_DECLARATION}<sst xmlns="{MAIN_NS}" count="{entries}" uniqueCount="{entries}">'.encode(),
            names,
            block * whole,
            block[: rest * entry_bytes],
            b"</sst>",
        ]
    )


def shared_strings_xlsx(entries: int = SHARED_STRINGS_ENTRIES) -> bytes:
    """About 1.08 MB holding a 91 MB xl/sharedStrings.xml of `entries` entries (finding 3)."""
    sheet = _sheet_xml([(1, ("#0", "#1")), (2, ("SHARED-1", "x"))])
    return deflated_zip(workbook_parts(sheet, shared_strings_xml=shared_strings_xml(entries)))


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")
_END_OF_CENTRAL_DIRECTORY = struct.Struct("<4s4H2LH")
_DOS_DATE_1980_01_01 = (1 << 5) | 1


def stored_zip(members: Iterable[tuple[str, bytes]], *, claimed_members: int | None = None) -> bytes:
    """A ZIP of uncompressed members whose end-of-central-directory record states `claimed_members`
    (the true count unless given). Written by hand: zipfile takes seconds for 300,000 members and
    always writes the true count."""
    pieces: list[bytes] = []
    directory: list[bytes] = []
    offset = count = 0
    for name, content in members:
        encoded, crc, size = name.encode(), zlib.crc32(content), len(content)
        # Version 2.0, no flags, stored, dated 1980-01-01; no extra field, comment or attributes.
        described = (_DOS_DATE_1980_01_01, crc, size, size, len(encoded), 0)
        local = _LOCAL_HEADER.pack(b"PK\x03\x04", 20, 0, 0, 0, *described)
        pieces += [local, encoded, content]
        central = _CENTRAL_HEADER.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, *described, 0, 0, 0, 0, offset)
        directory += [central, encoded]
        offset += len(local) + len(encoded) + size
        count += 1
    listing = b"".join(directory)
    claimed = count if claimed_members is None else claimed_members
    end = _END_OF_CENTRAL_DIRECTORY.pack(b"PK\x05\x06", 0, 0, claimed, claimed, len(listing), offset, 0)
    return b"".join(pieces) + listing + end


def many_members_zip(members: int = 300_005, claimed: int = 9) -> bytes:
    """A workbook plus empty members, `members` in all, whose end record claims `claimed` (finding 8)."""
    parts = workbook_parts(_sheet_xml([(1, HEADER), (2, ("MEMBERS-1", "x"))]))
    padding = ((f"xl/p/{number:x}", b"") for number in range(members - len(parts)))
    return stored_zip([*parts.items(), *padding], claimed_members=claimed)


def wide_header_csv(columns: int = 1_000_000) -> bytes:
    """About 7.9 MB: a header of `columns` names and one short data row (finding 2)."""
    names = ",".join(["sample_id", *(f"c{number}" for number in range(1, columns))])
    return f"{names}\r\nWIDE-1\r\n".encode()


def extra_cells_csv(rows: int = 2_000, extra_values: int = 625) -> bytes:
    """About 2.5 MB: the two header columns, and `extra_values` values right of them on every row
    (finding 4)."""
    extra = ",v" * extra_values
    lines = [",".join(HEADER), *(f"EXTRA-{number:05d},x{extra}" for number in range(rows))]
    return ("\r\n".join(lines) + "\r\n").encode()


def slow_sniffing_csv(size: int = SNIFFED_BYTES, per_line: int = 100) -> bytes:
    """`size` bytes of lines of `per_line` times `, "a`: every quote opens a quoted field whose end the
    delimiter Sniffer's patterns then look for up to the end of the text (finding 13). Each line has
    per_line + 1 columns, inside the column limit, so that the sniffing is what the file costs."""
    line = ', "a' * per_line
    return "\n".join([line] * (size // (len(line) + 1) + 1)).encode()[:size]


def stray_byte_csv(rows: int = 200) -> bytes:
    """UTF-8 text, "café naïve 日本" in its first row, with one Windows-1252 "é" (byte 0xE9) half way
    (finding 12): read as Windows-1252, every row would be mojibake."""
    lines = [",".join(HEADER).encode(), "STRAY-00000,café naïve 日本".encode()]
    for number in range(1, rows):
        note = b"caf\xe9" if number == rows // 2 else f"note {number}".encode()
        lines.append(f"STRAY-{number:05d},".encode() + note)
    return b"\r\n".join(lines) + b"\r\n"


@dataclass(frozen=True)
class HostileFile:
    name: str
    filename: str
    build: Callable[[], bytes]
    finding: str


HOSTILE_FILES = (
    HostileFile("endless-rows", "endless.xlsx", endless_rows_xlsx, "1: row 10^15, ~1.5 KB"),
    HostileFile("wide-header", "wide.csv", wide_header_csv, "2: 1,000,000 header columns"),
    HostileFile("shared-strings", "strings.xlsx", shared_strings_xlsx, "3: 91 MB sharedStrings.xml"),
    HostileFile("extra-cells", "extra.csv", extra_cells_csv, "4: 2,000 rows x 625 extra cells"),
    HostileFile("many-members", "members.xlsx", many_members_zip, "8: 300,005 members claiming 9"),
    HostileFile("slow-sniffing", "sniffed.csv", slow_sniffing_csv, "13: 16 KB of quotes to sniff"),
    HostileFile("stray-byte", "stray.csv", stray_byte_csv, "12: UTF-8 with one 0xE9 byte"),
)


# ---------------------------------------------------------------------------------------------
# The measurement

GOAL_SECONDS = 2.0
GOAL_MB_ABOVE_IDLE = 50.0
MEMORY_SAMPLE_SECONDS = 0.01
SERVER_START_SECONDS = 60.0
# A server still busy with a file after its answer (or its timeout) is not waited for long.
SERVER_STOP_SECONDS = 5.0
# How much longer than the server's import deadline the client waits for an answer.
DEADLINE_GRACE_SECONDS = 10.0
PASSWORD = "hostile files benchmark passphrase"  # noqa: S105 (a throwaway account)
CONTENT_TYPES = {".csv": "text/csv", ".xlsx": f"{SPREADSHEETML}.sheet"}
WARM_UP_CSV = b"sample_id,note\r\nWARM-1,warm\r\n"


@dataclass(frozen=True)
class Measurement:
    status: int | None  # None: no answer within the timeout
    code: str  # the problem code of a refusal
    seconds: float
    idle_mb: float
    peak_above_idle_mb: float
    stored_kb: float  # what the upload folder grew by

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


def goal_verdict(measurements: list[Measurement]) -> str:
    """ "met", or what missed the goal: not refused, too slow, too much memory."""
    misses = []
    if not all(measurement.refused for measurement in measurements):
        misses.append("not refused")
    if statistics.median(m.seconds for m in measurements) >= GOAL_SECONDS:
        misses.append("time")
    if max(m.peak_above_idle_mb for m in measurements) >= GOAL_MB_ABOVE_IDLE:
        misses.append("memory")
    return "met" if not misses else "missed: " + ", ".join(misses)


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field_name}")


class PeakMemory:
    """The process's peak resident size while the block runs, in MB above its size at the start.

    The kernel's high-water mark (VmHWM) is reset at the start (clear_refs, Linux 4.0+) so that it
    covers the block only; VmRSS sampled every 10 ms beside it counts where that reset is refused.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle_kb = self.peak_kb = 0
        self.high_water_reset = False
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self.idle_kb = self.peak_kb = _status_kb(self.pid, "VmRSS")
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.high_water_reset = True
        except OSError:
            self.high_water_reset = False
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            with contextlib.suppress(OSError, RuntimeError):  # the process may be gone
                self.peak_kb = max(self.peak_kb, _status_kb(self.pid, "VmRSS"))

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        if self.high_water_reset:
            with contextlib.suppress(OSError, RuntimeError):  # the process may be gone
                self.peak_kb = max(self.peak_kb, _status_kb(self.pid, "VmHWM"))

    @property
    def idle_mb(self) -> float:
        return self.idle_kb / 1024

    @property
    def above_idle_mb(self) -> float:
        return (self.peak_kb - self.idle_kb) / 1024


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def problem_code(response: httpx.Response) -> str:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return ""
    body = response.json()
    errors = body.get("errors") or body.get("report", {}).get("errors") or []
    first = errors[0].get("code", "") if errors and isinstance(errors[0], dict) else ""
    return f"{body.get('code', '')}{f' ({first})' if first else ''}"


@dataclass
class Bench:
    """One temporary folder (the SQLite database, the uploads, the servers' logs), one account."""

    work: Path
    timeout: float
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    email: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:10]}@example.org")
    registered: bool = False

    @property
    def client_timeout(self) -> float:
        return self.timeout + DEADLINE_GRACE_SECONDS

    @property
    def uploads(self) -> Path:
        return self.work / "uploads"

    def environment(self, port: int) -> dict[str, str]:
        """`python main.py` as a new user runs it (development, SQLite), every setting it reads set here."""
        inherited = {name: value for name, value in os.environ.items() if name != "WEB_CONCURRENCY"}
        return inherited | {
            "ENVIRONMENT": "development",
            "DATABASE_URL": f"sqlite+aiosqlite:///{(self.work / 'bench.db').as_posix()}",
            "SECRET_KEY": self.secret_key,
            "UPLOAD_DIR": str(self.uploads),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "CORS_ORIGINS": "",
            "OPEN_REGISTRATION": "true",
            "LOG_LEVEL": "WARNING",
            "MAX_UPLOAD_MB": "100",
            "IMPORT_MAX_SECONDS": str(self.timeout),
        }

    @contextlib.contextmanager
    def fresh_server(self, log_name: str) -> Iterator[tuple[int, httpx.Client]]:
        """A new server process (its pid) and a client of it, signed in; stopped on leaving."""
        port = local_stack.free_port()
        server = local_stack.start_embedded(env=self.environment(port), log=self.work / f"{log_name}.log")
        base_url = f"http://127.0.0.1:{port}"
        try:
            local_stack.wait_until_answering(
                f"{base_url}/api/v1/health", process=server, timeout=SERVER_START_SECONDS
            )
            with httpx.Client(base_url=base_url, timeout=self.client_timeout) as http:
                http.headers["Authorization"] = f"Bearer {self.sign_in(http)}"
                yield server.pid, http
        finally:
            local_stack.stop(server, timeout=SERVER_STOP_SECONDS)

    def sign_in(self, http: httpx.Client) -> str:
        if not self.registered:
            registered = http.post(
                "/api/v1/auth/register",
                json={"email": self.email, "password": PASSWORD, "full_name": "Hostile Files"},
            )
            registered.raise_for_status()
            self.registered = True
        signed_in = http.post("/api/v1/auth/token", data={"username": self.email, "password": PASSWORD})
        signed_in.raise_for_status()
        return signed_in.json()["access_token"]

    def measure(self, hostile: HostileFile, content: bytes, log_name: str) -> Measurement:
        """The file posted to a new study of a fresh server, after one small upload warmed it up."""
        with self.fresh_server(log_name) as (pid, http):
            files_url = warmed_up_study(http, title=hostile.name)
            stored_before = folder_bytes(self.uploads)
            with PeakMemory(pid) as memory:
                started = time.perf_counter()
                status, code = self.post(http, files_url, hostile.filename, content)
                seconds = time.perf_counter() - started
            return Measurement(
                status=status,
                code=code,
                seconds=seconds,
                idle_mb=memory.idle_mb,
                peak_above_idle_mb=memory.above_idle_mb,
                stored_kb=(folder_bytes(self.uploads) - stored_before) / 1024,
            )

    def post(
        self, http: httpx.Client, files_url: str, filename: str, content: bytes
    ) -> tuple[int | None, str]:
        """The answer's status and problem code; no status when none came."""
        content_type = CONTENT_TYPES[Path(filename).suffix]
        try:
            response = http.post(files_url, files={"file": (filename, content, content_type)})
        except httpx.TimeoutException:
            return None, f"no answer in {self.client_timeout:g} s"
        except httpx.TransportError as error:  # the server went away: a number like the others
            return None, f"no answer: {type(error).__name__}"
        return response.status_code, problem_code(response)


def warmed_up_study(http: httpx.Client, *, title: str) -> str:
    """A new study's sample-files URL, after one small file was imported into it."""
    study = http.post(
        "/api/v1/studies",
        json={"code": f"HF-{uuid.uuid4().hex[:10]}", "title": title, "sample_fields": FIELDS},
    )
    study.raise_for_status()
    files_url = f"/api/v1/studies/{study.json()['id']}/sample-files"
    http.post(files_url, files={"file": ("warm.csv", WARM_UP_CSV, "text/csv")}).raise_for_status()
    return files_url


TABLE = "{:15} {:32} {:>6} {:>6} {:44} {:>6} {:>7} {:>8} {:>9}  {}"


def print_header(rounds: int, timeout: float) -> None:
    print(
        f"python main.py (uvicorn, 1 process, SQLite), a fresh process per file; {rounds} round(s); "
        f"IMPORT_MAX_SECONDS {timeout:g}.\nGoal: refused (4xx) in < {GOAL_SECONDS:g} s and "
        f"< {GOAL_MB_ABOVE_IDLE:g} MB above idle. Seconds: median of the rounds; MB: the largest."
    )
    columns = ("file", "finding", "KB", "status", "code", "s", "idle MB", "+peak MB", "stored KB", "goal")
    print(TABLE.format(*columns))


def print_row(hostile: HostileFile, size: int, measurements: list[Measurement]) -> None:
    last = measurements[-1]
    print(
        TABLE.format(
            hostile.name,
            hostile.finding,
            f"{size / 1024:,.0f}",
            "-" if last.status is None else last.status,
            last.code[:44],
            f"{statistics.median(m.seconds for m in measurements):.2f}",
            f"{last.idle_mb:.0f}",
            f"{max(m.peak_above_idle_mb for m in measurements):.1f}",
            f"{max(m.stored_kb for m in measurements):,.0f}",
            goal_verdict(measurements),
        ),
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each file is posted (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="the server's IMPORT_MAX_SECONDS (default 30)"
    )
    names = [hostile.name for hostile in HOSTILE_FILES]
    parser.add_argument("--only", default="", help=f"comma-separated, among: {', '.join(names)}")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        parser.error(f"unknown file(s) for --only: {', '.join(unknown)}")
    if args.rounds < 1 or args.timeout <= 0:
        parser.error("--rounds must be at least 1 and --timeout positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = [hostile for hostile in HOSTILE_FILES if not args.only or hostile.name in args.only]
    bench = Bench(work=Path(tempfile.mkdtemp(prefix="studybase-hostile-files-")), timeout=args.timeout)
    try:
        print_header(args.rounds, args.timeout)
        for hostile in chosen:
            content = hostile.build()
            measurements = [
                bench.measure(hostile, content, log_name=f"{hostile.name}-{number}")
                for number in range(args.rounds)
            ]
            print_row(hostile, len(content), measurements)
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
