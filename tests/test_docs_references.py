"""The README and the docs pages name commands, flags, files and tests: each must exist.

A renamed subcommand, a dropped benchmark flag, a moved file or a renamed test would otherwise leave
the docs pointing at nothing, and nobody would notice until an operator ran the command.
"""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Every written page and the README (the generated pages are written at build time from the code
# and checked by tests/test_docs_reference.py).
PAGES = sorted([ROOT / "README.md", *(DOCS.rglob("*.md"))])
# contributing.md's walk-through adds a module of this name: its paths exist only in the example.
EXAMPLE_MODULE = "notebooks"

MAIN_COMMAND = re.compile(r"python main\.py ([a-z][a-z-]*)")
MODULE_COMMAND = re.compile(r"python -m ((?:benchmarks|scripts)\.[a-z_]+)([^`\n]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")
REPOSITORY_PATH = re.compile(r"`((?:tests|src|benchmarks|scripts|nginx)/[A-Za-z0-9_./-]*)")
TEST_NAME = re.compile(r"\b(test_[a-z0-9_]+)\b(?!\.py)")


def page_texts() -> list[tuple[str, str]]:
    return [(str(page.relative_to(ROOT)), page.read_text(encoding="utf-8")) for page in PAGES]


PAGE_TEXTS = page_texts()
PAGE_IDS = [page for page, _ in PAGE_TEXTS]


@cache
def main_subcommands() -> set[str]:
    source = (ROOT / "main.py").read_text(encoding="utf-8")
    return set(re.findall(r'add_parser\(\s*"([a-z-]+)"', source))


@cache
def defined_tests() -> frozenset[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        names.update(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(encoding="utf-8"), re.M))
    return frozenset(names)


@cache
def stems_of_test_files() -> frozenset[str]:
    return frozenset(path.stem for path in (ROOT / "tests").rglob("test_*.py"))


def test_every_written_page_of_the_nav_and_the_readme_are_checked():
    generated = {"operations/configuration.md", "api/error-codes.md", "architecture/data-model.md"}
    in_nav = set(re.findall(r":\s*([\w/-]+\.md)", (ROOT / "mkdocs.yml").read_text(encoding="utf-8")))
    checked = {page.relative_to(DOCS).as_posix() for page in PAGES if page.is_relative_to(DOCS)}

    assert ROOT / "README.md" in PAGES
    assert in_nav - generated <= checked, in_nav - generated - checked


@pytest.mark.parametrize(("page", "text"), PAGE_TEXTS, ids=PAGE_IDS)
def test_every_main_py_command_named_exists(page, text):
    named = set(MAIN_COMMAND.findall(text))
    assert named <= main_subcommands(), (page, named - main_subcommands())


@pytest.mark.parametrize(("page", "text"), PAGE_TEXTS, ids=PAGE_IDS)
def test_every_module_and_flag_named_exists(page, text):
    missing = []
    for module, rest in MODULE_COMMAND.findall(text):
        source_path = ROOT / (module.replace(".", "/") + ".py")
        if not source_path.is_file():
            missing.append(module)
            continue
        source = source_path.read_text(encoding="utf-8")
        missing += [f"{module} {flag}" for flag in FLAG.findall(rest) if f'"{flag}"' not in source]
    assert not missing, (page, missing)


@pytest.mark.parametrize(("page", "text"), PAGE_TEXTS, ids=PAGE_IDS)
def test_every_repository_path_named_exists(page, text):
    paths = {path.rstrip(".") for path in REPOSITORY_PATH.findall(text)}
    missing = sorted(
        path for path in paths if EXAMPLE_MODULE not in path and not (ROOT / path.rstrip("/")).exists()
    )
    assert not missing, (page, missing)


@pytest.mark.parametrize(("page", "text"), PAGE_TEXTS, ids=PAGE_IDS)
def test_every_test_named_exists(page, text):
    named = set(TEST_NAME.findall(text)) - stems_of_test_files()
    assert named <= defined_tests(), (page, sorted(named - defined_tests()))


def test_every_main_py_command_is_in_the_operators_table():
    page = (DOCS / "operations" / "deploying.md").read_text(encoding="utf-8")
    table = page.split("## The commands of `main.py`", 1)[1].split("\n## ", 1)[0]

    assert main_subcommands() - {"serve"} <= set(MAIN_COMMAND.findall(table))
