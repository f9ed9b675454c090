"""The workspace in a real browser (Chromium through nginx and gunicorn): each view's own URL (deep
links, reload, Back), creating a study with its fields and activating it, the server's messages
next to the control they name, and a viewer who sees no control they may not use.

The browser, its console-error check (a CSP refusal or script error fails the test) and the
researcher with a three-sample study are test_dashboard_page.py's fixtures, imported.
"""

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from src.middleware import API_CSP, DASHBOARD_CSP
from src.page import PAGE_DIR
from tests.conftest import assert_problem, bearer
from tests.stack import test_dashboard_page as dashboard_page
from tests.stack.conftest import (
    INVITATION_SUBJECT,
    STACK_PASSWORD,
    mails_to,
    register_and_sign_in,
    researcher_with_study,
)
from tests.stack.test_dashboard_page import (
    ANSWERED_WITH_AN_ERROR,
    FIELDS,
    HEADER,
    WAIT_MS,
    Researcher,
    cells,
    downloaded,
    expect_text,
    new_viewer,
    save_screenshot,
    sign_in,
)

pytestmark = pytest.mark.stack

# The dashboard tests' fixtures, used here by name: the browser, a tab whose console errors fail the
# test, a researcher owning a study of three samples.
browser = dashboard_page.browser
page = dashboard_page.page
researcher = dashboard_page.researcher

# Transferred JS and CSS of the page (gzipped by nginx): the budget the issue sets.
PAGE_WEIGHT_BUDGET = 100 * 1024


def study_url(study_id: str, tail: str = "") -> str:
    return f"/studies/{study_id}{tail}"


async def expect_url(page, path: str) -> None:
    from playwright.async_api import expect

    await expect(page).to_have_url(re.compile(re.escape(path) + r"(\?.*)?$"), timeout=WAIT_MS)


def visible_buttons(page, scope: str):
    return page.locator(f"{scope} button:visible")


async def test_a_deep_link_survives_reload_and_back_and_forward(page, researcher: Researcher, capsys):
    study_id = researcher.study["id"]
    loaded: list = []
    page.on("response", lambda response: loaded.append(response) if "/assets/" in response.url else None)
    await sign_in(page, researcher.email)
    await print_page_weight(loaded, capsys)  # read before any reload: the bodies go with their page
    await page.get_by_role("button", name=researcher.study["code"]).click()
    await expect_url(page, study_url(study_id))
    await page.locator("#study-tabs").get_by_role("link", name="Samples").click()
    await expect_url(page, study_url(study_id, "/samples"))
    rows = page.locator("#samples-table tbody tr")
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (3 samples)")

    async with page.expect_response(re.compile(r"/api/v1/auth/refresh$")) as refreshed:
        await page.reload()
    assert (await refreshed.value).status == 200  # the session, from the refresh token
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (3 samples)")
    assert await rows.count() == 3
    tab = page.locator("#study-tabs a[aria-current=page]")
    await expect_text(tab, "Samples")

    await page.get_by_role("link", name="S-1").click()
    sample = researcher.api.get(
        f"/api/v1/studies/{study_id}/samples?q=S-1", headers=researcher.headers
    ).json()["items"][0]
    await expect_url(page, study_url(study_id, f"/samples/{sample['id']}"))
    await expect_text(page.locator("#sample-title"), "Sample S-1")
    await page.go_back()
    await expect_url(page, study_url(study_id, "/samples"))
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (3 samples)")
    await page.go_back()
    await expect_url(page, study_url(study_id))
    await page.locator("#study-cards").first.wait_for()
    await page.go_back()
    await expect_url(page, "/")
    await page.locator("#overview").wait_for()
    assert await page.locator("#study").is_hidden()
    await page.go_forward()
    await expect_url(page, study_url(study_id))
    await expect_text(
        page.locator("#study-title"), f"{researcher.study['code']} — {researcher.study['title']}"
    )

    await save_screenshot(page, "workspace-study.png", capsys)


async def expect_arrival(page, heading: str, name: str) -> None:
    """The focus is on the view's heading (`heading`, an id), and the view's name was announced and
    is the tab's title."""
    from playwright.async_api import expect

    await expect(page.locator(f"#{heading}")).to_be_focused(timeout=WAIT_MS)
    await expect_text(page.locator("#view-announcer"), name)
    assert await page.title() == f"{name} — Studybase"


async def test_a_navigation_moves_the_focus_to_the_new_views_heading_and_says_where(
    page, researcher: Researcher
):
    """After a link, Back or Forward, keyboard and screen-reader users go on from the top of the new
    view (its heading, announced), not from a link that is gone; a page load leaves the focus alone."""
    study_id, code = researcher.study["id"], researcher.study["code"]
    await sign_in(page, researcher.email)
    await page.goto(study_url(study_id, "/samples"))
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (3 samples)")
    assert await page.evaluate("document.activeElement === document.body")
    assert await page.title() == f"Samples — {code} — Studybase"

    await page.get_by_role("link", name="S-1").click()
    await expect_text(page.locator("#sample-title"), "Sample S-1")
    await expect_arrival(page, "study-title", f"Sample S-1 — {code}")
    await page.keyboard.press("Tab")  # on from the heading: the study's tabs come next
    assert await page.evaluate(FOCUSED_NAME) == "Overview"

    await page.go_back()
    await expect_url(page, study_url(study_id, "/samples"))
    await expect_arrival(page, "study-title", f"Samples — {code}")

    # Who moves the focus while the view still loads keeps it there.
    members, loaded = re.compile(r"/members\?"), asyncio.Event()

    async def held(route) -> None:
        await loaded.wait()
        await route.continue_()

    await page.route(members, held)
    await page.locator("#study-tabs").get_by_role("link", name="Members").click()
    back = page.get_by_role("button", name="← All studies")
    await back.focus()
    loaded.set()
    await page.locator("#members-table tbody tr").first.wait_for()
    await expect_text(page.locator("#view-announcer"), f"Members — {code}")
    assert await page.evaluate(FOCUSED_NAME) == "← All studies"
    await page.unroute(members, held)

    await back.click()
    await expect_arrival(page, "overview-title", "Overview")
    await page.go_back()
    await expect_arrival(page, "study-title", f"Members — {code}")
    await page.go_forward()
    await expect_arrival(page, "overview-title", "Overview")
    await page.get_by_role("link", name="New study").click()
    await expect_arrival(page, "new-study-title", "New study")

    await page.get_by_role("button", name="Sign out").click()
    await expect_text(page.locator("#sign-in-message"), "You are signed out.")
    assert (await page.title(), await page.locator("#view-announcer").text_content()) == ("Studybase", "")


