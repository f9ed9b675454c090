"""Writes architecture/data-model.md from the SQLAlchemy models (scripts/docs_reference.py)."""

import sys
from pathlib import Path

import mkdocs_gen_files

# `mkdocs build` runs this file by path, with the project directory not importable: make it so.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.docs_reference import data_model_page

with mkdocs_gen_files.open("architecture/data-model.md", "w") as page:
    page.write(data_model_page())
