"""Writes operations/configuration.md from the settings classes (scripts/docs_reference.py)."""

import sys
from pathlib import Path

import mkdocs_gen_files

# `mkdocs build` runs this file by path, with the project directory not importable: make it so.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.docs_reference import configuration_page

with mkdocs_gen_files.open("operations/configuration.md", "w") as page:
    page.write(configuration_page())