async def print_page_weight(responses, capsys) -> None:
    """What the page's scripts and styles cost to transfer (bodies as sent: gzipped), first load only."""
    first = {}
    for response in responses:
        if response.url.endswith((".js", ".css")) and response.status == 200:
            first.setdefault(response.url, response)
    assert len(first) >= 10  # every module of the page, and its style
    sizes = [(await response.request.sizes())["responseBodySize"] for response in first.values()]
    plain = [len(await response.body()) for response in first.values()]  # unpacked
    encodings = {response.headers.get("content-encoding") for response in first.values()}
    with capsys.disabled():
        print(
            f"\n[page weight] {len(first)} JS/CSS files: {sum(sizes) / 1024:.1f} KB transferred "
            f"({sum(plain) / 1024:.1f} KB unpacked), content-encoding {sorted(map(str, encodings))}"
        )
    assert "gzip" in encodings
    assert sum(sizes) < PAGE_WEIGHT_BUDGET


async def test_a_deep_link_opened_signed_out_lands_there_after_sign_in(page, researcher: Researcher):
    settings = study_url(researcher.study["id"], "/settings")
    await page.goto(settings)
    await page.get_by_label("Email", exact=True).fill(researcher.email)
    await page.get_by_label("Password", exact=True).fill(STACK_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()

    await page.locator("#study-settings").wait_for()
    await expect_url(page, settings)
    await expect_text(page.locator("#lifecycle-now"), re.compile(r"^Draft:"))


async def test_a_link_to_a_study_that_is_not_yours_says_so_on_the_overview(page, researcher: Researcher):
    await sign_in(page, researcher.email)
    await page.goto(study_url(str(uuid.uuid4()), "/samples"))

    await expect_text(page.locator("#overview-message"), re.compile(r"No such study"))
    await expect_url(page, "/")


async def test_a_malformed_escape_in_a_study_link_lands_on_the_overview(page, researcher: Researcher):
    """/studies/%E0 is served the page (it looks like a study's path) but names no view: the page
    shows the overview instead of stopping on a URIError (any script error fails the test)."""
    await sign_in(page, researcher.email)
    await page.goto("/studies/%E0")

    await page.locator("#cards article").first.wait_for()
    await expect_url(page, "/")


async def fill_field(page, index: int, **values) -> None:
    row = page.locator("#new-study-fields fieldset").nth(index)
    for key, value in values.items():
        control = row.locator(f'[data-key="{key}"]')
        if key == "type":
            await control.select_option(value)
        elif key == "required":
            await control.set_checked(value)
        else:
            await control.fill(value)


async def described_by(control) -> str:
    """The text of the messages a control is described by (aria-describedby), as a screen reader reads it."""
    ids = (await control.get_attribute("aria-describedby") or "").split()
    return " ".join([await control.page.locator(f"#{note}").inner_text() for note in ids])


async def test_a_researcher_creates_a_study_with_fields_and_activates_it(page, http: httpx.Client, capsys):
    email = f"creator-{uuid.uuid4().hex[:8]}@example.org"
    creator = Researcher(email=email, api=http, headers=bearer(register_and_sign_in(http, email)), study={})
    code = f"WS-{uuid.uuid4().hex[:8]}"
    await sign_in(page, email)
    await page.get_by_role("link", name="New study").click()
    await expect_url(page, "/studies/new")
    form = page.locator("#new-study")
    await form.get_by_label("Code (2 to 32 letters, digits and hyphens)").fill(code)
    await form.get_by_label("Title", exact=True).fill("Workspace study")
    await form.get_by_label("Description").fill("Made in the browser.")
    for _ in range(3):
        await page.get_by_role("button", name="Add field").click()
    await fill_field(page, 0, name="tissue", type="choice", required=True, choices="blood\nsaliva")
    await fill_field(page, 1, name="volume", type="number", unit="mL", min="10", max="1")
    await fill_field(page, 2, name="label", type="text", pattern="[A-Z]+", max_length="20")

    await page.get_by_role("button", name="Create study").click()

    # The server's own message, beside the control it names; nothing was created.
    volume_name = page.locator("#new-study-fields fieldset").nth(1).locator('[data-key="name"]')
    await expect_text(page.locator("#new-study-fields .field-error"), "volume: min must not be above max")
    assert await described_by(volume_name) == "volume: min must not be above max"
    assert await volume_name.get_attribute("aria-invalid") == "true"
    assert creator.get("/studies")["total"] == 0

    await fill_field(page, 1, min="0", max="100")
    await page.get_by_role("button", name="Create study").click()
    await page.locator("#study-settings").wait_for()
    (created,) = creator.get("/studies")["items"]
    await expect_url(page, study_url(created["id"], "/settings"))
    study = creator.get(f"/studies/{created['id']}")
    assert study["description"] == "Made in the browser."
    assert study["sample_fields"] == [
        {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]},
        {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0, "max": 100},
        {"name": "label", "type": "text", "required": False, "max_length": 20, "pattern": "[A-Z]+"},
    ]

    await page.get_by_role("button", name="Activate").click()
    dialog = page.locator("#confirm")
    await expect_text(
        dialog.locator("#confirm-text"),
        re.compile(r"^Active: editors and owners add, edit and upload samples"),
    )
    await dialog.get_by_role("button", name="Activate").click()
    await expect_text(page.locator("#study-standing"), "Active · your role: Owner")
    assert creator.get(f"/studies/{created['id']}")["status"] == "active"
    await save_screenshot(page, "workspace-settings.png", capsys)

    await page.get_by_role("button", name="← All studies").click()
    await expect_url(page, "/")
    row = page.locator(f'#studies-table tbody tr[data-study-id="{created["id"]}"]')
    await expect_text(row.locator("td").nth(2), "Active")


async def test_incompatible_field_changes_show_the_servers_messages_beside_each_field(
    page, researcher: Researcher
):
    """The study has samples: removing a choice they use is refused (409), each change's message next
    to its field, and nothing changed."""
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], "/settings"))
    tissue = page.locator("#fields-editor fieldset").nth(0)
    await tissue.locator('[data-key="choices"]').fill("saliva")
    volume = page.locator("#fields-editor fieldset").nth(1)
    await volume.locator('[data-key="min"]').fill("2")

    await page.get_by_role("button", name="Save fields").click()

    tissue_name = tissue.locator('[data-key="name"]')
    await expect_text(tissue.locator(".field-error"), "tissue: choice blood removed")
    assert await described_by(tissue_name) == "tissue: choice blood removed"
    await expect_text(volume.locator(".field-error"), "volume: min raised to 2")
    assert researcher.get(f"/studies/{researcher.study['id']}")["sample_fields"] == FIELDS


