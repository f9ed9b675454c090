"""The dashboard page in a real browser (Debian's Chromium driven by Playwright), served by nginx.

Skipped when Chromium or Playwright is missing, except under CI (CI=true), where that fails the
run. Every figure the page shows is compared with what the API answers for the same user.
A screenshot of the dashboard is saved under ARTIFACTS_DIR (or $TMPDIR/studybase-artifacts) and
its path printed in the log.
"""

import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from src.middleware import API_CSP, DASHBOARD_CSP
from src.page import PAGE_DIR
from tests.conftest import assert_problem, bearer
from tests.stack.conftest import (
    STACK_PASSWORD,
    UNDER_CI,
    Stack,
    join_by_invitation,
    register_and_sign_in,
    researcher_with_study,
)

pytestmark = pytest.mark.stack

CHROMIUM_PATH = "/usr/bin/chromium"
FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0, "max": 100},
]
HEADER = "sample_id,tissue,volume [mL]\r\n"
ANSWERED_WITH_AN_ERROR = "Failed to load resource: the server responded with a status of 4"
# Long enough for a page that waits on the API through nginx on a busy shared machine.
WAIT_MS = 15_000


def browser_missing() -> str | None:
    if not Path(CHROMIUM_PATH).exists():
        return f"Chromium is not installed at {CHROMIUM_PATH} (Debian: apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401 (optional until the browser tests run)
    except ImportError:
        return "the playwright package is not installed (requirements.dev.txt)"
    return None


@pytest.fixture(scope="module")
async def browser(stack: Stack) -> AsyncIterator:
    """Playwright's async API: the sync one runs an event loop of its own, which the suite's async
    fixtures (on pytest-asyncio's loop) refuse."""
    problem = browser_missing()
    if problem:
        if UNDER_CI:
            pytest.fail(f"the browser tests need Chromium and Playwright under CI: {problem}")
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM_PATH, args=["--no-sandbox"], headless=True
        )
        yield chromium
        await chromium.close()


@dataclass
class Researcher:
    email: str
    api: httpx.Client
    headers: dict[str, str]
    study: dict

    def get(self, path: str) -> dict:
        response = self.api.get(f"/api/v1{path}", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, name: str, content: str, status: int) -> dict:
        """A CSV file uploaded to the study through the API, answered with `status` (201, 422...)."""
        uploaded = self.api.post(
            f"/api/v1/studies/{self.study['id']}/sample-files",
            files={"file": (name, content.encode(), "text/csv")},
            headers=self.headers,
        )
        assert uploaded.status_code == status, uploaded.text
        return uploaded.json()


def new_viewer(researcher: Researcher, smtp) -> tuple[str, dict[str, str]]:
    """A new account that joined the researcher's study as a viewer (by invitation): email, headers."""
    viewer = f"viewer-{uuid.uuid4().hex[:8]}@example.org"
    viewer_headers = bearer(register_and_sign_in(researcher.api, viewer))
    join_by_invitation(
        researcher.api,
        smtp,
        study_url=f"/api/v1/studies/{researcher.study['id']}",
        owner_headers=researcher.headers,
        member_headers=viewer_headers,
        email=viewer,
        role="viewer",
    )
    return viewer, viewer_headers


@pytest.fixture
def researcher(http: httpx.Client) -> Researcher:
    """A new account with one study holding three samples, made through the API (through nginx)."""
    made = researcher_with_study(http, "page", fields=FIELDS)
    for number in range(3):
        sample = http.post(
            f"{made.study_url}/samples",
            json={"sample_id": f"S-{number}", "values": {"tissue": "blood", "volume": number}},
            headers=made.headers,
        )
        assert sample.status_code == 201, sample.text
    return Researcher(email=made.email, api=http, headers=made.headers, study=made.study)


@pytest.fixture
async def page(browser, stack: Stack) -> AsyncIterator:
    """A fresh browser context (no session); console errors, CSP refusals included, fail the test."""
    context = await browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await context.close()
    # Chromium logs every 4xx answer the page asked for (a rejected upload, an ended session) and
    # the page shows those; anything else (a script error, a CSP refusal) is a bug.
    assert [error for error in errors if not error.startswith(ANSWERED_WITH_AN_ERROR)] == []


