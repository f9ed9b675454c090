"""The docs site's skeleton holds together without building it (CI builds it with mkdocs build
--strict): every page of the nav exists or is generated, every generator is wired, the screenshots
are there and small, and no page points outside the repository."""

import re
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
DOCS_DIR = PROJECT_DIR / "docs"
SCREENSHOTS = ("dashboard.png", "study-upload-report.png", "workspace-study.png")
MAX_SCREENSHOT_BYTES = 400_000
README_MAX_BYTES = 12 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _MkdocsLoader(yaml.SafeLoader):
    """mkdocs.yml names Python objects (`!!python/name:`): read them as their names, import nothing."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


@pytest.fixture(scope="module")
def mkdocs_config() -> dict:
    return yaml.load((PROJECT_DIR / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_MkdocsLoader)  # noqa: S506


def nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def gen_scripts(config: dict) -> list[str]:
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "gen-files" in plugin:
            return plugin["gen-files"]["scripts"]
    return []


def generated_pages() -> set[str]:
    """The pages docs/gen/*.py write (their `mkdocs_gen_files.open("...")`)."""
    pages = set()
    for script in (DOCS_DIR / "gen").glob("*.py"):
        pages.update(re.findall(r'mkdocs_gen_files\.open\("([^"]+)"', script.read_text(encoding="utf-8")))
    return pages


def test_every_page_of_the_nav_exists_or_is_generated(mkdocs_config):
    generated = generated_pages()

    assert {"operations/configuration.md", "api/error-codes.md", "architecture/data-model.md"} <= generated
    for page in nav_pages(mkdocs_config["nav"]):
        assert (DOCS_DIR / page).is_file() or page in generated, page


def test_every_generator_is_wired_and_none_is_published(mkdocs_config):
    wired = {Path(script).name for script in gen_scripts(mkdocs_config)}

    assert wired == {path.name for path in (DOCS_DIR / "gen").glob("*.py")}
    assert "gen/" in mkdocs_config["exclude_docs"]


def test_the_site_is_built_strictly_with_mermaid_fences(mkdocs_config):
    fences = [
        extension["pymdownx.superfences"]["custom_fences"]
        for extension in mkdocs_config["markdown_extensions"]
        if isinstance(extension, dict) and "pymdownx.superfences" in extension
    ]

    assert mkdocs_config["strict"] is True
    assert fences
    assert fences[0][0]["name"] == "mermaid"


@pytest.mark.parametrize("name", SCREENSHOTS)
def test_the_screenshots_are_small_pngs(name):
    screenshot = DOCS_DIR / "assets" / "screenshots" / name

    assert screenshot.read_bytes()[:8] == PNG_SIGNATURE
    assert 10_000 < screenshot.stat().st_size < MAX_SCREENSHOT_BYTES


def test_no_page_points_outside_the_repository():
    for page in DOCS_DIR.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "shared/DESIGN.md" not in text, page
        assert "](/" not in text, f"{page}: links between pages are relative"


def test_the_readme_is_short_and_self_contained():
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")

    assert len(readme.encode("utf-8")) <= README_MAX_BYTES  # the rest lives in docs/
    assert "DESIGN.md" not in readme
    assert "../shared" not in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (PROJECT_DIR / target).is_file(), target


def test_every_report_code_is_explained_for_researchers():
    """A new per-cell code must reach the table a researcher reads to fix a file."""
    from src.sampleFileUpload.constants import ReportCode
    from src.study.constants import ValueErrorCode

    page = (DOCS_DIR / "user-guide" / "fixing-a-rejected-file.md").read_text(encoding="utf-8")
    table = page.split("## What each code means", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+)\|", table, re.M)
    explained = {code for cell in first_cells for code in re.findall(r"`([a-z_]+)`", cell)}

    assert {code.value for code in (*ReportCode, *ValueErrorCode)} <= explained