async def test_a_viewer_sees_the_study_but_no_control_to_change_it(
    page, researcher: Researcher, stack_smtp, capsys
):
    http = researcher.api
    viewer, _ = new_viewer(researcher, stack_smtp)
    researcher.upload("viewer.csv", HEADER + "V-1,blood,1\r\n", 201)
    activated = http.post(
        f"/api/v1/studies/{researcher.study['id']}/status",
        json={"status": "active"},
        headers=researcher.headers,
    )
    assert activated.status_code == 200, activated.text
    await sign_in(page, viewer)
    await page.goto(study_url(researcher.study["id"], "/settings"))
    await expect_text(page.locator("#study-standing"), "Active · your role: Viewer · read-only for you")

    # The facts and the fields, read; not one button or form control in the whole settings view.
    await expect_text(page.locator("#details-facts dd").first, researcher.study["code"])
    await expect_text(page.locator("#fields-table tbody tr").first.locator("td").first, "tissue")
    assert await page.locator("#study-settings :is(button, input, select, textarea):visible").count() == 0
    assert await serious_violations(page) == []
    await save_screenshot(page, "workspace-viewer-settings.png", capsys)

    await page.locator("#study-tabs").get_by_role("link", name="Overview").click()
    await page.locator('[data-figure="study-samples"]').wait_for()
    assert await page.locator("#upload-form").is_hidden()
    await expect_text(
        page.locator("#upload-read-only"), re.compile(r"^Uploading needs the editor or owner role")
    )
    buttons = await visible_buttons(page, "#study").all_inner_texts()
    downloads = {"Template (CSV)", "Template (XLSX)", "Export samples (CSV)", "File"}  # "File": an upload's
    assert set(buttons) <= {"← All studies", *downloads}

    await page.locator("#study-tabs").get_by_role("link", name="Samples").click()
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (4 samples)")
    await page.get_by_role("link", name="S-2").click()
    await expect_text(page.locator("#sample-facts dt:has-text('tissue') + dd"), "blood")
    assert await visible_buttons(page, "#study-sample").count() == 0
    assert await page.locator("#study-sample :is(input, select, textarea):visible").count() == 0
    assert await serious_violations(page) == []
    await page.locator("#study-tabs").get_by_role("link", name="Members").click()
    await expect_text(page.locator("#members-table tbody tr", has_text=viewer).locator("td").nth(2), "Viewer")

    # The files: read, reports opened, downloads offered; nothing to delete, no upload form.
    await page.locator("#study-tabs").get_by_role("link", name="Files").click()
    files = page.locator("#files-table tbody tr")
    await expect_text(files.first.locator("td").first, "viewer.csv")
    assert await page.locator("#upload-form").is_hidden()
    assert set(await files.first.locator("button:visible").all_inner_texts()) == {"Report", "File"}
    await files.first.get_by_role("button", name="Report").click()
    await expect_text(page.locator("#upload-result p").first, re.compile(r"^Imported viewer\.csv: 1 created"))
    assert await serious_violations(page) == []


async def test_an_editor_sees_the_editors_controls_and_none_of_the_owners(
    page, researcher: Researcher, stack_smtp
):
    """Between the viewer and the owner: samples, uploads, details and fields are the editor's; the
    lifecycle, the members, the invitations and deleting files are not, so none of those shows."""
    editor, _ = new_viewer(researcher, stack_smtp)
    (member,) = [
        m
        for m in researcher.get(f"/studies/{researcher.study['id']}/members")["items"]
        if m["email"] == editor
    ]
    promoted = researcher.api.patch(
        f"/api/v1/studies/{researcher.study['id']}/members/{member['user_id']}",
        json={"role": "editor"},
        headers=researcher.headers,
    )
    assert promoted.status_code == 200, promoted.text
    researcher.upload("editor.csv", HEADER + "E-1,blood,1\r\n", 201)
    await sign_in(page, editor)

    await page.goto(study_url(researcher.study["id"], "/settings"))
    await expect_text(page.locator("#study-standing"), "Draft · your role: Editor")
    await page.locator("#fields-editor fieldset").first.wait_for()
    assert await page.locator("#details-form").is_visible()
    assert await visible_buttons(page, "#lifecycle-moves").count() == 0
    assert await page.get_by_role("button", name="Delete this draft").count() == 0

    await page.locator("#study-tabs").get_by_role("link", name="Members").click()
    await expect_text(page.locator("#members-table tbody tr", has_text=editor).locator("td").nth(2), "Editor")
    assert await page.locator("#study-members :is(button, select, input):visible").count() == 0

    await page.locator("#study-tabs").get_by_role("link", name="Files").click()
    await expect_text(page.locator("#files-table tbody tr").first.locator("td").first, "editor.csv")
    assert await page.locator("#upload-form").is_visible()
    assert await page.locator("#files-table").get_by_role("button", name=re.compile("^Delete")).count() == 0

    await page.locator("#study-tabs").get_by_role("link", name="Samples").click()
    await page.get_by_role("link", name="E-1").click()
    await page.locator("#sample-form").wait_for()
    assert await page.get_by_role("button", name="Delete this sample").is_visible()


@pytest.mark.parametrize(
    "view_path",
    [
        "/studies/new",
        *(
            f"/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70{tail}"
            for tail in ["", "/samples", "/samples/0d8e7f6a-5b4c", "/files", "/members", "/settings"]
        ),
    ],
)
def test_nginx_serves_the_page_at_each_view_and_keeps_the_apis_404_beside_them(http: httpx.Client, view_path):
    view = http.get(view_path)
    beside = http.get(f"{view_path}/no/view")
    api_missing = http.get(f"/api/v1/nothing{view_path}")

    assert view.status_code == 200
    assert view.text == (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    assert view.headers.get_list("content-security-policy") == [DASHBOARD_CSP]
    for missing in (beside, api_missing):
        assert_problem(missing, 404, "NOT_FOUND")
        assert missing.headers["content-security-policy"] == API_CSP


def first_cells(page):
    return page.locator("#samples-table tbody tr td:first-child")


async def test_the_samples_table_pages_sorts_searches_and_filters_on_the_server(page, researcher: Researcher):
    rows = [f"T-{n:03},{'saliva' if n % 3 == 0 else 'blood'},{n}\r\n" for n in range(57)]
    researcher.upload("more.csv", HEADER + "".join(rows), 201)
    samples = f"/api/v1/studies/{researcher.study['id']}/samples"
    stored = researcher.api.get(f"{samples}?q=T-010", headers=researcher.headers).json()["items"][0]
    moved = researcher.api.patch(
        f"{samples}/{stored['id']}", json={"status": "stored"}, headers=researcher.headers
    )
    assert moved.status_code == 200, moved.text
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], "/samples"))
    position = page.locator("#samples-position")
    await expect_text(position, "Page 1 of 2 (60 samples)")
    assert await first_cells(page).count() == 50
    assert await first_cells(page).first.inner_text() == "S-0"

    async with page.expect_response(re.compile(r"/samples\?.*page=2")) as second:
        await page.get_by_role("button", name="Next page").click()
    assert (await second.value).status == 200
    await expect_text(position, "Page 2 of 2 (60 samples)")
    assert await first_cells(page).count() == 10
    assert "page=2" in page.url

    await page.get_by_role("button", name="Sample id").click()
    await expect_text(first_cells(page).first, "T-056")
    assert await page.locator("#samples-table th[aria-sort]").get_attribute("aria-sort") == "descending"
    await expect_text(position, "Page 1 of 2 (60 samples)")  # a new order starts at page 1

    await page.get_by_label("Sample id starts with").fill("t-05")
    await expect_text(position, "Page 1 of 1 (7 samples)")
    await page.get_by_label("Sample id starts with").fill("")
    await expect_text(position, "Page 1 of 2 (60 samples)")

    await page.get_by_label("Show").select_option("stored")
    await expect_text(position, re.compile(r"^Page 1 \((at least )?1 samples\)$|^Page 1 of 1 \(1 samples\)$"))
    await expect_text(first_cells(page).first, "T-010")
    await page.get_by_label("Show").select_option("")

    await page.get_by_label("Field", exact=True).select_option("tissue")
    await page.get_by_label("equals").fill("saliva")
    await page.get_by_role("button", name="Add filter").click()
    await expect_text(page.locator("#samples-filters li"), "tissue = saliva remove")
    expected = researcher.get(f"/studies/{researcher.study['id']}/samples?field.tissue=saliva")["total"]
    await expect_text(position, re.compile(rf"\b{expected} samples\)$"))
    assert "field.tissue=saliva" in page.url

    await page.reload()  # the filters live in the URL
    await expect_text(page.locator("#samples-filters li"), "tissue = saliva remove")
    await expect_text(position, re.compile(rf"\b{expected} samples\)$"))

    await page.get_by_label("Field", exact=True).select_option("volume")
    await page.get_by_label("equals").fill("a lot")
    await page.get_by_role("button", name="Add filter").click()
    await expect_text(
        page.locator("#samples-message"), re.compile(r"field\.volume: volume must be a finite number$")
    )


