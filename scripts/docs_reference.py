"""The docs site's generated pages, rendered from the code so that they cannot drift from it.

Pure functions returning Markdown; docs/gen/*.py (mkdocs-gen-files) write them to their fixed page
names at build time, and tests/test_docs_reference.py checks them without mkdocs installed:

- configuration_page(): every setting of every settings class (BaseSettings subclasses in src/), with
  the variables of `.env.sample` that are read outside the app (compose, nginx, gunicorn);
- error_codes_page(): every stable `code` of the ErrorCode catalogues, with the AppError classes
  that answer it (or how it is answered when no class does);
- data_model_page(): the SQLAlchemy metadata as a Mermaid erDiagram, with each table's columns and
  indexes.
"""

import enum
import importlib
import inspect
import json
import pkgutil
import re
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from sqlalchemy import Column, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql

import src

PROJECT_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = PROJECT_DIR / "src"
ENV_SAMPLE = PROJECT_DIR / ".env.sample"
NGINX_PROBLEMS = PROJECT_DIR / "nginx" / "studybase" / "problem-pages.conf"
# Not imported while walking src: the Alembic environment runs migrations when it is imported.
SKIPPED_PACKAGES = ("src.migrations",)
GENERATED_NOTE = (
    '!!! note "Generated page"\n'
    "    This page is generated from the code at build time by `scripts/docs_reference.py` ({source}); "
    "edit the code, not this page.\n"
)


# --- Walking src --------------------------------------------------------------------------------


@cache
def src_modules() -> tuple[types.ModuleType, ...]:
    """Every module of the application, imported: what defines settings, errors and models."""
    return tuple(_modules_of(src))


def _modules_of(package: types.ModuleType) -> Iterator[types.ModuleType]:
    """The package and its modules, depth first; skipped packages are not even imported (walk_packages
    would import them to look inside)."""
    yield package
    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        if info.name.startswith(SKIPPED_PACKAGES):
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            yield from _modules_of(module)
        else:
            yield module


def defined_in_src(predicate) -> list[type]:
    """The classes defined (not merely imported) in a module of src that satisfy `predicate`."""
    found = []
    for module in src_modules():
        for _name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__ and predicate(value):
                found.append(value)
    return found


def source_path(cls: type) -> str:
    return Path(inspect.getfile(cls)).resolve().relative_to(PROJECT_DIR).as_posix()


def own_docstring(cls: type) -> str | None:
    """The class's own docstring (not one inherited), cleaned, or None."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else None


def one_line(text: str) -> str:
    """Text fit for one cell of a Markdown table: one line, its pipes escaped, and `<` outside code
    spans escaped too (`PREFIX/<key>` is text, not an HTML tag)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if index % 2 else _escaped(part) for index, part in enumerate(parts))


def _escaped(text: str) -> str:
    return text.replace("<", "&lt;").replace("*", "\\*")


def anchor(name: str) -> str:
    return name.lower()


# --- Configuration -----------------------------------------------------------------------------


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of the application, the general one (src/config.py) first."""
    classes = defined_in_src(lambda cls: issubclass(cls, BaseSettings) and cls is not BaseSettings)
    return sorted(classes, key=lambda cls: (source_path(cls) != "src/config.py", source_path(cls)))


def settings_title(settings_class: type[BaseSettings]) -> str:
    """The section's title: what the class's docstring names before its colon ("General: ..."), or
    the class's name."""
    title, colon, _rest = (own_docstring(settings_class) or "").partition(":")
    return title.strip() if colon and title.strip() else settings_class.__name__


def settings_summary(settings_class: type[BaseSettings]) -> str:
    """What the class's docstring says after its title, as a sentence without its full stop."""
    doc = own_docstring(settings_class) or ""
    _title, colon, rest = doc.partition(":")
    summary = (rest if colon else doc).strip().rstrip(".")
    return summary[:1].upper() + summary[1:]


def environment_name(settings_class: type[BaseSettings], name: str, field: FieldInfo) -> str:
    prefix = settings_class.model_config.get("env_prefix", "")
    return f"{prefix}{field.alias or name}".upper()


def setting_names(settings_class: type[BaseSettings]) -> list[str]:
    return [environment_name(settings_class, name, f) for name, f in settings_class.model_fields.items()]


