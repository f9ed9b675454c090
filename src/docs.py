"""/docs and /redoc served entirely from the app: pinned assets, no CDN, no inline script.

Swagger UI and ReDoc come from the `fastapi-offline` package (pinned in requirements.txt,
which fixes their versions); only its asset folder is used, not its FastAPI factory, whose
pages start Swagger UI with an inline script. Our start script is src/docs_static/.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
VENDOR_URL = "/docs/vendor"
STATIC_URL = "/docs/static"
VENDOR_DIR = Path(fastapi_offline.__file__).parent / "static"
STATIC_DIR = Path(__file__).parent / "docs_static"

SWAGGER_UI_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Studybase API - Swagger UI</title>
<link rel="stylesheet" href="{VENDOR_URL}/swagger-ui.css">
<link rel="icon" href="{VENDOR_URL}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{VENDOR_URL}/swagger-ui-bundle.js"></script>
<script src="{STATIC_URL}/swagger-init.js"></script>
</body>
</html>
"""

# ReDoc starts itself from the <redoc spec-url> element: no script of ours at all.
REDOC_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Studybase API - ReDoc</title>
<link rel="icon" href="{VENDOR_URL}/favicon.png">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{VENDOR_URL}/redoc.standalone.js"></script>
</body>
</html>
"""


async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_UI_PAGE)


async def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE)


def add_docs(app: FastAPI) -> None:
    """For an app built with docs_url, redoc_url and swagger_ui_oauth2_redirect_url set to None."""
    app.mount(VENDOR_URL, StaticFiles(directory=VENDOR_DIR), name="docs-vendor")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="docs-static")
    app.add_api_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, include_in_schema=False)