async def test_an_edit_that_lost_a_race_shows_their_version_and_reapplies_mine(page, researcher: Researcher):
    samples = f"/api/v1/studies/{researcher.study['id']}/samples"
    (sample,) = researcher.api.get(f"{samples}?q=S-1", headers=researcher.headers).json()["items"]
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], f"/samples/{sample['id']}"))
    volume = page.get_by_label("volume [mL]")
    await volume.fill("-5")
    await page.get_by_role("button", name="Save sample").click()
    await expect_text(page.locator("#sample-form .field-error"), "must be at least 0")
    assert await described_by(volume) == "must be at least 0"

    await volume.fill("7")
    theirs = researcher.api.patch(
        f"{samples}/{sample['id']}", json={"values": {"tissue": "saliva"}}, headers=researcher.headers
    )
    assert theirs.status_code == 200, theirs.text
    await page.get_by_role("button", name="Save sample").click()

    conflict = page.locator("#sample-conflict")
    await conflict.wait_for()
    await expect_text(page.locator("#sample-mine li"), "volume → 7")
    facts = page.locator("#sample-facts")
    await expect_text(facts.locator("dt:has-text('tissue') + dd"), "saliva")  # theirs, as it is now
    await expect_text(facts.locator("dt:has-text('volume') + dd"), "1")
    await page.get_by_role("button", name="Apply my changes to their version").click()

    await expect_text(facts.locator("dt:has-text('volume') + dd"), "7")
    assert await conflict.is_hidden()
    now = researcher.get(f"/studies/{researcher.study['id']}/samples/{sample['id']}")
    assert (now["values"], now["version"]) == ({"tissue": "saliva", "volume": 7}, 3)


async def test_a_sample_lists_its_own_activity_by_full_name_and_the_overview_names_the_study(
    page, researcher: Researcher
):
    """The sample's view lists its entries only, newest first, five at a time; the editor is named by
    full name (the address as the tooltip). A sample an upload created lists that file's import (an
    import is one entry per file), and once an upsert changed it, that file's too. The overview's
    recent activity names the study."""
    renamed = researcher.api.patch(
        "/api/v1/auth/me", json={"full_name": "Ada Lovelace"}, headers=researcher.headers
    )
    assert renamed.status_code == 200, renamed.text
    study_id = researcher.study["id"]
    (sample,) = researcher.get(f"/studies/{study_id}/samples?q=S-1")["items"]
    for volume in (2, 3, 4, 5, 6):  # with its creation, six entries: a first page of five and "More"
        edited = researcher.api.patch(
            f"/api/v1/studies/{study_id}/samples/{sample['id']}",
            json={"values": {"volume": volume}},
            headers=researcher.headers,
        )
        assert edited.status_code == 200, edited.text
    await sign_in(page, researcher.email)
    await page.goto(study_url(study_id, f"/samples/{sample['id']}"))
    await page.get_by_label("volume [mL]").fill("7")
    await page.locator("#sample-edit-status").select_option("received")
    await page.get_by_role("button", name="Save sample").click()

    entries = page.locator("#sample-activity li")
    newest = entries.first
    await expect_text(newest, re.compile(r"— Ada Lovelace: sample updated S-1 \(status, volume\)$"))
    assert await newest.locator(".who").get_attribute("title") == researcher.email
    assert await entries.count() == 5
    await page.get_by_role("button", name="More", exact=True).click()
    await expect_text(entries.last, re.compile(r"Ada Lovelace: sample created S-1$"))
    assert await entries.count() == 7  # this sample's only: the study's other samples are not listed
    assert await page.get_by_role("button", name="More", exact=True).is_hidden()

    await page.goto("/")
    first = page.locator("#activity li").first
    await expect_text(
        first, re.compile(rf"Ada Lovelace: sample updated S-1 in {re.escape(researcher.study['code'])}$")
    )
    assert await first.locator(".study").get_attribute("title") == researcher.study["title"]

    researcher.upload("week47.csv", HEADER + "F-1,blood,1\r\nF-2,saliva,2\r\n", 201)
    (from_file,) = researcher.get(f"/studies/{study_id}/samples?q=F-2")["items"]
    await page.goto(study_url(study_id, f"/samples/{from_file['id']}"))
    await expect_text(entries.first, re.compile(r"— Ada Lovelace: sample file imported week47\.csv$"))
    assert await entries.count() == 1
    # An upsert that changes it: the log also lists the last file whose import changed it.
    updated = researcher.api.post(
        f"/api/v1/studies/{study_id}/sample-files",
        files={"file": ("week48.csv", (HEADER + "F-2,blood,2\r\n").encode(), "text/csv")},
        data={"mode": "upsert"},
        headers=researcher.headers,
    )
    assert updated.status_code == 201, updated.text
    await page.reload()
    await expect_text(entries.first, re.compile(r"— Ada Lovelace: sample file imported week48\.csv$"))
    await expect_text(entries.nth(1), re.compile(r"sample file imported week47\.csv$"))
    assert await entries.count() == 2