def undocumented_settings() -> list[str]:
    """`Class.NAME` of every setting without a description."""
    return [
        f"{settings_class.__name__}.{name}"
        for settings_class in settings_classes()
        for name, field in settings_class.model_fields.items()
        if not (field.description or "").strip()
    ]


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """The annotation without its `| None`, and whether it had one."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) < len(get_args(annotation)) and len(args) == 1:
            return args[0], True
    return annotation, False


BOUND_SYMBOLS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


def _bounds(field: FieldInfo) -> str:
    bounds = []
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.BaseMetadata):
            for attribute, symbol in BOUND_SYMBOLS.items():
                value = getattr(constraint, attribute, None)
                if value is not None:
                    bounds.append(f"{symbol} {value:,}")
    return ", ".join(bounds)


def type_text(field: FieldInfo) -> str:
    """The setting's type in words, with its bounds and whether it may be left unset."""
    annotation, optional = _without_none(field.annotation)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        text = "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    elif get_origin(annotation) is list:
        text = "comma-separated list"
    else:
        text = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "text",
            Path: "path",
            SecretStr: "secret text",
        }.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds(field)
    if bounds:
        text += f" ({bounds})"
    return text + (", or unset" if optional else "")


def default_text(field: FieldInfo) -> str:
    """The default as the reader writes it; never a secret's value."""
    if field.default_factory is not None:
        factory = field.default_factory
        summary = (inspect.getdoc(factory) or factory.__name__).split("\n")[0]
        return f"computed: {one_line(summary)}"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "the sample value of `.env.sample` (refused outside development and test)"
    if isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, list):
        return "empty" if not value else "`" + ",".join(map(str, value)) + "`"
    return f"`{value}`"


@dataclass(frozen=True)
class SampleEntry:
    """A variable of `.env.sample` with the comment above it (shared by the variables it covers)."""

    name: str
    comment: str


SAMPLE_VARIABLE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]+)=")


def env_sample_entries() -> list[SampleEntry]:
    entries: list[SampleEntry] = []
    comment: list[str] = []
    previous_was_variable = False
    for line in ENV_SAMPLE.read_text(encoding="utf-8").splitlines():
        variable = SAMPLE_VARIABLE.match(line)
        if variable:
            entries.append(SampleEntry(variable.group(1), " ".join(comment)))
            previous_was_variable = True
        elif not line.strip() or set(line.strip()) <= {"#", "-"}:
            comment, previous_was_variable = [], False
        elif line.startswith("#"):
            if previous_was_variable:
                comment, previous_was_variable = [], False
            comment.append(line.lstrip("#").strip())
    return entries


def _definition(name: str, *paragraphs: str) -> list[str]:
    """One entry of a definition list (the variable's name, the full width for its text): a table's
    columns would break the long names."""
    lines = [f"`{name}`{{#{anchor(name)}}}"]
    for number, paragraph in enumerate(paragraphs):
        lines.append(f"{':' if number == 0 else ' '}   {paragraph}")
        lines.append("")
    return lines


def _settings_list(settings_class: type[BaseSettings]) -> Iterator[str]:
    for name, field in settings_class.model_fields.items():
        yield from _definition(
            environment_name(settings_class, name, field),
            f"*{type_text(field)}; default: {default_text(field)}*",
            one_line(field.description or ""),
        )


def _outside_the_app(entries: Iterable[SampleEntry], app_settings: set[str]) -> Iterator[str]:
    for entry in entries:
        if entry.name not in app_settings:
            yield from _definition(entry.name, one_line(entry.comment))


