"""The docs site's generated pages cover everything they describe: every setting of every settings
class (found by walking src, so a new class is covered too), every error code, every table.

They import only scripts/docs_reference.py: no mkdocs needed to run them."""

import ast
import re
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts import docs_reference
from src.config import SAMPLE_SECRET_KEY
from src.exceptions import Conflict

SRC_DIR = Path(__file__).resolve().parents[1] / "src"


def settings_classes_in_the_source() -> set[str]:
    """Classes of src/ deriving from BaseSettings, read from the source itself (not imported), so that
    one the walker misses is noticed."""
    found = set()
    for path in SRC_DIR.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                getattr(base, "id", None) == "BaseSettings" for base in node.bases
            ):
                found.add(node.name)
    return found


def page_row_of(page: str, name: str) -> str:
    """The table row (error codes) or definition (settings) of `name` on the page."""
    rows = [line for line in page.splitlines() if line.startswith(f"| `{name}`")]
    if rows:
        return rows[0]
    definitions = [text for text in re.split(r"\n(?=`)", page) if text.startswith(f"`{name}`")]
    assert definitions, f"{name} is not on the page"
    return " ".join(definitions[0].split())


# --- Configuration -----------------------------------------------------------------------------


def test_every_settings_class_of_src_is_found():
    found = {cls.__name__ for cls in docs_reference.settings_classes()}

    assert found == settings_classes_in_the_source()
    assert {"Settings", "AuthSettings", "MailSettings", "UploadSettings"} <= found


def test_every_setting_has_a_description():
    assert docs_reference.undocumented_settings() == []


def test_a_setting_without_a_description_is_caught(monkeypatch):
    class NewSettings(BaseSettings):
        model_config = SettingsConfigDict(use_attribute_docstrings=True)

        DOCUMENTED: int = 1
        """Has one."""
        BARE: int = 2

    monkeypatch.setattr(docs_reference, "settings_classes", lambda: [NewSettings])

    assert docs_reference.undocumented_settings() == ["NewSettings.BARE"]


def test_every_settings_class_reads_attribute_docstrings_as_descriptions():
    for settings_class in docs_reference.settings_classes():
        assert settings_class.model_config.get("use_attribute_docstrings") is True, settings_class


def test_the_configuration_page_lists_every_setting_with_its_description():
    page = docs_reference.configuration_page()

    for settings_class in docs_reference.settings_classes():
        title = docs_reference.settings_title(settings_class)
        section = page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in settings_class.model_fields.items():
            row = page_row_of(section, name)
            assert docs_reference.one_line(field.description) in row


def test_the_configuration_page_shows_types_and_defaults():
    page = docs_reference.configuration_page()

    assert "*integer (> 0); default: `10`*" in page_row_of(page, "DATABASE_POOL_SIZE")
    assert "`development`, `test`, `staging`, `production`" in page_row_of(page, "ENVIRONMENT")
    assert "*number (> 0, ≤ 600); default: `10.0`*" in page_row_of(page, "IMPORT_SLOT_WAIT_SECONDS")
    assert "or unset; default: unset*" in page_row_of(page, "STORAGE_URL")
    assert "computed: " in page_row_of(page, "PASSWORD_HASH_CONCURRENCY")


def test_the_configuration_page_never_shows_a_secrets_value():
    page = docs_reference.configuration_page()

    assert SAMPLE_SECRET_KEY not in page
    assert "refused outside development" in page_row_of(page, "SECRET_KEY")


def test_every_variable_of_env_sample_is_on_the_configuration_page():
    page = docs_reference.configuration_page()
    listed = re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", docs_reference.ENV_SAMPLE.read_text(), re.MULTILINE)

    assert listed
    for name in listed:
        page_row_of(page, name)


def test_each_anchor_of_the_configuration_page_is_given_once():
    anchors = re.findall(r"\{#([a-z0-9_]+)\}", docs_reference.configuration_page())

    assert len(anchors) == len(set(anchors))
    assert "environment" in anchors


# --- Error codes -------------------------------------------------------------------------------


def test_every_error_code_has_a_description():
    assert docs_reference.undescribed_error_codes() == []