async def test_an_owner_edits_the_details_and_deletes_only_a_draft_without_samples(
    page, researcher: Researcher
):
    http = researcher.api
    study_id = researcher.study["id"]
    await sign_in(page, researcher.email)
    await page.goto(study_url(study_id, "/settings"))
    details = page.locator("#details-form")
    await details.get_by_label("Title").fill("Renamed in the browser")
    await page.get_by_role("button", name="Save details").click()
    await expect_text(page.locator("#study-title"), f"{researcher.study['code']} — Renamed in the browser")
    assert researcher.get(f"/studies/{study_id}")["title"] == "Renamed in the browser"

    # Someone renames it meanwhile: mine is refused (412), theirs shown.
    theirs = http.patch(f"/api/v1/studies/{study_id}", json={"title": "Theirs"}, headers=researcher.headers)
    assert theirs.status_code == 200, theirs.text
    await details.get_by_label("Title").fill("Mine")
    await page.get_by_role("button", name="Save details").click()
    await expect_text(page.locator("#details-message"), re.compile(r"^Someone changed this study meanwhile"))
    assert await details.get_by_label("Title").input_value() == "Theirs"
    assert researcher.get(f"/studies/{study_id}")["title"] == "Theirs"

    # A draft with samples cannot be deleted: the server's reason, beside the button.
    await page.get_by_role("button", name="Delete this draft").click()
    await page.locator("#confirm").get_by_role("button", name="Delete").click()
    not_deletable = re.compile(r"^Only a draft study without samples can be deleted")
    await expect_text(page.locator("#lifecycle-message"), not_deletable)
    assert http.get(f"/api/v1/studies/{study_id}", headers=researcher.headers).status_code == 200

    empty = researcher_with_study(http, "emptydraft")
    other = Researcher(email=empty.email, api=http, headers=empty.headers, study=empty.study)
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, other.email)
    await page.goto(study_url(other.study["id"], "/settings"))
    await page.get_by_role("button", name="Delete this draft").click()
    await expect_text(page.locator("#confirm-text"), re.compile(r"cannot be undone"))
    await page.locator("#confirm").get_by_role("button", name="Delete").click()

    await expect_text(page.locator("#overview-notice"), f"The draft {other.study['code']} was deleted.")
    await expect_url(page, "/")
    assert http.get(f"/api/v1/studies/{other.study['id']}", headers=other.headers).status_code == 404


async def test_the_workspace_views_fit_a_phone_screen(browser, stack, researcher: Researcher):
    """Wide tables scroll inside their box; nothing makes the page itself wider than the screen."""
    scrolls_in_its_box = """(table) => {
      const box = document.querySelector(table).closest(".table-wrap");
      return [getComputedStyle(box).overflowX, box.scrollWidth > box.clientWidth, box.clientWidth <= 375];
    }"""
    context = await browser.new_context(base_url=stack.base_url, viewport={"width": 375, "height": 740})
    try:
        phone = await context.new_page()
        phone.set_default_timeout(WAIT_MS)
        await sign_in(phone, researcher.email)
        views = {"/samples": "#samples-table tbody tr", "/settings": "#fields-editor fieldset"}
        for tail, ready in views.items():
            await phone.goto(study_url(researcher.study["id"], tail))
            await phone.locator(ready).first.wait_for()
            assert await phone.evaluate("document.documentElement.scrollWidth") <= 375, tail
        await phone.goto(study_url(researcher.study["id"], "/samples"))
        await phone.locator("#samples-table tbody tr").first.wait_for()
        assert await phone.evaluate(scrolls_in_its_box, "#samples-table") == ["auto", True, True]
        await phone.goto("/studies/new")
        await phone.get_by_role("button", name="Add field").click()
        await phone.locator("#new-study-fields fieldset").wait_for()
        assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        await context.close()


async def test_an_editor_adds_a_sample_and_deletes_it(page, researcher: Researcher):
    study_id = researcher.study["id"]
    await sign_in(page, researcher.email)
    await page.goto(study_url(study_id, "/samples"))
    await page.get_by_text("Add a sample").click()
    form = page.locator("#sample-new-form")
    await form.get_by_label("Id of the new sample").fill("s-1")  # taken, compared case-insensitively
    await form.get_by_label("tissue").select_option("saliva")
    await form.get_by_label("volume [mL]").fill("-3")
    await page.get_by_role("button", name="Add sample").click()
    await expect_text(form.locator(".field-error"), "must be at least 0")
    assert await described_by(form.get_by_label("volume [mL]")) == "must be at least 0"

    await form.get_by_label("volume [mL]").fill("2,5")  # the server reads a decimal comma
    await page.get_by_role("button", name="Add sample").click()
    taken = re.compile(r"^The study already has a sample with this sample_id")
    await expect_text(form.locator(".field-error"), taken)
    assert re.match(taken, await described_by(form.get_by_label("Id of the new sample")))

    await form.get_by_label("Id of the new sample").fill("N-1")
    await page.get_by_role("button", name="Add sample").click()
    await expect_text(page.locator("#sample-title"), "Sample N-1")
    (added,) = researcher.get(f"/studies/{study_id}/samples?q=N-1")["items"]
    assert added["values"] == {"tissue": "saliva", "volume": 2.5}
    await expect_url(page, study_url(study_id, f"/samples/{added['id']}"))

    await page.get_by_role("button", name="Delete this sample").click()
    await expect_text(page.locator("#confirm-text"), re.compile(r"activity log keeps a record"))
    await page.locator("#confirm").get_by_role("button", name="Delete").click()
    await expect_url(page, study_url(study_id, "/samples"))
    await expect_text(page.locator("#samples-position"), "Page 1 of 1 (3 samples)")
    assert researcher.get(f"/studies/{study_id}/samples?q=N-1")["total"] == 0


async def test_an_owner_changes_a_members_role_removes_them_and_cannot_demote_the_last_owner(
    page, researcher: Researcher, stack_smtp
):
    viewer, _ = new_viewer(researcher, stack_smtp)
    members = f"/studies/{researcher.study['id']}/members"
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], "/members"))
    await expect_text(page.locator("#members-rule"), re.compile(r"^A study keeps at least one owner"))
    theirs = page.locator("#members-table tbody tr", has_text=viewer)

    await theirs.get_by_role("combobox").select_option("editor")
    async with page.expect_response(re.compile(r"/members\?page_size=")):  # drawn again
        await theirs.get_by_role("button", name="Change role").click()
    roles = {member["email"]: member["role"] for member in researcher.get(members)["items"]}
    assert roles == {researcher.email: "owner", viewer: "editor"}

    mine = page.locator("#members-table tbody tr", has_text=researcher.email)
    await mine.get_by_role("combobox").select_option("viewer")
    await mine.get_by_role("button", name="Change role").click()
    await expect_text(mine.locator(".field-error"), re.compile(r"^A study must keep at least one owner"))
    assert researcher.get(members)["total"] == 2

    await theirs.get_by_role("button", name="Remove").click()
    await expect_text(page.locator("#confirm-text"), re.compile(r"will no longer see this study"))
    await page.locator("#confirm").get_by_role("button", name="Remove").click()
    await theirs.wait_for(state="detached")
    emails = page.locator("#members-table tbody tr td:nth-child(2)")
    assert await emails.all_inner_texts() == [researcher.email]
    assert [member["email"] for member in researcher.get(members)["items"]] == [researcher.email]