def configuration_page() -> str:
    classes = settings_classes()
    lines = [
        "# Configuration reference",
        "",
        GENERATED_NOTE.format(source="the settings classes, and `.env.sample`"),
        "Studybase reads its settings from the environment and from a `.env` file in the directory it "
        "starts in; a variable set in the environment wins over `.env`. `.env.sample` lists them with "
        "their defaults: copy it to `.env` and change what you need. Every setting is optional in "
        "development; outside development and test, `SECRET_KEY` must be set to a random value. A "
        "value the app refuses (a bound, a malformed address) stops it at start with the setting's "
        "name, never with a secret's value.",
        "",
        "Settings are grouped by the module that reads them. A variable read by several modules "
        "(`ENVIRONMENT`) is set once and listed under each.",
        "",
    ]
    seen: set[str] = set()
    for settings_class in classes:
        lines += [
            f"## {settings_title(settings_class)}",
            "",
            f"{settings_summary(settings_class)} (`{settings_class.__name__}`, "
            f"`{source_path(settings_class)}`).".lstrip(),
            "",
            *_settings_list(settings_class),
            "",
        ]
        seen.update(setting_names(settings_class))
    # A variable listed under several classes gets its anchor from the first only (anchors are unique).
    lines = _unique_anchors(lines)
    lines += [
        "## Read outside the app",
        "",
        "These variables of `.env.sample` are read by Docker Compose, nginx, gunicorn or a command, not "
        "by the settings classes above; their descriptions are `.env.sample`'s own comments.",
        "",
        *_outside_the_app(env_sample_entries(), seen),
        "",
    ]
    return "\n".join(lines)


