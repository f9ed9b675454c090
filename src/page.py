"""The browser page (nginx/html/), served by the app at `/` as nginx serves it in the stack.

So `python main.py` shows the same page as the full stack. Only `/`, the workspace's own views
(`/studies/{id}`, its samples, files, members and settings, a sample's detail), the paths mailed
links open (`/reset-password`, `/invitations`, `/verify-email`) and `/assets/...` are the page's:
every other path stays the API's (an unknown path under /api is still its problem+json 404, not a
page, and so is `/studies/{id}/anything-else`).
"""

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from src.auth.constants import RESET_PASSWORD_PAGE, VERIFY_EMAIL_PAGE
from src.invitations.constants import INVITATIONS_PAGE

PAGE_DIR = Path(__file__).resolve().parent.parent / "nginx" / "html"
PAGE_URL = "/"
# The page again, at the paths mailed links open; it reads what it should show from its path
# (and the token from the fragment, which never reaches the server). In nginx: default.conf.
PAGE_PATHS = (PAGE_URL, RESET_PASSWORD_PAGE, INVITATIONS_PAGE, VERIFY_EMAIL_PAGE)
# The workspace's views (nginx/html/assets/router.js), each a URL of its own so that it can be
# linked, reloaded and reached with Back: the page reads its place from the path. The same
# pattern is the `location` in nginx/default.conf; a path segment is anything but `/`.
WORKSPACE_ROUTES = (
    "/studies/{study_id}",
    "/studies/{study_id}/samples",
    "/studies/{study_id}/samples/{sample_id}",
    "/studies/{study_id}/files",
    "/studies/{study_id}/members",
    "/studies/{study_id}/settings",
)
WORKSPACE_PATH = re.compile(r"^/studies/[^/]+(/(samples(/[^/]+)?|files|members|settings))?$")
ASSETS_URL = "/assets"


async def dashboard_page() -> FileResponse:
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html; charset=utf-8")


def is_page_path(path: str) -> bool:
    """The paths the page's own CSP applies to (in nginx: the map on $uri in default.conf)."""
    return path in PAGE_PATHS or path.startswith(f"{ASSETS_URL}/") or WORKSPACE_PATH.match(path) is not None


def add_page(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=PAGE_DIR / "assets"), name="page-assets")
    for path in (*PAGE_PATHS, *WORKSPACE_ROUTES):
        app.add_api_route(path, dashboard_page, methods=["GET", "HEAD"], include_in_schema=False)