async def test_the_files_view_lists_every_upload_by_name_and_deletes_what_may_go(page, researcher):
    researcher.upload("more.csv", HEADER + "F-1,blood,1\r\n", 201)
    researcher.upload("bad.csv", HEADER + "F-2,saliva,-1\r\n", 422)
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], "/files"))
    rows = page.locator("#files-table tbody tr")
    await expect_text(page.locator("#files-position"), "Page 1 of 1 (2 files)")
    assert await cells_of(rows.nth(0)) == ["bad.csv", "Rejected", "insert", "Stack Tester"]
    assert await cells_of(rows.nth(1)) == ["more.csv", "Imported", "insert", "Stack Tester"]
    # When (as the page writes times), then rows, created, updated, rejected.
    for row, counts in [(rows.nth(0), ["1", "0", "0", "1"]), (rows.nth(1), ["1", "1", "0", "0"])]:
        cells_text = await row.locator("td").all_inner_texts()
        assert re.match(r"^\d{1,2} \w{3} \d{4}, \d\d:\d\d$", cells_text[4]), cells_text
        assert cells_text[5:9] == counts
    assert await page.locator("#uploads-table").is_hidden()  # the overview's recent uploads
    assert await page.locator("#upload-form").is_visible()

    # The rejected file's errors.csv, in the dialect chosen beside the form.
    await page.get_by_label("errors.csv written").select_option("excel-eu")
    _, errors_eu = await downloaded(page, rows.nth(0).get_by_role("button", name="errors.csv"))
    assert errors_eu.splitlines()[-1] == "2;volume [mL]: must be at least 0 (below_min);F-2;saliva;-1"

    await rows.nth(0).get_by_role("button", name="Report").click()  # the rejected file's errors
    errors = page.locator("#report-errors tbody tr")
    await errors.first.wait_for()
    assert await cells(errors.first) == ["2", "volume [mL]", "-1", "must be at least 0"]
    headline = page.locator("#upload-result p").first
    await expect_text(headline, "Nothing was imported: 1 of 1 rows have errors.")
    await rows.nth(1).get_by_role("button", name="Report").click()
    await expect_text(headline, re.compile(r"^Imported more\.csv: 1 created"))

    await rows.nth(1).get_by_role("button", name="Delete").click()
    await page.locator("#confirm").get_by_role("button", name="Delete").click()
    refused = re.compile(
        r"^Only a rejected, failed or cancelled file, or an imported one whose samples have all"
    )
    await expect_text(rows.nth(1).locator(".field-error"), refused)

    await rows.nth(0).get_by_role("button", name="Delete").click()
    await page.locator("#confirm").get_by_role("button", name="Delete").click()
    await expect_text(page.locator("#files-position"), "Page 1 of 1 (1 files)")
    files = researcher.get(f"/studies/{researcher.study['id']}/sample-files")["items"]
    assert [item["filename"] for item in files] == ["more.csv"]


async def cells_of(row) -> list[str]:
    """The first four cells of a files row: name, status, mode, who."""
    return (await row.locator("td").all_inner_texts())[:4]


async def test_sign_out_leaves_nothing_of_the_workspace_in_the_page(page, researcher: Researcher):
    study_id = researcher.study["id"]
    await sign_in(page, researcher.email)
    for tail, ready in [
        ("/settings", "#fields-editor fieldset"),
        ("/members", "#members-table tbody tr"),
        ("/samples", "#samples-table tbody tr"),
    ]:
        await page.goto(study_url(study_id, tail))
        await page.locator(ready).first.wait_for()
    await page.get_by_role("link", name="S-0").click()
    await expect_text(page.locator("#sample-title"), "Sample S-0")

    await page.get_by_role("button", name="Sign out").click()

    await expect_text(page.locator("#sign-in-message"), "You are signed out.")
    body = await page.locator("body").text_content()
    for left in (researcher.study["code"], researcher.email, "S-0", "tissue"):
        assert left not in body, left
    values = await page.evaluate("[...document.querySelectorAll('input, textarea')].map((box) => box.value)")
    assert researcher.study["code"] not in values
    await expect_url(page, "/")


async def test_an_owner_invites_resends_and_revokes_from_the_members_view(
    page, researcher: Researcher, stack_smtp
):
    invited = f"invited-{uuid.uuid4().hex[:8]}@example.org"
    await sign_in(page, researcher.email)
    await page.goto(study_url(researcher.study["id"], "/members"))
    panel = page.locator("#invitations-panel")
    await panel.get_by_label("Invite by email").fill(researcher.email)  # a member already
    await panel.get_by_role("button", name="Send invitation").click()
    already = re.compile(r"^This user is already a member of the study")
    await expect_text(panel.locator("#invite-form .field-error"), already)

    await panel.get_by_label("Invite by email").fill(invited)
    await panel.get_by_label("with the role").select_option("viewer")
    await panel.get_by_role("button", name="Send invitation").click()
    await expect_text(page.locator("#invite-done"), f"{invited} was mailed an invitation as viewer.")
    row = page.locator("#invitations-table tbody tr", has_text=invited)
    await expect_text(row.locator("td").nth(1), "Viewer")
    assert len(mails_to(stack_smtp, invited, 1, about=INVITATION_SUBJECT)) == 1

    await row.get_by_role("button", name="Send again").click()
    await expect_text(page.locator("#invite-done"), re.compile(r"was mailed again"))
    assert len(mails_to(stack_smtp, invited, 2, about=INVITATION_SUBJECT)) == 2

    await row.get_by_role("button", name="Revoke").click()
    await page.locator("#confirm").get_by_role("button", name="Revoke").click()
    await row.wait_for(state="detached")
    assert researcher.get(f"/studies/{researcher.study['id']}/invitations")["total"] == 0


# The accessible name of the focused element, as near as the page needs it: its aria-label, its
# label's text, or its own text.
FOCUSED_NAME = """(() => {
  const focused = document.activeElement;
  if (!focused || focused === document.body) return "";
  const label = focused.getAttribute("aria-label") || (focused.labels?.[0]?.textContent);
  return (label || focused.textContent || "").trim();
})()"""


async def expect_sample_values(owner: Researcher, study_id: str, sample_id: str, values: dict) -> None:
    """The API shows the sample with these values within a few seconds (the page saved it)."""
    found = None
    for _ in range(50):
        items = owner.get(f"/studies/{study_id}/samples?q={sample_id}")["items"]
        found = next((item["values"] for item in items if item["sample_id"] == sample_id), None)
        if found == values:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sample_id} has {found}, not {values}")