def _unique_anchors(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for line in lines:
        for found in re.findall(r"\{#([a-z0-9_]+)\}", line):
            if found in seen:
                line = line.replace(f"{{#{found}}}", "", 1)
            seen.add(found)
        unique.append(line)
    return unique


# --- Error codes -------------------------------------------------------------------------------


def error_code_catalogues() -> list[type[enum.StrEnum]]:
    """Every module's `ErrorCode` enum: the stable codes an error answer's `code` can be."""
    return defined_in_src(lambda cls: cls.__name__ == "ErrorCode" and issubclass(cls, enum.StrEnum))


def error_classes() -> list[type]:
    """Every AppError subclass of the application (AppError itself is the unexpected failure)."""
    from src.exceptions import AppError

    return defined_in_src(lambda cls: issubclass(cls, AppError) and cls is not AppError)


# Codes answered without an AppError class of their own: where they come from, and what they mean.
CODES_WITHOUT_A_CLASS = {
    "INTERNAL_ERROR": (
        "500",
        "Internal server error",
        "An unexpected failure on the server's side (a bug): nothing is promised about what was done. "
        "The log has the details under the answer's `request_id` (src/exceptions.py "
        "internal_error_response).",
    ),
    "METHOD_NOT_ALLOWED": (
        "405",
        "Method Not Allowed",
        "The path exists but not with this method; the `Allow` header lists the ones it takes.",
    ),
    "HTTP_ERROR": (
        "any other",
        "The status's phrase",
        "Any other HTTP error the framework raises itself (neither 400, 404 nor 405); the status and "
        "title say which.",
    ),
    "CORS_REJECTED": (
        "400",
        "Cross-origin request refused",
        "A browser's CORS preflight asked for an origin, method or header that CORS_ORIGINS does not "
        "allow (src/middleware.py ProblemCORSMiddleware); `detail` names what was refused.",
    ),
}


def error_class_description(cls: type) -> str | None:
    """What the class means: its own docstring and the detail it answers by default, if its own."""
    parts = []
    if own_docstring(cls):
        parts.append(one_line(own_docstring(cls)))
    if "detail" in cls.__dict__:
        parts.append(f"*“{one_line(cls.__dict__['detail'])}”*")
    return " ".join(parts) or None


def undescribed_error_codes() -> list[str]:
    """Codes with no description: an AppError class without its own docstring or detail, or a code
    of a catalogue that no class answers and CODES_WITHOUT_A_CLASS does not describe."""
    classes = error_classes()
    missing = [f"{cls.__name__} ({cls.code})" for cls in classes if not error_class_description(cls)]
    answered = {str(cls.code) for cls in classes}
    for catalogue in error_code_catalogues():
        for member in catalogue:
            if member.value not in answered and member.value not in CODES_WITHOUT_A_CLASS:
                missing.append(member.value)
    return missing


def catalogued_codes() -> set[str]:
    return {member.value for catalogue in error_code_catalogues() for member in catalogue}


def codes_outside_the_catalogues() -> list[str]:
    return sorted({str(cls.code) for cls in error_classes()} - catalogued_codes())


def _common_first(catalogue: type) -> tuple[bool, str]:
    return (catalogue.__module__ != "src.constants", catalogue.__module__)


def _catalogue_title(catalogue: type) -> str:
    module = catalogue.__module__
    return "Common to every route" if module == "src.constants" else f"The {module.split('.')[1]} module"


def _error_rows(catalogue: type[enum.StrEnum], classes: list[type]) -> Iterator[str]:
    # Four columns (the title leads the meaning): the codes' long names need the width.
    yield "| Code | Status | Meaning | Class |"
    yield "|---|---|---|---|"
    for member in sorted(catalogue, key=lambda m: m.value):
        code = f"`{member.value}`{{#{anchor(member.value)}}}"
        answering = [cls for cls in classes if str(cls.code) == member.value]
        if not answering:
            status, title, meaning = CODES_WITHOUT_A_CLASS.get(member.value, ("", "", ""))
            yield f"| {code} | {status} | **{title}.** {one_line(meaning)} | (none) |"
        for cls in answering:
            yield (
                f"| {code} | {cls.status_code} | **{one_line(cls.title)}.** "
                f"{error_class_description(cls) or ''} | `{cls.__name__}` |"
            )
            code = f"`{member.value}`"  # the anchor on the code's first row only


@dataclass(frozen=True)
class NginxProblem:
    status: int
    code: str
    title: str
    detail: str


NGINX_RETURN = re.compile(r"return (\d{3}) '(\{.*\})';")


def nginx_problems() -> list[NginxProblem]:
    """The problem+json answers nginx makes itself (nginx/studybase/problem-pages.conf)."""
    problems = []
    for status, body in NGINX_RETURN.findall(NGINX_PROBLEMS.read_text(encoding="utf-8")):
        problem = json.loads(body.replace("$studybase_request_id", ""))
        problems.append(NginxProblem(int(status), problem["code"], problem["title"], problem["detail"]))
    return problems


def _nginx_rows(problems: list[NginxProblem], catalogued: set[str]) -> Iterator[str]:
    yield "| Code | Status | Title | Detail |"
    yield "|---|---|---|---|"
    for problem in sorted(problems, key=lambda p: p.code):
        # Codes the app answers too have their anchor above.
        code = f"`{problem.code}`" + ("" if problem.code in catalogued else f"{{#{anchor(problem.code)}}}")
        yield f"| {code} | {problem.status} | {problem.title} | *“{one_line(problem.detail)}”* |"


def error_codes_page() -> str:
    classes = sorted(error_classes(), key=lambda cls: cls.__name__)
    lines = [
        "# Error codes",
        "",
        GENERATED_NOTE.format(source="the `ErrorCode` catalogues and the AppError classes"),
        "Every error answer is `application/problem+json` with a stable `code` (see [Errors](errors.md) "
        "for the shape of the body). This page lists every code, the HTTP status it comes with, and "
        "what it means; the *quoted* text is the `detail` the answer carries by default (some routes "
        "say more), after the answer's `title` in bold. A code can come from several classes: each is a "
        "row. Branch on `code`, never on `title` or `detail`, which may be reworded.",
        "",
        "The classes are those of "
        + ", ".join(f"`{path}`" for path in sorted({source_path(cls) for cls in classes}))
        + "; a code without a class is answered where the table says.",
        "",
        "Per-item problems (the `errors` array of a `VALIDATION_ERROR`, a rejected file's "
        "`report.errors`) have codes of their own, each with its meaning and its fix in "
        "[Fixing a rejected file](../user-guide/fixing-a-rejected-file.md#what-each-code-means).",
        "",
    ]
    for catalogue in sorted(error_code_catalogues(), key=_common_first):
        lines += [
            f"## {_catalogue_title(catalogue)}",
            "",
            f"The `ErrorCode` catalogue of `{source_path(catalogue)}`.",
            "",
            *_error_rows(catalogue, classes),
            "",
        ]
    lines += [
        "## Answered by nginx",
        "",
        "Behind nginx (the compose and native stacks), nginx answers these itself, in the same "
        "problem+json shape, before the request reaches the app: a request it cannot read, one past "
        "its size or rate limits, a host name it does not serve, or while the app is not answering "
        "(`nginx/studybase/problem-pages.conf`). Codes the app uses too mean the same.",
        "",
        *_nginx_rows(nginx_problems(), catalogued_codes()),
        "",
    ]
    return "\n".join(lines)


# --- Data model --------------------------------------------------------------------------------


@cache
def metadata():
    from src.database import Base

    src_modules()  # every module's models registered on Base.metadata
    return Base.metadata


def column_type(column: Column) -> str:
    """The PostgreSQL type, as one word (Mermaid's attribute types allow no spaces or parentheses)."""
    try:
        text = column.type.compile(dialect=postgresql.dialect())
    except Exception:  # a type PostgreSQL cannot name: its class name says enough
        text = type(column.type).__name__
    text = text.lower().replace("timestamp with time zone", "timestamptz")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def column_keys(column: Column) -> list[str]:
    keys = []
    if column.primary_key:
        keys.append("PK")
    if column.foreign_keys:
        keys.append("FK")
    if column.unique:
        keys.append("UK")
    return keys


def _is_unique(table: Table, columns: set[str]) -> bool:
    """Whether these columns alone identify a row (primary key, unique constraint or unique index)."""
    if {c.name for c in table.primary_key.columns} == columns:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and {c.name for c in constraint.columns} == columns:
            return True
    return any(index.unique and {c.name for c in index.columns} == columns for index in table.indexes)


def _relationships(table: Table) -> Iterator[str]:
    for foreign_key in sorted(table.foreign_key_constraints, key=lambda fk: [c.name for c in fk.columns]):
        columns = [c.name for c in foreign_key.columns]
        parent_side = "|o" if any(c.nullable for c in foreign_key.columns) else "||"
        child_side = "o|" if _is_unique(table, set(columns)) else "o{"
        label = ", ".join(columns)
        yield f'    {foreign_key.referred_table.name} {parent_side}--{child_side} {table.name} : "{label}"'


def key_columns_first(table: Table) -> list[Column]:
    """The columns in declared order, the primary key's first (mixins declare `id` last)."""
    return sorted(table.columns, key=lambda column: not column.primary_key)


def _entity(table: Table) -> Iterator[str]:
    yield f"    {table.name} {{"
    for column in key_columns_first(table):
        keys = ", ".join(column_keys(column))
        yield f"        {column_type(column)} {column.name}{' ' + keys if keys else ''}"
    yield "    }"


def _indexes(table: Table) -> Iterator[str]:
    rows = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            rows.append((constraint.name, [c.name for c in constraint.columns], "unique constraint"))
    for index in table.indexes:
        columns = [str(getattr(e, "name", None) or e) for e in index.expressions]
        kind = "unique index" if index.unique else "index"
        where = index.dialect_options["postgresql"].get("where")
        if where is not None:
            kind += f" where `{one_line(str(where))}`"
        rows.append((index.name, columns, kind))
    if not rows:
        yield "No index besides its primary key."
        return
    yield "| Index | Columns | Kind |"
    yield "|---|---|---|"
    for name, columns, kind in sorted(rows, key=lambda row: str(row[0])):
        yield f"| `{name}` | {', '.join(f'`{one_line(c)}`' for c in columns)} | {kind} |"


def _columns(table: Table) -> Iterator[str]:
    yield "| Column | Type | Null | Key |"
    yield "|---|---|---|---|"
    for column in key_columns_first(table):
        keys = column_keys(column)
        references = ", ".join(fk.target_fullname for fk in column.foreign_keys)
        key_text = ", ".join(keys) + (f" → `{references}`" if references else "")
        nullable = "yes" if column.nullable else "no"
        yield f"| `{column.name}` | {column_type(column)} | {nullable} | {key_text} |"


def data_model_page() -> str:
    tables = sorted(metadata().tables.values(), key=lambda t: t.name)
    diagram = ["```mermaid", "erDiagram"]
    for table in tables:
        diagram += list(_entity(table))
    for table in tables:
        diagram += list(_relationships(table))
    diagram.append("```")
    lines = [
        "# Data model",
        "",
        GENERATED_NOTE.format(source="the SQLAlchemy models' metadata"),
        "Every table of the database, as the models declare it (the migrations in `src/migrations` "
        "create the same). Types are PostgreSQL's; on SQLite the same columns use its types. In the "
        "diagram a line joins a table to the one its foreign key refers to; `|o` marks a reference "
        "that may be empty, `o|` one that is unique.",
        "",
        *diagram,
        "",
        "## Tables",
        "",
    ]
    for table in tables:
        lines += [f"### {table.name}", "", *_columns(table), "", *_indexes(table), ""]
    return "\n".join(lines)