async def sign_in(page, email: str) -> None:
    await page.goto("/")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(STACK_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    # The last of the page's first requests: after it, nothing is in flight.
    await expect_text(page.locator("#signed-in-as"), email)


async def expect_text(locator, text: str | re.Pattern) -> None:
    from playwright.async_api import expect

    await expect(locator).to_have_text(text, timeout=WAIT_MS)


def figure_of(page, figure: str, status: str | None = None):
    if status is None:
        return page.locator(f'[data-figure="{figure}"] .figure')
    return page.locator(f'[data-figure="{figure}"] [data-status="{status}"] .count')


# The screenshots the docs site shows (docs/assets/screenshots): with DOCS_SCREENSHOTS_DIR set (CI
# sets it), save_screenshot writes these there too, so the site shows the page as it is today.
DOCS_SCREENSHOTS = frozenset({"dashboard.png", "study-upload-report.png", "workspace-study.png"})


async def save_screenshot(page, name: str, capsys) -> None:
    """A CI artifact: saved under ARTIFACTS_DIR (or $TMPDIR/studybase-artifacts), its path in the log;
    and, for the docs' screenshots, under DOCS_SCREENSHOTS_DIR when it is set."""
    folder = anyio.Path(
        os.environ.get("ARTIFACTS_DIR") or Path(tempfile.gettempdir()) / "studybase-artifacts"
    )
    await folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / name
    await page.screenshot(path=screenshot, full_page=True)
    with capsys.disabled():  # printed even though pytest captures the test's output
        print(f"\n[artifact] {name}: {screenshot}")
    assert (await screenshot.stat()).st_size > 10_000
    if name in DOCS_SCREENSHOTS and os.environ.get("DOCS_SCREENSHOTS_DIR"):
        await save_docs_screenshot(page, anyio.Path(os.environ["DOCS_SCREENSHOTS_DIR"]) / name, capsys)


async def save_docs_screenshot(page, path: anyio.Path, capsys) -> None:
    """What the reader sees in the browser window (the viewport), not the whole scrolled page: a
    small PNG that shows the part the docs talk about."""
    await path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=path, full_page=False)
    with capsys.disabled():
        print(f"[docs screenshot] {path.name}: {path} ({(await path.stat()).st_size:,} bytes)")


async def open_study(page, researcher: Researcher) -> None:
    await page.get_by_role("button", name=researcher.study["code"]).click()
    await figure_of(page, "study-samples").wait_for()


async def upload(page, name: str, content: str) -> None:
    await page.get_by_label("File (CSV, TSV or XLSX)").set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": content.encode()}
    )
    await page.get_by_role("button", name="Upload", exact=True).click()


# What the upload's progress label said, in order (the page's own CSP does not apply to evaluate()).
RECORD_UPLOAD_PHASES = """
window.uploadPhases = [];
new MutationObserver(() => window.uploadPhases.push(document.getElementById("upload-phase").textContent))
  .observe(document.getElementById("upload-phase"), {childList: true, characterData: true, subtree: true});
"""


def cells(row) -> list[str]:
    return row.locator("td").all_inner_texts()


async def test_sign_in_shows_the_figures_the_api_reports(page, researcher: Researcher, capsys):
    await sign_in(page, researcher.email)

    summary = researcher.get("/dashboard/summary")
    assert summary["samples"]["total"] == 3
    await expect_text(figure_of(page, "samples"), str(summary["samples"]["total"]))
    assert await figure_of(page, "studies").inner_text() == str(summary["studies"]["total"])
    assert await figure_of(page, "sample-files").inner_text() == str(summary["sample_files"]["total"])
    for status, count in summary["samples"]["by_status"].items():
        assert await figure_of(page, "samples", status).inner_text() == str(count), status
    listed = researcher.get("/studies")["items"]
    rows = page.locator("#studies-table tbody tr")
    assert await rows.count() == len(listed) == 1
    assert await cells(rows.first) == [
        listed[0]["code"],
        listed[0]["title"],
        "Draft",
        str(listed[0]["sample_count"]),
        "Owner",
    ]
    bars = page.locator("#daily-chart svg rect.bar")
    assert await bars.count() == len(summary["samples_created"]) == 30
    assert await bars.last.get_attribute("data-count") == str(summary["samples_created"][-1]["count"])
    assert await page.locator("#daily-chart svg text.axis-title").all_text_contents() == [
        "Day (UTC)",
        "Samples",
    ]
    await expect_text(page.locator("#signed-in-as"), researcher.email)

    await save_screenshot(page, "dashboard.png", capsys)