async def tab_to(page, name: str) -> None:
    """Presses Tab until the element named `name` has the focus (as a keyboard user would)."""
    for _ in range(200):
        await page.keyboard.press("Tab")
        if await page.evaluate(FOCUSED_NAME) == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_the_main_flow_works_with_the_keyboard_alone(page, http: httpx.Client, stack_smtp, tmp_path):
    """Sign in, create a study with a field, activate it, upload a sheet, browse the samples, edit
    one, add one and invite someone: Tab, typing, Space and Enter only (the file is picked in the
    browser's file chooser, which Space opens on the focused file input)."""
    email = f"keys-{uuid.uuid4().hex[:8]}@example.org"
    owner = Researcher(email=email, api=http, headers=bearer(register_and_sign_in(http, email)), study={})
    code = f"KEY-{uuid.uuid4().hex[:6]}"
    keys = page.keyboard
    await page.goto("/")
    await page.locator("#sign-in").wait_for()
    await tab_to(page, "Email")
    await keys.type(email)
    await tab_to(page, "Password")
    await keys.type(STACK_PASSWORD)
    await keys.press("Enter")
    await expect_text(page.locator("#signed-in-as"), email)

    await tab_to(page, "New study")
    await keys.press("Enter")
    await page.locator("#new-study").wait_for()
    await tab_to(page, "Code (2 to 32 letters, digits and hyphens)")
    await keys.type(code)
    await tab_to(page, "Title")
    await keys.type("Typed study")
    await tab_to(page, "Add field")
    await keys.press("Enter")  # the new field's name box takes the focus
    await keys.type("tissue")
    await tab_to(page, "Type")
    await keys.type("c")  # a closed select picks the first option starting with the letter: choice
    await tab_to(page, "Required")
    await keys.press("Space")
    await tab_to(page, "Choices, one per line")
    await keys.type("blood")
    await keys.press("Enter")
    await keys.type("saliva")
    await tab_to(page, "Create study")
    await keys.press("Enter")
    await page.locator("#study-settings").wait_for()
    (study,) = owner.get("/studies")["items"]
    assert owner.get(f"/studies/{study['id']}")["sample_fields"] == [
        {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]}
    ]

    await tab_to(page, "Activate")
    await keys.press("Enter")
    await page.locator("#confirm").wait_for()
    await keys.press("Enter")  # the dialog's first button: the confirmation
    await expect_text(page.locator("#study-standing"), "Active · your role: Owner")

    sheet = tmp_path / "typed.csv"
    sheet.write_text("sample_id,tissue\nU-1,blood\nU-2,saliva\n", encoding="utf-8")
    await tab_to(page, "Files")
    await keys.press("Enter")
    await tab_to(page, "File (CSV, TSV or XLSX)")
    async with page.expect_file_chooser() as chosen:
        await keys.press("Space")
    await (await chosen.value).set_files(sheet)
    await tab_to(page, "Upload")
    await keys.press("Enter")
    imported = "Imported typed.csv: 2 created, 0 updated, 0 unchanged of 2 rows."
    await expect_text(page.locator("#upload-result"), imported)

    await tab_to(page, "Samples")
    await keys.press("Enter")
    await tab_to(page, "U-2")
    await keys.press("Enter")
    await expect_text(page.locator("#sample-title"), "Sample U-2")
    # Where it came from: the upload that created it, by name (its import is the file's entry).
    await expect_text(page.locator("#sample-facts dd").last, re.compile(r"^typed\.csv \(uploaded .+\)$"))
    await tab_to(page, "tissue")
    await keys.type("b")  # saliva becomes blood
    await tab_to(page, "Save sample")
    await keys.press("Enter")
    await expect_sample_values(owner, study["id"], "U-2", {"tissue": "blood"})

    await tab_to(page, "Samples")
    await keys.press("Enter")
    await tab_to(page, "Add a sample")
    await keys.press("Enter")
    await tab_to(page, "Id of the new sample")
    await keys.type("K-1")
    await tab_to(page, "tissue")
    await keys.type("s")
    await tab_to(page, "Add sample")
    await keys.press("Enter")
    await expect_text(page.locator("#sample-title"), "Sample K-1")
    await expect_sample_values(owner, study["id"], "K-1", {"tissue": "saliva"})

    await tab_to(page, "Members")
    await keys.press("Enter")
    invited = f"invited-{uuid.uuid4().hex[:8]}@example.org"
    await tab_to(page, "Invite by email")
    await keys.type(invited)
    await keys.press("Enter")
    await expect_text(page.locator("#invite-done"), f"{invited} was mailed an invitation as editor.")
    assert len(mails_to(stack_smtp, invited, 1, about=INVITATION_SUBJECT)) == 1


AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# The serious and critical violations axe-core finds in what the page shows now (hidden views are
# not checked: axe skips what is not displayed).
AXE_SERIOUS = """async () => {
  const found = await axe.run(document, { resultTypes: ["violations"] });
  return found.violations
    .filter((violation) => ["serious", "critical"].includes(violation.impact))
    .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(" "))}`);
}"""


async def serious_violations(page) -> list[str]:
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8") + "\n;null")
    return await page.evaluate(AXE_SERIOUS)


async def test_every_view_has_no_serious_accessibility_violation(page, researcher: Researcher):
    """axe-core (vendored into the tests, never served) on each view as its owner sees it: signed out
    (sign-in, forgot password, a new account, the mailed links' views), the workspace's views, a
    file's report, the confirmation dialog and an edit conflict."""
    study_id = researcher.study["id"]
    researcher.upload("bad.csv", HEADER + "A-1,saliva,-1\r\n", 422)
    found: dict[str, list[str]] = {}
    await page.goto("/")
    await page.locator("#sign-in").wait_for()
    found["sign-in"] = await serious_violations(page)
    await page.get_by_role("button", name="Forgot password?").click()
    await page.locator("#forgot").wait_for()
    found["forgot password"] = await serious_violations(page)
    await page.goto("/")
    await page.get_by_role("button", name="Create an account").click()
    await page.locator("#register").wait_for()
    found["create an account"] = await serious_violations(page)
    mailed = {"/reset-password": "#reset", "/invitations": "#invitation", "/verify-email": "#verify-message"}
    for path, ready in mailed.items():
        await page.goto(f"{path}#token=not-a-token-of-ours")
        await expect_text(page.locator(ready), re.compile(r"\w"))
        found[path] = await serious_violations(page)

    await sign_in(page, researcher.email)
    await page.locator("#cards article").first.wait_for()
    found["overview"] = await serious_violations(page)
    views = {
        "/studies/new": "#new-study-form",
        study_url(study_id): "#study-cards article",
        study_url(study_id, "/samples"): "#samples-table tbody tr",
        study_url(study_id, "/files"): "#files-table tbody tr",
        study_url(study_id, "/members"): "#members-table tbody tr",
        study_url(study_id, "/settings"): "#fields-editor fieldset",
    }
    for path, ready in views.items():
        await page.goto(path)
        await page.locator(ready).first.wait_for()
        found[path] = await serious_violations(page)
    await page.get_by_role("button", name="Delete this draft").click()
    await page.locator("#confirm").wait_for()
    found["the confirmation dialog"] = await serious_violations(page)
    await page.locator("#confirm").get_by_role("button", name="Cancel").click()
    await page.goto(study_url(study_id, "/files"))
    await page.locator("#files-table tbody tr").first.get_by_role("button", name="Report").click()
    await page.locator("#report-errors tbody tr").first.wait_for()
    found["a file's report"] = await serious_violations(page)
    await page.goto(study_url(study_id, "/samples"))
    await page.get_by_role("link", name="S-1").click()
    await page.locator("#sample-form").wait_for()
    found["a sample"] = await serious_violations(page)
    (sample,) = researcher.get(f"/studies/{study_id}/samples?q=S-1")["items"]
    theirs = researcher.api.patch(
        f"/api/v1/studies/{study_id}/samples/{sample['id']}",
        json={"values": {"volume": 8}},
        headers=researcher.headers,
    )
    assert theirs.status_code == 200, theirs.text
    await page.locator("#sample-form").get_by_label("volume [mL]").fill("9")
    await page.get_by_role("button", name="Save sample").click()
    await page.locator("#sample-conflict").wait_for()
    found["an edit conflict"] = await serious_violations(page)

    assert {view: problems for view, problems in found.items() if problems} == {}
    # The check is live: a control without a label is caught.
    await page.evaluate("document.querySelector('main').append(document.createElement('input'))")
    assert [problem for problem in await serious_violations(page) if problem.startswith("label:")]