def test_an_error_class_or_code_without_a_description_is_caught(monkeypatch):
    class Undescribed(Conflict):
        code = "NEW_CODE"

    class Described(Conflict):
        """Says what it means."""

        code = "NEW_CODE"

    monkeypatch.setattr(docs_reference, "error_classes", lambda: [Undescribed, Described])

    missing = docs_reference.undescribed_error_codes()

    assert "Undescribed (NEW_CODE)" in missing
    assert "Described (NEW_CODE)" not in missing
    assert "STUDY_BUSY" in missing  # a catalogued code no class answers, and not described otherwise


def test_every_code_an_error_class_answers_is_in_a_catalogue():
    assert docs_reference.codes_outside_the_catalogues() == []


def test_the_catalogues_and_classes_are_found_in_every_module():
    modules = {catalogue.__module__ for catalogue in docs_reference.error_code_catalogues()}
    classes = {cls.__name__ for cls in docs_reference.error_classes()}

    assert {"src.constants", "src.auth.constants", "src.study.constants", "src.mail.constants"} <= modules
    assert {"StudyBusy", "MailNotConfigured", "RequestTimedOut", "InvitationNotFound"} <= classes


def test_the_error_codes_page_lists_every_code_and_class_with_its_status():
    page = docs_reference.error_codes_page()

    for catalogue in docs_reference.error_code_catalogues():
        for member in catalogue:
            assert f"| `{member.value}`{{#{member.value.lower()}}} |" in page
    for cls in docs_reference.error_classes():
        rows = [line for line in page.splitlines() if line.endswith(f"| `{cls.__name__}` |")]
        assert len(rows) == 1, cls
        assert f"`{cls.code}`" in rows[0]
        assert f"| {cls.status_code} |" in rows[0]


def test_a_code_without_a_class_says_where_it_comes_from():
    page = docs_reference.error_codes_page()

    assert "| 400 | **Cross-origin request refused.** " in page_row_of(page, "CORS_REJECTED")
    assert "(none)" in page_row_of(page, "METHOD_NOT_ALLOWED")


def test_the_codes_nginx_answers_itself_are_on_the_error_codes_page():
    page = docs_reference.error_codes_page()
    nginx_section = page.split("\n## Answered by nginx\n", 1)[1]
    in_config = re.findall(r'"code":"([A-Z_]+)"', docs_reference.NGINX_PROBLEMS.read_text())

    assert "UNKNOWN_HOST" in in_config
    for code in in_config:
        assert re.search(rf"\| `{code}`(\{{#{code.lower()}\}})? \|", nginx_section), code
    assert "`UNKNOWN_HOST`{#unknown_host}" in nginx_section


def test_every_code_the_source_names_is_in_a_catalogue():
    """`ErrorCode.X` anywhere in src (a class, or a problem answered without one) is a catalogued code."""
    catalogued = {member.name for catalogue in docs_reference.error_code_catalogues() for member in catalogue}
    named = set()
    for path in SRC_DIR.rglob("*.py"):
        named.update(re.findall(r"\bErrorCode\.([A-Z_]+)\b", path.read_text(encoding="utf-8")))

    assert named
    assert named <= catalogued


# --- Data model --------------------------------------------------------------------------------


def test_the_data_model_page_shows_every_table_in_the_diagram_and_as_a_section():
    page = docs_reference.data_model_page()
    diagram = page.split("```mermaid", 1)[1].split("```", 1)[0]
    tables = docs_reference.metadata().tables.values()

    assert len(tables) > 10
    for table in tables:
        assert f"    {table.name} {{" in diagram
        assert f"\n### {table.name}\n" in page
        for column in table.columns:
            assert f" {column.name}" in diagram


def test_every_foreign_key_is_a_relationship_of_the_diagram():
    page = docs_reference.data_model_page()

    for table in docs_reference.metadata().tables.values():
        for foreign_key in table.foreign_key_constraints:
            label = ", ".join(column.name for column in foreign_key.columns)
            assert re.search(
                rf"    {foreign_key.referred_table.name} \S+ {table.name} : \"{label}\"", page
            ), (table.name, label)


def test_every_index_is_listed():
    page = docs_reference.data_model_page()

    for table in docs_reference.metadata().tables.values():
        for index in table.indexes:
            assert f"| `{index.name}` |" in page


def test_mermaid_attribute_types_are_single_words():
    diagram = docs_reference.data_model_page().split("```mermaid", 1)[1].split("```", 1)[0]
    attributes = [line.split() for line in diagram.splitlines() if line.startswith("        ")]

    assert attributes
    assert all(re.fullmatch(r"[a-z0-9_]+", parts[0]) for parts in attributes)