async def test_the_studies_table_searches_and_filters_by_status(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    first_code = page.locator("#studies-table tbody tr td").first
    await expect_text(first_code, researcher.study["code"])

    await page.get_by_label("Status").select_option("active")
    await page.locator("#studies-empty").wait_for(state="visible")
    await page.get_by_label("Status").select_option("draft")
    await page.get_by_label("Search code or title").fill("no such study")
    await page.locator("#studies-empty").wait_for(state="visible")
    await page.get_by_label("Search code or title").fill(researcher.study["code"].lower())
    await expect_text(first_code, researcher.study["code"])
    assert await page.locator("#studies-empty").is_hidden()


async def test_an_upload_with_one_bad_cell_shows_that_cells_error(page, researcher: Researcher, capsys):
    await sign_in(page, researcher.email)
    await open_study(page, researcher)

    await upload(page, "bad.csv", HEADER + "S-10,blood,1.5\r\nS-11,saliva,-1\r\n")

    errors = page.locator("#report-errors tbody tr")
    await errors.first.wait_for()
    assert await errors.count() == 1
    assert await cells(errors.first) == ["3", "volume [mL]", "-1", "must be at least 0"]
    assert "Nothing was imported" in await page.locator("#upload-result").inner_text()
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download every error (errors.csv)").click()
    saved = await anyio.Path(await (await download.value).path()).read_text(encoding="utf-8")
    # the rejected row as it was in the file, with its row number and errors in front
    assert re.search(
        r"^3,volume \[mL\]: must be at least 0 \(below_min\),S-11,saliva,-1$", saved, re.MULTILINE
    ), saved
    assert researcher.get(f"/dashboard/studies/{researcher.study['id']}")["samples"]["total"] == 3
    await expect_text(figure_of(page, "study-uploads", "rejected"), "1")
    await save_screenshot(page, "study-upload-report.png", capsys)


async def test_a_file_missing_a_column_says_so_apart_from_its_rows(page, researcher: Researcher):
    # Issue 18: not "0 of 1 rows have errors (1 in all)" for an error of the columns.
    await sign_in(page, researcher.email)
    await open_study(page, researcher)

    await upload(page, "no-tissue.csv", "sample_id,volume [mL]\r\nS-20,1.5\r\n")

    await page.locator("#report-errors tbody tr").first.wait_for()
    headline = await page.locator("#upload-result p").first.inner_text()
    assert headline == "Nothing was imported: 1 error of the columns."

    # A file of its header alone, refused for that header: no "0 of 0 rows have errors" either.
    await upload(page, "header-only.csv", "sample_id,volume [mL]\r\n")
    await expect_text(page.locator("#upload-result p").first, "Nothing was imported: 1 error of the columns.")
    assert await cells(page.locator("#report-errors tbody tr").first) == [
        "1",
        "tissue",
        "",
        "is a required column but the file has no such header",
    ]


async def test_a_good_upload_changes_the_counts_at_once(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")
    await open_study(page, researcher)
    await expect_text(figure_of(page, "study-samples"), "3")

    await page.evaluate(RECORD_UPLOAD_PHASES)

    await upload(page, "good.csv", HEADER + "S-20,blood,1\r\nS-21,saliva,2\r\n")

    await expect_text(figure_of(page, "study-samples"), "5")
    phases = await page.evaluate("window.uploadPhases")
    assert "Sending… 100 %" in phases
    assert phases[-1] == "The server is importing the file…"
    assert "Imported good.csv: 2 created" in await page.locator("#upload-result").inner_text()
    figures = researcher.get(f"/dashboard/studies/{researcher.study['id']}")
    assert figures["samples"]["total"] == 5
    saliva = await cells(page.locator("#choices tr", has_text="saliva"))
    assert saliva == ["saliva", str(figures["choices"][0]["counts"]["saliva"])] == ["saliva", "1"]
    assert await page.locator("#uploads-table tbody tr td").first.inner_text() == "good.csv"
    await page.get_by_role("button", name="← All studies").click()
    await expect_text(figure_of(page, "samples"), "5")
    await expect_text(page.locator("#studies-table tbody tr td.number").first, "5")


# A file that takes the stack some seconds to import (the stack takes at most STACK_MAX_UPLOAD_MB).
LONG_IMPORT_ROWS = 120_000
# Its import's end, on a busy shared machine.
LONG_IMPORT_WAIT_MS = 120_000


def long_import_csv() -> str:
    return HEADER + "".join(f"L{number:06d},blood,\r\n" for number in range(LONG_IMPORT_ROWS))


def import_phase(page, filename: str):
    return page.locator("#imports-running li", has_text=filename).locator(".import-phase")


# "Importing: 4,000 of 120,000": rows read (some already) of the file's rows, from its record.
IMPORTING = re.compile(rf"^Importing: [1-9][\d,]* of {LONG_IMPORT_ROWS:,}$")


async def test_a_long_import_shows_its_progress_after_a_reload_too_and_then_its_counts(
    page, researcher: Researcher
):
    from playwright.async_api import expect

    await sign_in(page, researcher.email)
    await open_study(page, researcher)

    await upload(page, "long.csv", long_import_csv())

    await expect_text(import_phase(page, "long.csv"), IMPORTING)
    [record] = [
        item
        for item in researcher.get(f"/studies/{researcher.study['id']}/sample-files")["items"]
        if item["filename"] == "long.csv"
    ]
    assert record["status"] == "importing"
    assert record["progress"]["rows_total"] == LONG_IMPORT_ROWS
    await page.reload()
    await expect_text(import_phase(page, "long.csv"), IMPORTING)  # followed again
    await expect(page.locator("#imports-running progress")).to_have_attribute("max", str(LONG_IMPORT_ROWS))

    await expect(page.locator("#upload-result p").first).to_have_text(
        f"Imported long.csv: {LONG_IMPORT_ROWS} created, 0 updated, 0 unchanged of {LONG_IMPORT_ROWS} rows.",
        timeout=LONG_IMPORT_WAIT_MS,
    )
    await expect(page.locator("#imports-running li")).to_have_count(0)
    total = researcher.get(f"/dashboard/studies/{researcher.study['id']}")["samples"]["total"]
    assert total == 3 + LONG_IMPORT_ROWS
    await expect_text(figure_of(page, "study-samples"), re.compile(rf"^{total:,}$|^{total}$"))


async def test_an_import_cancelled_from_the_page_leaves_no_samples(page, researcher: Researcher):
    from playwright.async_api import expect

    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    await upload(page, "cancelled.csv", long_import_csv())
    await expect_text(import_phase(page, "cancelled.csv"), IMPORTING)

    await page.get_by_role("button", name="Cancel the import of cancelled.csv").click()

    await expect(page.locator("#upload-result p").first).to_have_text(
        "The import of cancelled.csv was cancelled, nothing imported.", timeout=LONG_IMPORT_WAIT_MS
    )
    assert researcher.get(f"/dashboard/studies/{researcher.study['id']}")["samples"]["total"] == 3
    [record] = researcher.get(f"/studies/{researcher.study['id']}/sample-files")["items"]
    assert record["status"] == "cancelled"


async def downloaded(page, button) -> tuple[str, str]:
    """Clicks a download button of the page; the saved file's suggested name and text, byte for byte."""
    async with page.expect_download() as started:
        await button.click()
    download = await started.value
    return download.suggested_filename, (await anyio.Path(await download.path()).read_bytes()).decode()


async def test_a_dry_run_imports_nothing_and_downloads_carry_the_token(page, researcher: Researcher):
    content = HEADER + "S-40,saliva,4\r\n"
    researcher.upload("first.csv", content, 201)
    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    await expect_text(figure_of(page, "study-samples"), "4")

    await page.get_by_label("Dry run (check only, import nothing)").check()
    await upload(page, "dry.csv", HEADER + "S-41,blood,1\r\n")
    await expect_text(
        page.locator("#upload-result p").first,
        re.compile(r"^Dry run of dry\.csv: 1 rows read; it would create 1"),
    )
    assert researcher.get(f"/dashboard/studies/{researcher.study['id']}")["samples"]["total"] == 4
    await expect_text(figure_of(page, "study-samples"), "4")

    original = page.locator("#uploads-table tbody tr", has_text="first.csv").get_by_role(
        "button", name="File"
    )
    assert await downloaded(page, original) == ("first.csv", content)
    name, template = await downloaded(page, page.get_by_role("button", name="Template (CSV)"))
    assert name == f"{researcher.study['code']}-template.csv"
    assert template.splitlines()[0] == "\ufeffsample_id,status,tissue,volume [mL]"  # a BOM for Excel
    name, export = await downloaded(page, page.get_by_role("button", name="Export samples (CSV)"))
    assert name == f"{researcher.study['code']}-samples.csv"
    assert "S-40,registered,saliva,4" in export
    assert len(export.splitlines()) == 5  # the header and the four samples


# The fields of each multipart form the page sends, but the file (Chromium gives Playwright no body
# for a form holding a file, so they are noted as XMLHttpRequest is given them).
RECORD_SENT_FORMS = """
window.sentForms = [];
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) {
  if (body instanceof FormData) {
    window.sentForms.push(Object.fromEntries([...body.entries()].filter(([name]) => name !== "file")));
  }
  return send.call(this, body);
};
null;  // not the function: evaluate() would call a function it is given
"""


async def test_the_upload_form_sends_the_date_order_and_decimal_mark_chosen(page, researcher: Researcher):
    from playwright.async_api import expect

    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    await page.evaluate(RECORD_SENT_FORMS)
    upload_button = page.get_by_role("button", name="Upload", exact=True)

    await upload(page, "automatic.csv", HEADER + "S-30,blood,1\r\n")
    await expect_text(page.locator("#upload-result p").first, re.compile(r"^Imported automatic\.csv"))
    await page.get_by_label("Date order of dates such as 04/03/2025").select_option("dmy")
    await page.get_by_label("Decimal mark").select_option(",")
    await upload(page, "chosen.csv", "sample_id;tissue;volume [mL]\r\nS-31;blood;1,5\r\n")
    await expect(page.locator("#upload-state")).to_be_hidden()
    await expect(upload_button).to_be_enabled()

    assert await page.evaluate("window.sentForms") == [
        {"mode": "insert", "dry_run": "false"},  # automatic is the server's own choice: nothing is sent
        {"mode": "insert", "dry_run": "false", "date_order": "dmy", "decimal_mark": ","},
    ]


async def test_the_csv_downloads_carry_the_dialect_chosen(page, researcher: Researcher):
    researcher.upload("bad.csv", HEADER + "S-11,saliva,-1\r\n", 422)
    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    errors_csv = page.locator("#uploads-table tbody tr", has_text="bad.csv").get_by_role(
        "button", name="errors.csv"
    )
    await errors_csv.wait_for()

    await page.get_by_label("CSV files for").select_option("excel-eu")
    _, template = await downloaded(page, page.get_by_role("button", name="Template (CSV)"))
    _, export = await downloaded(page, page.get_by_role("button", name="Export samples (CSV)"))
    _, as_uploaded = await downloaded(page, errors_csv)
    await page.get_by_label("errors.csv written").select_option("excel-eu")
    _, errors_eu = await downloaded(page, errors_csv)

    assert template.splitlines()[0] == "\ufeffsample_id;status;tissue;volume [mL]"
    assert export.splitlines()[1:] == [
        "S-0;registered;blood;0",
        "S-1;registered;blood;1",
        "S-2;registered;blood;2",
    ]
    assert as_uploaded.splitlines()[-1] == "2,volume [mL]: must be at least 0 (below_min),S-11,saliva,-1"
    assert errors_eu.splitlines()[-1] == "2;volume [mL]: must be at least 0 (below_min);S-11;saliva;-1"


async def test_a_browser_that_writes_decimal_commas_offers_csv_for_excel_in_europe_first(
    browser, stack: Stack, researcher: Researcher
):
    context = await browser.new_context(base_url=stack.base_url, locale="de-DE")
    try:
        german = await context.new_page()
        await sign_in(german, researcher.email)
        await open_study(german, researcher)
        _, template = await downloaded(german, german.get_by_role("button", name="Template (CSV)"))
    finally:
        await context.close()

    assert template.splitlines()[0] == "\ufeffsample_id;status;tissue;volume [mL]"


async def test_the_figures_refresh_every_30_seconds_with_conditional_requests(page, researcher: Researcher):
    from playwright.async_api import expect

    await page.clock.install()
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")

    as_of = await page.locator("#generated-at").text_content()

    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")) as unchanged:
        await page.clock.fast_forward(2 * 60 * 60 * 1000)  # one tick, two hours on
    assert (await unchanged.value).status == 304
    assert await (await unchanged.value).request.header_value("if-none-match")
    # Unchanged figures are current as of this check, not of the last change.
    await expect(page.locator("#generated-at")).not_to_have_text(as_of)
    added = researcher.api.post(
        f"/api/v1/studies/{researcher.study['id']}/samples",
        json={"sample_id": "S-30", "values": {"tissue": "saliva"}},
        headers=researcher.headers,
    )
    assert added.status_code == 201, added.text
    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")) as changed:
        await page.clock.fast_forward(30_000)
    assert (await changed.value).status == 200
    await expect_text(figure_of(page, "samples"), "4")
    await expect_text(page.locator("#studies-table tbody tr td.number").first, "4")


async def test_a_hidden_tab_asks_for_nothing_and_refreshes_when_shown_again(page, researcher: Researcher):
    await page.clock.install()
    # The test decides what document.visibilityState says (a headless tab is always visible).
    await page.add_init_script(
        'Object.defineProperty(document, "visibilityState", '
        '{get: () => (window.testHidden ? "hidden" : "visible")});'
    )
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/" in request.url else None)

    await page.evaluate("window.testHidden = true")
    await page.clock.fast_forward(95_000)
    await page.wait_for_timeout(500)  # real time, for a request the tick would have started
    assert asked == []
    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")) as shown:
        await page.evaluate(
            "window.testHidden = false; document.dispatchEvent(new Event('visibilitychange'))"
        )
    assert (await shown.value).status == 304


async def test_the_access_token_is_refreshed_before_it_expires(page, researcher: Researcher):
    await page.clock.install()
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")

    async with page.expect_response(re.compile(r"/api/v1/auth/refresh$")) as refreshed:
        await page.clock.fast_forward(15 * 60 * 1000 - 50_000)  # ACCESS_TOKEN_EXPIRE_MINUTES=15 in the stack

    assert (await refreshed.value).status == 200
    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")) as summary:
        await page.get_by_role("button", name="Refresh").click()
    assert (await summary.value).status == 304  # the new access token works, figures unchanged


async def test_a_reload_of_the_tab_stays_signed_in_through_the_refresh_token(page, researcher: Researcher):
    await sign_in(page, researcher.email)

    async with page.expect_response(re.compile(r"/api/v1/auth/refresh$")) as refreshed:
        await page.reload()

    assert (await refreshed.value).status == 200
    await expect_text(figure_of(page, "samples"), "3")
    await expect_text(page.locator("#signed-in-as"), researcher.email)


async def test_sign_out_ends_the_session_and_keeps_no_token(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    assert await page.evaluate("sessionStorage.length") == 1
    assert await page.evaluate("localStorage.length") == 0
    refresh_token = await page.evaluate("sessionStorage.getItem(sessionStorage.key(0))")

    await page.get_by_role("button", name="Sign out").click()

    await expect_text(page.locator("#sign-in-message"), "You are signed out.")
    # Ended on the server too: the refresh token the tab held is no longer good.
    refreshed = researcher.api.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert_problem(refreshed, 401, "REFRESH_TOKEN_INVALID")
    assert await page.locator("#overview").is_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    # Nothing of this user is left in the page, not even hidden.
    assert await page.locator("#cards article, #studies-table tbody tr, #activity li").count() == 0
    assert await page.locator("#signed-in-as").text_content() == ""
    await page.reload()
    await page.locator("#sign-in").wait_for()


async def test_a_401_sends_the_user_back_to_sign_in_with_a_message(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")
    assert researcher.api.post("/api/v1/auth/logout-all", headers=researcher.headers).status_code == 204

    await page.get_by_role("button", name="Refresh").click()

    await expect_text(page.locator("#sign-in-message"), "Your session has ended. Please sign in again.")
    assert await page.locator("#overview").is_hidden()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_api_errors_are_shown_as_readable_messages(page, researcher: Researcher):
    await page.goto("/")
    await page.get_by_label("Email", exact=True).fill(researcher.email)
    await page.get_by_label("Password", exact=True).fill("not the password")
    await page.get_by_role("button", name="Sign in").click()

    message = page.locator("#sign-in-message")
    await expect_text(message, re.compile(r"\w+"))
    assert "{" not in await message.inner_text()
    assert await page.locator("#overview").is_hidden()


# The labels of a chart (ticks and axis titles) that are not wholly inside its drawing, as shown.
CUT_CHART_LABELS = """(chart) => {
  const svg = document.querySelector(`${chart} svg`);
  const box = svg.getBoundingClientRect();
  const labels = [...svg.querySelectorAll("text")];
  if (!labels.length) return ["no labels"];
  return labels
    .filter((label) => {
      const r = label.getBoundingClientRect();
      const outside = r.left < box.left || r.right > box.right || r.top < box.top || r.bottom > box.bottom;
      return r.width === 0 || outside;
    })
    .map((label) => label.textContent);
}"""


async def test_the_page_fits_a_phone_screen(browser, stack: Stack, researcher: Researcher):
    """Nothing makes the page wider than the screen, and no label of a chart's axes is cut off."""
    context = await browser.new_context(base_url=stack.base_url, viewport={"width": 375, "height": 740})
    try:
        phone = await context.new_page()
        await sign_in(phone, researcher.email)
        await expect_text(figure_of(phone, "samples"), "3")
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
        assert await phone.evaluate(CUT_CHART_LABELS, "#daily-chart") == []
        await open_study(phone, researcher)
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
        await phone.locator("#weekly-chart svg text").first.wait_for()
        assert await phone.evaluate(CUT_CHART_LABELS, "#weekly-chart") == []
    finally:
        await context.close()


def test_nginx_serves_the_page_and_its_assets_with_the_page_csp(http: httpx.Client):
    page = http.get("/")
    script = http.get("/assets/app.js")
    style = http.get("/assets/style.css")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    for response in (page, script, style):
        assert response.headers.get_list("content-security-policy") == [DASHBOARD_CSP]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert script.headers["content-type"].split(";")[0] in ("application/javascript", "text/javascript")
    assert script.text == (PAGE_DIR / "assets" / "app.js").read_text(encoding="utf-8")
    assert style.headers["content-type"].startswith("text/css")


def test_paths_beside_the_page_keep_the_apis_answers_and_csp(http: httpx.Client):
    missing_asset = http.get("/assets/no-such-file.js")
    missing_route = http.get("/api/v1/no-such-route")
    docs = http.get("/docs")

    assert_problem(missing_asset, 404, "NOT_FOUND")
    assert missing_asset.headers["content-security-policy"] == API_CSP
    assert_problem(missing_route, 404, "NOT_FOUND")
    assert missing_route.headers["content-security-policy"] == API_CSP
    assert docs.status_code == 200
    assert "Swagger" in docs.text


async def test_a_failed_studies_list_is_asked_for_again_at_the_next_tick(page, researcher: Researcher):
    """The table follows the summary: when the summary changed but the list failed (a 429, a lost
    connection), the next tick must not take the unchanged summary's 304 as "the table is current"."""
    await page.clock.install()
    await sign_in(page, researcher.email)
    table_count = page.locator("#studies-table tbody tr td.number").first
    await expect_text(table_count, "3")
    added = researcher.api.post(
        f"/api/v1/studies/{researcher.study['id']}/samples",
        json={"sample_id": "S-31", "values": {"tissue": "saliva"}},
        headers=researcher.headers,
    )
    assert added.status_code == 201, added.text
    busy = {"status": 429, "title": "Too Many Requests", "detail": "Slow down.", "code": "RATE_LIMITED"}

    async def too_many(route) -> None:
        await route.fulfill(status=429, content_type="application/problem+json", json=busy)

    await page.route(re.compile(r"/api/v1/studies\?"), too_many)
    async with page.expect_response(re.compile(r"/api/v1/studies\?")):
        await page.clock.fast_forward(30_000)
    await expect_text(figure_of(page, "samples"), "4")
    await expect_text(page.locator("#overview-message"), "Slow down.")
    assert await table_count.inner_text() == "3"
    await page.unroute(re.compile(r"/api/v1/studies\?"), too_many)

    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")):
        await page.clock.fast_forward(30_000)
    await expect_text(table_count, "4")


async def test_html_in_titles_file_names_and_cells_is_shown_as_text(page, researcher: Researcher):
    """Study titles, file names and reported cell values are the users' text: none becomes markup
    (an <img onerror> that ran would also be a CSP refusal, failing the page fixture)."""
    title = "<img src=x onerror=alert(1)>"
    cell = "<img src=x onerror=alert(2)>"
    filename = "<img src=x onerror=alert(3)>.csv"
    study_url = f"/api/v1/studies/{researcher.study['id']}"
    renamed = researcher.api.patch(study_url, json={"title": title}, headers=researcher.headers)
    assert renamed.status_code == 200, renamed.text
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(page, researcher.email)

    await expect_text(page.locator("#studies-table tbody tr td").nth(1), title)
    await open_study(page, researcher)
    await expect_text(page.locator("#study-title"), f"{researcher.study['code']} — {title}")
    await page.get_by_label("File (CSV, TSV or XLSX)").set_input_files(
        {"name": filename, "mimeType": "text/csv", "buffer": (HEADER + f"S-50,blood,{cell}\r\n").encode()}
    )
    await page.get_by_role("button", name="Upload", exact=True).click()
    errors = page.locator("#report-errors tbody tr")
    await errors.first.wait_for()
    assert (await cells(errors.first))[:3] == ["2", "volume [mL]", cell]
    await expect_text(page.locator("#uploads-table tbody tr td").first, filename)

    assert await page.locator("main img, main script").count() == 0
    assert dialogs == []


async def test_sign_out_from_a_study_leaves_nothing_of_it_in_the_page(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    await page.get_by_label("File (CSV, TSV or XLSX)").set_input_files(
        {"name": "chosen.csv", "mimeType": "text/csv", "buffer": HEADER.encode()}
    )

    await page.get_by_role("button", name="Sign out").click()

    await expect_text(page.locator("#sign-in-message"), "You are signed out.")
    assert await page.locator("#study-title").text_content() == ""
    assert await page.locator("#generated-at").text_content() == ""
    assert await page.evaluate("document.getElementById('upload-file').files.length") == 0
    assert researcher.study["code"] not in await page.locator("body").text_content()


# Every form control named by a <label> or aria-label; every button by its text.
UNLABELLED_CONTROLS = """
[...document.querySelectorAll("input, select, textarea, progress, meter, button")]
  .filter((control) => control.tagName === "BUTTON"
    ? !control.textContent.trim()
    : !(control.labels && control.labels.length) && !control.getAttribute("aria-label"))
  .map((control) => control.outerHTML)
"""


async def test_every_form_control_has_a_label(page, researcher: Researcher):
    await page.goto("/")
    await page.locator("#sign-in").wait_for()
    assert await page.evaluate(UNLABELLED_CONTROLS) == []
    await sign_in(page, researcher.email)
    await open_study(page, researcher)
    await page.locator("#completeness-table meter").first.wait_for()
    assert await page.evaluate(UNLABELLED_CONTROLS) == []


async def test_sign_out_with_an_expired_access_token_still_ends_the_session(page, researcher: Researcher):
    """A laptop that slept past the access token's expiry: the logout answers 401, and the page
    must refresh and log out again rather than leave its session alive on the server."""
    await sign_in(page, researcher.email)
    assert len(researcher.get("/auth/sessions")) == 2  # the researcher's own and the page's
    expired = {
        "status": 401,
        "title": "Unauthorized",
        "detail": "The token has expired.",
        "code": "TOKEN_EXPIRED",
    }
    answered: list[int] = []

    async def expired_once(route) -> None:
        if answered:
            await route.continue_()
            return
        answered.append(401)
        await route.fulfill(status=401, content_type="application/problem+json", json=expired)

    await page.route(re.compile(r"/api/v1/auth/logout$"), expired_once)

    await page.get_by_role("button", name="Sign out").click()

    await expect_text(page.locator("#sign-in-message"), "You are signed out.")
    assert answered == [401]
    assert len(researcher.get("/auth/sessions")) == 1


async def test_an_answer_arriving_after_sign_out_is_not_drawn(page, researcher: Researcher):
    """A refresh the server answered just before the sign-out, its answer still on the way: its
    figures must not land in the page after the sign-out cleared it."""
    await sign_in(page, researcher.email)
    await expect_text(figure_of(page, "samples"), "3")
    added = researcher.api.post(  # so the refresh is answered with new figures, not a 304
        f"/api/v1/studies/{researcher.study['id']}/samples",
        json={"sample_id": "S-32", "values": {"tissue": "saliva"}},
        headers=researcher.headers,
    )
    assert added.status_code == 201, added.text
    held, release = anyio.Event(), anyio.Event()

    async def hold_the_answer(route) -> None:
        answer = await route.fetch()
        assert answer.status == 200
        held.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route(re.compile(r"/api/v1/dashboard/summary$"), hold_the_answer)
    await page.get_by_role("button", name="Refresh").click()
    await held.wait()
    await page.get_by_role("button", name="Sign out").click()
    await expect_text(page.locator("#sign-in-message"), "You are signed out.")

    async with page.expect_response(re.compile(r"/api/v1/dashboard/summary$")):
        release.set()
    await page.wait_for_timeout(500)  # for the page to handle the answer
    assert await page.locator("#cards article, #studies-table tbody tr, #activity li").count() == 0


# The y axis' top tick the page's chart draws for a tallest bar of each count.
CHART_TOPS = """async (counts) => {
  const { drawBarChart } = await import("/assets/chart.js");
  return counts.map((count) => {
    const box = document.createElement("div");
    drawBarChart(box, [{ label: "day", count }], { xTitle: "x", yTitle: "y", description: "d" });
    const ticks = [...box.querySelectorAll("text.tick")].map((tick) => Number(tick.textContent));
    return Math.max(...ticks.filter((tick) => !Number.isNaN(tick)));
  });
}"""


async def test_the_charts_scale_lets_the_tallest_bar_fill_at_least_40_percent_of_it(page):
    await page.goto("/")
    counts = [1, 5, 8, 9, 10, 41, 100, 101, 250, 1000, 12_345]

    tops = await page.evaluate(CHART_TOPS, counts)

    for count, top in zip(counts, tops, strict=True):
        assert count <= top <= max(2.5 * count, 4), (count, top)


async def test_a_member_removed_while_viewing_a_study_is_taken_off_its_figures(
    page, researcher: Researcher, stack_smtp
):
    """The study's figures stay on screen no longer than the next refresh after the removal."""
    http = researcher.api
    viewer, viewer_headers = new_viewer(researcher, stack_smtp)
    members = f"/api/v1/studies/{researcher.study['id']}/members"
    viewer_id = http.get("/api/v1/auth/me", headers=viewer_headers).json()["id"]
    await sign_in(page, viewer)
    await open_study(page, researcher)
    await expect_text(figure_of(page, "study-samples"), "3")

    removed = http.delete(f"{members}/{viewer_id}", headers=researcher.headers)
    assert removed.status_code == 204, removed.text
    await page.get_by_role("button", name="Refresh").click()

    await page.locator("#overview").wait_for()
    assert await page.locator("#study").is_hidden()
    await expect_text(page.locator("#overview-message"), re.compile(r"No such study"))
    await expect_text(figure_of(page, "samples"), "0")
    assert await page.locator("#studies-table tbody tr").count() == 0


async def test_a_studies_list_longer_than_its_page_says_so(page, researcher: Researcher):
    """The table shows one page of studies (100): when the list holds more, the page says so."""

    async def with_more_studies(route) -> None:
        answer = await route.fetch()
        listed = await answer.json()
        assert listed["total"] == 1
        await route.fulfill(response=answer, json={**listed, "total": 150})

    more = page.locator("#studies-more")
    await page.route(re.compile(r"/api/v1/studies\?"), with_more_studies)
    await sign_in(page, researcher.email)
    await expect_text(more, "Showing the first 1 of 150 studies; search or filter to find the others.")

    await page.unroute(re.compile(r"/api/v1/studies\?"), with_more_studies)
    await page.get_by_label("Search code or title").fill(researcher.study["code"])
    await more.wait_for(state="hidden")