async def test_an_edit_conflict_between_two_browsers(page, browser, stack, researcher: Researcher):
    """Two tabs of two browsers on one sample: the second save meets the first one's version."""
    (sample,) = researcher.get(f"/studies/{researcher.study['id']}/samples?q=S-2")["items"]
    detail = study_url(researcher.study["id"], f"/samples/{sample['id']}")
    other = await browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        second = await other.new_page()
        second.set_default_timeout(WAIT_MS)
        second.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        second.on("pageerror", lambda error: errors.append(str(error)))
        for tab in (page, second):
            await sign_in(tab, researcher.email)
            await tab.goto(detail)
            await tab.locator("#sample-form").wait_for()

        await page.get_by_label("tissue").select_option("saliva")
        await page.get_by_role("button", name="Save sample").click()
        await expect_text(page.locator("#sample-facts dt:has-text('tissue') + dd"), "saliva")
        await second.get_by_label("volume [mL]").fill("9")
        await second.get_by_role("button", name="Save sample").click()

        await second.locator("#sample-conflict").wait_for()
        await expect_text(second.locator("#sample-facts dt:has-text('tissue') + dd"), "saliva")
        await expect_text(second.locator("#sample-mine li"), "volume → 9")
        await second.get_by_role("button", name="Apply my changes to their version").click()
        await expect_text(second.locator("#sample-facts dt:has-text('volume') + dd"), "9")
    finally:
        await other.close()
    now = researcher.get(f"/studies/{researcher.study['id']}/samples/{sample['id']}")
    assert now["values"] == {"tissue": "saliva", "volume": 9}
    # A 412 answered to the second browser is logged by Chromium like any 4xx; nothing else may be.
    assert [error for error in errors if not error.startswith(ANSWERED_WITH_AN_ERROR)] == []


BIG_STUDY_SAMPLES = 200_000

# B-000001 ... straight into the study (one INSERT ... SELECT): a third saliva, every tenth stored,
# volumes 0 to 99; then the maintained counts the samples view reads, moved as an import moves them.
SEED_SAMPLES = """
INSERT INTO samples (id, study_id, created_at, updated_at, sample_id, sample_id_normalized, status,
                     "values", version)
SELECT gen_random_uuid(), %(study)s, now(), now() + make_interval(secs => n),
       'B-' || lpad(n::text, 6, '0'), 'b-' || lpad(n::text, 6, '0'),
       CASE WHEN n %% 10 = 0 THEN 'stored' ELSE 'registered' END,
       jsonb_build_object('tissue', CASE WHEN n %% 3 = 0 THEN 'saliva' ELSE 'blood' END, 'volume', n %% 100),
       1
FROM generate_series(1, %(count)s) AS n
"""
SEED_COUNTS = [
    "UPDATE studies SET sample_count = sample_count + %(count)s WHERE id = %(study)s",
    "INSERT INTO study_sample_counts (study_id, status, count) VALUES"
    " (%(study)s, 'registered', %(count)s - %(count)s / 10), (%(study)s, 'stored', %(count)s / 10)"
    " ON CONFLICT (study_id, status) DO UPDATE SET count = study_sample_counts.count + excluded.count",
    "INSERT INTO study_field_value_counts (study_id, field, value, count) VALUES"
    " (%(study)s, 'tissue', '', %(count)s), (%(study)s, 'volume', '', %(count)s),"
    " (%(study)s, 'tissue', 'saliva', %(count)s / 3),"
    " (%(study)s, 'tissue', 'blood', %(count)s - %(count)s / 3)"
    " ON CONFLICT (study_id, field, value)"
    " DO UPDATE SET count = study_field_value_counts.count + excluded.count",
    "ANALYZE samples",
]


def seed_big_study(database_url: str, study_id: str, count: int) -> float:
    """Seconds it took to write `count` samples into the study through SQL (see SEED_SAMPLES)."""
    started = time.perf_counter()
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as db, db.transaction():
        for statement in [SEED_SAMPLES, *SEED_COUNTS]:
            db.execute(statement, {"study": study_id, "count": count})
    return time.perf_counter() - started


async def test_the_samples_view_of_a_200000_sample_study_pages_sorts_and_filters(
    page, researcher: Researcher, stack_database: str, capsys
):
    """The view asks the server for one page at a time, whatever the study's size: each step below
    answers within the test's usual wait, and the time each took is printed ([big study] ...)."""
    seeded = seed_big_study(stack_database, researcher.study["id"], BIG_STUDY_SAMPLES)
    total = BIG_STUDY_SAMPLES + 3
    await sign_in(page, researcher.email)
    position = page.locator("#samples-position")
    timings: dict[str, float] = {}

    async def step(name: str, action, first: str, where: str | re.Pattern) -> None:
        started = time.perf_counter()
        await action()
        await expect_text(position, where)
        await expect_text(first_cells(page).first, first)
        timings[name] = time.perf_counter() - started
        assert await first_cells(page).count() <= 50

    async def open_view() -> None:
        await page.goto(study_url(researcher.study["id"], "/samples"))

    pages = -(-total // 50)
    everything = f"Page 1 of {pages:,} ({total:,} samples)"
    await step("open", open_view, "B-000001", everything)
    next_page = page.get_by_role("button", name="Next page")
    await step("next page", next_page.click, "B-000051", f"Page 2 of {pages:,} ({total:,} samples)")
    by_id = page.get_by_role("button", name="Sample id")
    await step("sample id descending", by_id.click, "S-2", everything)
    by_change = page.get_by_role("button", name="Updated")
    await step("oldest change first", by_change.click, "S-0", everything)
    await step("newest change first", by_change.click, "B-200000", everything)
    search = page.get_by_label("Sample id starts with")
    await step("search", lambda: search.fill("b-19999"), "B-199999", "Page 1 of 1 (10 samples)")
    await step("search cleared", lambda: search.fill(""), "B-200000", everything)
    status = page.get_by_label("Show")
    at_least = re.compile(r"^Page 1 \(at least 10,000 samples\)$")
    await step("status", lambda: status.select_option("stored"), "B-200000", at_least)
    await step("status cleared", lambda: status.select_option(""), "B-200000", everything)

    async def saliva() -> None:
        await page.get_by_label("Field", exact=True).select_option("tissue")
        await page.get_by_label("equals").fill("saliva")
        await page.get_by_role("button", name="Add filter").click()

    saliva_total = BIG_STUDY_SAMPLES // 3
    saliva_pages = -(-saliva_total // 50)
    await step("field filter", saliva, "B-199998", f"Page 1 of {saliva_pages:,} ({saliva_total:,} samples)")

    with capsys.disabled():
        steps = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items())
        print(f"\n[big study] {BIG_STUDY_SAMPLES:,} samples seeded in {seeded:.1f} s; {steps}")
