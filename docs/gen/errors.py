"""Writes api/error-codes.md from the error code catalogues (scripts/docs_reference.py)."""

import sys
from pathlib import Path

import mkdocs_gen_files

# `mkdocs build` runs this file by path, with the project directory not importable: make it so.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.docs_reference import error_codes_page

with mkdocs_gen_files.open("api/error-codes.md", "w") as page:
    page.write(error_codes_page())
