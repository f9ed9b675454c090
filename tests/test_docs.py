"""/docs and /redoc work offline: every asset they reference is served by the app (issue 11, item 14)."""

import asyncio
import re
import shutil

import pytest
import uvicorn

from src.middleware import DOCS_CSP, REDOC_CSP

REFERENCED = re.compile(r'(?:src|href)="([^"]+)"')
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def referenced_urls(page: str) -> list[str]:
    return REFERENCED.findall(page)


@pytest.mark.parametrize(("page", "csp"), [("/docs", DOCS_CSP), ("/redoc", REDOC_CSP)])
async def test_a_docs_page_references_only_assets_the_app_serves(client, page, csp):
    response = await client.get(page)

    assert response.status_code == 200
    assert response.headers["content-security-policy"] == csp
    urls = referenced_urls(response.text)
    assert any(url.endswith(".js") for url in urls)
    for url in urls:
        assert url.startswith("/"), url  # nothing from another host
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0


async def test_swagger_ui_has_no_inline_script_and_does_not_persist_tokens(client):
    page = (await client.get("/docs")).text
    start_script = (await client.get("/docs/static/swagger-init.js")).text

    assert re.search(r"<script>", page) is None
    code = "\n".join(line for line in start_script.splitlines() if not line.lstrip().startswith("//"))
    assert "SwaggerUIBundle(" in code
    assert "persistAuthorization" not in code
    assert "localStorage" not in page


async def test_the_oauth2_redirect_page_with_its_inline_script_is_gone(client):
    response = await client.get("/docs/oauth2-redirect")

    assert response.status_code == 404


async def test_the_pinned_swagger_ui_and_redoc_versions_are_served(client):
    swagger = (await client.get("/docs/vendor/swagger-ui-bundle.js")).text
    redoc = (await client.get("/docs/vendor/redoc.standalone.js")).text

    assert 'PACKAGE_VERSION:"5.32.6"' in swagger
    assert '"2.5.3"' in redoc


async def rendered_dom(app, page: str) -> str:
    """The page as headless Chromium renders it, from a uvicorn on a loopback port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        browser = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"http://127.0.0.1:{port}{page}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        dom, _ = await asyncio.wait_for(browser.communicate(), timeout=90)
        return dom.decode()
    finally:
        server.should_exit = True
        await serving


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
async def test_swagger_ui_renders_the_api_under_its_csp(app):
    dom = await rendered_dom(app, "/docs")

    assert 'data-path="/api/v1/auth/token"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium")
async def test_redoc_renders_the_api_under_its_csp(app):
    dom = await rendered_dom(app, "/redoc")

    assert "Something went wrong" not in dom
    assert "/auth/token" in dom
