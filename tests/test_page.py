"""The dashboard page (nginx/html/) as `python main.py`'s app serves it: files, types, CSP, no inline code."""

import re
from html.parser import HTMLParser

import pytest

from src.middleware import API_CSP, DASHBOARD_CSP
from src.page import PAGE_DIR, WORKSPACE_PATH
from tests.conftest import assert_problem

JS_IMPORT = re.compile(r'^import .* from "\./([^"]+)";$', re.MULTILINE)
JS_TYPES = ("text/javascript", "application/javascript")


class PageParts(HTMLParser):
    """The page's scripts, stylesheets and every attribute that could carry inline code or style."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.stylesheets: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_attributes: list[tuple[str, str]] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if (
                name.startswith("on")
                or name == "style"
                or (value or "").strip().lower().startswith("javascript:")
            ):
                self.inline_attributes.append((tag, name))
        if tag == "style":
            self.inline_attributes.append((tag, "<style>"))
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes["href"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def parts_of(html: str) -> PageParts:
    parser = PageParts()
    parser.feed(html)
    return parser


def module_files() -> list[str]:
    return sorted(path.name for path in (PAGE_DIR / "assets").glob("*.js"))


async def test_the_page_is_served_at_the_root_with_its_own_csp(client):
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == DASHBOARD_CSP
    assert response.text == (PAGE_DIR / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/reset-password", "/invitations", "/verify-email"])
async def test_a_mailed_link_opens_the_page_with_its_own_csp(client, path):
    response = await client.get(path)
    head = await client.head(path)

    assert response.status_code == head.status_code == 200
    assert response.headers["content-security-policy"] == DASHBOARD_CSP
    assert response.text == (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    assert (await client.get(f"{path}/x")).status_code == 404


WORKSPACE_PAGES = [
    "/studies/new",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70/samples",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70/samples/0d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70/files",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70/members",
    "/studies/5b0c6a52-8f0e-4d3a-9b7e-2f1c4d5e6a70/settings",
]


@pytest.mark.parametrize("path", WORKSPACE_PAGES)
async def test_each_workspace_view_has_a_url_that_opens_the_page(client, path):
    """A linked or reloaded view: the page, with its CSP; it reads its place from the path."""
    response = await client.get(path)
    head = await client.head(path)

    assert response.status_code == head.status_code == 200
    assert response.headers["content-security-policy"] == DASHBOARD_CSP
    assert response.text == (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    assert WORKSPACE_PATH.match(path)


@pytest.mark.parametrize(
    "path",
    [
        "/studies",
        "/studies/x/nothing",
        "/studies/x/samples/y/more",
        "/studies/x/files/y",
        "/api/v1/studies/x/settings",
        "/studiesx/y",
    ],
)
async def test_paths_beside_the_workspace_views_stay_the_apis_404(client, path):
    response = await client.get(path)

    assert_problem(response, 404, "NOT_FOUND")
    assert response.headers["content-security-policy"] == API_CSP
    assert not WORKSPACE_PATH.match(path)


def test_nginx_serves_the_page_at_the_same_workspace_paths():
    """nginx/default.conf's location for the views is src/page.py's pattern, character for character."""
    config = (PAGE_DIR.parent / "default.conf").read_text(encoding="utf-8")

    assert f"location ~ {WORKSPACE_PATH.pattern} {{" in config


async def test_the_page_has_no_inline_script_style_or_event_handler(client):
    parts = parts_of((await client.get("/")).text)

    assert parts.scripts == [{"type": "module", "src": "/assets/app.js"}]
    assert parts.inline_scripts == []
    assert parts.inline_attributes == []


async def test_the_scripts_and_styles_are_served_with_their_content_types(client):
    parts = parts_of((await client.get("/")).text)

    for url in parts.stylesheets:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith("text/css")
    for name in module_files():
        response = await client.get(f"/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].split(";")[0] in JS_TYPES, name
        assert response.text == (PAGE_DIR / "assets" / name).read_text(encoding="utf-8")


async def test_every_module_the_page_imports_is_served(client):
    """Follows the imports from app.js: a missing module would stop the page without a word."""
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        response = await client.get(f"/assets/{name}")
        assert response.status_code == 200, name
        pending.extend(set(JS_IMPORT.findall(response.text)) - seen)

    assert seen == set(module_files())


@pytest.mark.parametrize("name", module_files())
def test_scripts_build_no_html_from_strings_and_keep_no_token_in_local_storage(name):
    """API text is put in the page as text only, and tokens never outlive the tab."""
    code = (PAGE_DIR / "assets" / name).read_text(encoding="utf-8")

    for forbidden in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "localStorage",
    ):
        assert forbidden not in code, f"{name} uses {forbidden}"
    assert ".style." not in code
    assert 'setAttribute("style"' not in code


async def test_the_api_keeps_its_own_answers_beside_the_page(client):
    missing_api = await client.get("/api/v1/no-such-route")
    missing_asset = await client.get("/assets/no-such-file.js")
    health = await client.get("/api/v1/health")

    assert missing_api.status_code == 404
    assert missing_api.headers["content-type"] == "application/problem+json"
    assert missing_api.headers["content-security-policy"] == API_CSP
    assert missing_asset.status_code == 404
    assert missing_asset.headers["content-type"] == "application/problem+json"
    assert health.headers["content-security-policy"] == API_CSP


async def test_the_page_is_not_in_the_openapi_document(client):
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert "/" not in paths
    assert "/reset-password" not in paths
    assert not [path for path in paths if path.startswith("/studies")]  # the API's are under /api/v1
