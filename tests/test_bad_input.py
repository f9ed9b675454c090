"""Garbage to every route that takes input: always a 4xx problem+json, quickly, and nothing stored.

The routes come from the OpenAPI document, so a new route is covered the day it is added. Each
route is called with real ids (an admin owns the study, a member, a sample and a sample file), so a
request is refused for its garbage, not for an id that does not exist. Each bad body is the route's
own documented example with one thing spoiled, so the answer is about that one thing.
"""

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from src.app import create_app
from src.auth.constants import Role
from src.constants import API_PREFIX
from src.database import Base, SessionFactory
from src.sampleFileUpload.router import UPLOAD_BODY
from src.study.constants import StudyRole, StudyStatus
from tests.conftest import PROBLEM_FIELDS, bearer
from tests.sampleFileUpload.conftest import sample_csv, stored_files
from tests.study.conftest import FIELDS

OPENAPI = create_app().openapi()
MB = 1024 * 1024
# Generous for a loaded 2-core CI machine; a request that does real work on its garbage (parsing a
# 10,000-deep body, validating 100,000 items) takes seconds, not milliseconds.
MAX_SECONDS = 2.0
BAD_IDS = ("-1", "0", "99999999999999999999999999999999", "1e999", "%00", "%FF%FE", "x" * 4096)
BAD_NUMBERS = ("0", "-1", "-99999999999999999999", "99999999999999999999", "1e999", "NaN", "1.5", "%00")
UNKNOWN_FIELD = "unexpected_field"
# A query value as long as a URL may be (httpx sends at most 64 KB; nginx refuses far less, 414).
LONGEST_URL_VALUE = 60_000


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any] = field(hash=False, compare=False)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [parameter for parameter in self.spec.get("parameters", []) if parameter["in"] == where]

    @property
    def body_types(self) -> dict[str, Any]:
        return self.spec.get("requestBody", {}).get("content", {})


def operations_taking_input() -> list[Operation]:
    found = []
    for path, methods in OPENAPI["paths"].items():
        for method, spec in methods.items():
            operation = Operation(method.upper(), path, spec)
            if operation.body_types or operation.parameters("query") or operation.parameters("path"):
                found.append(operation)
    return found


OPERATIONS = operations_taking_input()


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def documented_example(media: dict[str, Any]) -> Any:
    """The example the route documents for this body (whole, or built from its properties')."""
    if "example" in media:
        return media["example"]
    schema = resolved(media["schema"])
    if "example" in schema:
        return schema["example"]
    if "examples" in schema:
        return schema["examples"][0]
    properties = {name: resolved(spec) for name, spec in schema.get("properties", {}).items()}
    return {name: spec["examples"][0] for name, spec in properties.items() if "examples" in spec}


def strings_replaced(document: Any, replace) -> Iterator[Any]:
    """The document once per string in it, with that one string replaced."""
    if isinstance(document, str):
        yield replace(document)
    elif isinstance(document, dict):
        for key, value in document.items():
            for spoiled in strings_replaced(value, replace):
                yield {**document, key: spoiled}
    elif isinstance(document, list):
        for index, value in enumerate(document):
            for spoiled in strings_replaced(value, replace):
                yield [*document[:index], spoiled, *document[index + 1 :]]


def numbers_replaced(document: Any, number: str) -> Iterator[str]:
    """The document as JSON text once per number in it, with that number's text replaced."""
    marker = "\u2603number\u2603"

    def walk(node: Any) -> Iterator[Any]:
        if isinstance(node, bool):
            return
        if isinstance(node, int | float):
            yield marker
        elif isinstance(node, dict):
            for key, value in node.items():
                for spoiled in walk(value):
                    yield {**node, key: spoiled}
        elif isinstance(node, list):
            for index, value in enumerate(node):
                for spoiled in walk(value):
                    yield [*node[:index], spoiled, *node[index + 1 :]]

    for spoiled in walk(document):
        yield json.dumps(spoiled).replace(f'"{marker}"', number)


def with_unknown_field(document: Any) -> Any:
    if isinstance(document, dict):
        return {**document, UNKNOWN_FIELD: 1}
    spoiled = copy.deepcopy(document)
    spoiled[0] = with_unknown_field(spoiled[0])
    return spoiled


JSON = "application/json"


def json_bodies(example: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    text = json.dumps(example)
    yield "malformed JSON", {"content": text[:-1], "headers": {"Content-Type": JSON}}
    yield "malformed JSON", {"content": "{'single': 'quotes'}", "headers": {"Content-Type": JSON}}
    yield "empty body", {"content": b"", "headers": {"Content-Type": JSON}}
    yield "JSON null", {"content": "null", "headers": {"Content-Type": JSON}}
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data",
    ):
        yield (
            f"wrong content type {content_type}",
            {"content": text, "headers": {"Content-Type": content_type}},
        )
    yield "nested 10,000 deep", {"content": "[" * 10_000 + "]" * 10_000, "headers": {"Content-Type": JSON}}
    yield (
        "nested 10,000 deep",
        {"content": '{"a":' * 10_000 + "1" + "}" * 10_000, "headers": {"Content-Type": JSON}},
    )
    yield "100,000 items", {"content": json.dumps([0] * 100_000), "headers": {"Content-Type": JSON}}
    if isinstance(example, dict):
        many = {**example, "values": list(range(100_000))}
        yield "100,000 items", {"content": json.dumps(many), "headers": {"Content-Type": JSON}}
    yield "NaN", {"content": text.replace("}", ', "nan": NaN}', 1), "headers": {"Content-Type": JSON}}
    yield "invalid UTF-8", {"content": text.encode()[:-1] + b'\xff\xfe"}', "headers": {"Content-Type": JSON}}
    yield "unknown field", {"json": with_unknown_field(example)}
    for spoiled in strings_replaced(example, lambda _: "a" * MB):
        yield "string of 1 MB", {"json": spoiled}
    for spoiled in strings_replaced(example, lambda _: "a" * (MB // 2)):
        yield "string of half a MB", {"json": spoiled}
    for spoiled in strings_replaced(example, lambda text: text + "\x00"):
        yield "NUL byte", {"json": spoiled}
    for spoiled in strings_replaced(example, lambda text: text + "\ud800"):
        yield "lone surrogate", {"content": json.dumps(spoiled), "headers": {"Content-Type": JSON}}
    for spoiled in strings_replaced(example, lambda _: "\udc00x"):
        yield "lone surrogate", {"content": json.dumps(spoiled), "headers": {"Content-Type": JSON}}
    for spoiled in strings_replaced(example, lambda text: "\ufffe" + text):
        yield (
            "invalid UTF-8 in a string",
            {
                "content": json.dumps(spoiled, ensure_ascii=False)
                .encode()
                .replace("\ufffe".encode(), b"\xc3\x28"),
                "headers": {"Content-Type": JSON},
            },
        )
    for number in ("1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 4000):
        for spoiled in numbers_replaced(example, number):
            yield f"number {number[:12]}", {"content": spoiled, "headers": {"Content-Type": JSON}}
    for other in (0, "text", True):
        yield f"a {type(other).__name__} instead of the body", {"json": other}


def form_bodies(example: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    # Unknown form fields are not sent: the OAuth2 token endpoint must ignore unrecognized
    # parameters (RFC 6749, section 3.2).
    yield "wrong content type", {"json": example}
    yield "wrong content type", {"content": json.dumps(example), "headers": {"Content-Type": "text/plain"}}
    yield (
        "malformed form",
        {"content": b"%%%=%%%&&&", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    )
    yield (
        "invalid UTF-8",
        {
            "content": b"username=%FF%FE&password=x",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    )
    for name in example:
        yield "NUL byte", {"data": {**example, name: example[name] + "\x00"}}
        yield "string of 1 MB", {"data": {**example, name: "a" * MB}}
        yield "string of half a MB", {"data": {**example, name: "a" * (MB // 2)}}
        yield (
            "lone surrogate",
            {
                "content": f"{name}=%ED%A0%80".encode(),
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
        )


def upload_form_fields() -> list[str]:
    """The upload's small form fields as its OpenAPI body documents them (mode, dry_run, date_order...)."""
    schema = UPLOAD_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]
    return [name for name in schema["properties"] if name != "file"]


def multipart_bodies() -> Iterator[tuple[str, dict[str, Any]]]:
    """Garbage in the form; a well-formed file with bad cells is not sent: its rejection is kept on
    record by design (tests/sampleFileUpload)."""
    csv = sample_csv(2)
    yield "wrong content type", {"json": {"file": csv.decode()}}
    yield "wrong content type", {"content": csv, "headers": {"Content-Type": "text/csv"}}
    yield (
        "malformed multipart",
        {"content": b"--x\r\nnonsense", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    )
    yield "malformed multipart", {"content": csv, "headers": {"Content-Type": "multipart/form-data"}}
    yield "unknown field", {"files": {"file": ("s.csv", csv, "text/csv")}, "data": {UNKNOWN_FIELD: "1"}}
    yield "two files", {"files": [("file", ("a.csv", csv, "text/csv")), ("file", ("b.csv", csv, "text/csv"))]}
    for name in upload_form_fields():
        yield "NUL byte", {"files": {"file": ("s.csv", csv, "text/csv")}, "data": {name: "\x00"}}
        yield "string of 1 MB", {"files": {"file": ("s.csv", csv, "text/csv")}, "data": {name: "a" * MB}}
    # Raw: httpx (like a browser) would send a NUL in a file name as `%00`.
    raw = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="s\x00.csv"\r\n\r\n'
        + csv
        + b"\r\n--x--\r\n"
    )
    yield (
        "NUL byte in the file name",
        {"content": raw, "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    )
    yield "an empty file", {"files": {"file": ("s.csv", b"", "text/csv")}}


def body_requests(operation: Operation) -> Iterator[tuple[str, dict[str, Any]]]:
    for media_type, media in operation.body_types.items():
        if media_type == JSON:
            yield from json_bodies(documented_example(media))
        elif media_type == "application/x-www-form-urlencoded":
            yield from form_bodies(documented_example(media))
        elif media_type == "multipart/form-data":
            yield from multipart_bodies()
        else:
            raise AssertionError(f"{operation}: no bad bodies known for {media_type}")


def query_requests(operation: Operation) -> Iterator[tuple[str, dict[str, Any]]]:
    for parameter in operation.parameters("query"):
        name, schema = parameter["name"], parameter["schema"]
        types = {resolved(option).get("type") for option in schema.get("anyOf", [schema])}
        if types & {"integer", "number"}:
            for number in BAD_NUMBERS:
                yield f"{name}={number}", {"params_text": f"{name}={number}"}
            yield f"duplicate {name}", {"params_text": f"{name}=1&{name}=2"}
        else:
            yield f"duplicate {name}", {"params_text": f"{name}=a&{name}=b"}
        yield f"{name} of 60 KB", {"params_text": f"{name}={'a' * LONGEST_URL_VALUE}"}
        yield f"NUL in {name}", {"params_text": f"{name}=a%00b"}
        yield f"invalid UTF-8 in {name}", {"params_text": f"{name}=%FF%FE"}
        yield f"lone surrogate in {name}", {"params_text": f"{name}=%ED%A0%80"}


@dataclass
class World:
    """Every id a route may name, and the admin's Authorization header."""

    ids: dict[str, str]
    headers: dict[str, str]


def path_of(operation: Operation, ids: dict[str, str], **overrides: str) -> str:
    return operation.path.format(**{**ids, **overrides})


def path_requests(operation: Operation) -> Iterator[tuple[str, dict[str, Any]]]:
    for parameter in operation.parameters("path"):
        for bad in BAD_IDS:
            yield f"{parameter['name']}={bad[:20]}", {"path_override": {parameter["name"]: bad}}


def bad_requests(operation: Operation) -> list[tuple[str, dict[str, Any]]]:
    return [*path_requests(operation), *query_requests(operation), *body_requests(operation)]


@pytest.fixture
async def world(make_user, make_study, make_sample, add_member, login, client) -> World:
    admin = await make_user(role=Role.ADMIN)
    member = await make_user()
    study = await make_study(owner=admin, sample_fields=FIELDS, status=StudyStatus.ACTIVE)
    await add_member(study, member, StudyRole.EDITOR)
    sample = await make_sample(study, values={"tissue": "blood"})
    headers = bearer(await login(admin))
    uploaded = await client.post(
        f"{API_PREFIX}/studies/{study.id}/sample-files",
        files={"file": ("samples.csv", sample_csv(2), "text/csv")},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    sessions = (await client.get(f"{API_PREFIX}/auth/sessions", headers=headers)).json()
    invited = await client.post(
        f"{API_PREFIX}/studies/{study.id}/members",
        json={"email": "invited@example.org", "role": "viewer"},
        headers=headers,
    )
    assert invited.status_code == 202, invited.text
    return World(
        ids={
            "study_id": str(study.id),
            "sample_pk": str(sample.id),
            "user_id": str(member.id),
            "file_id": uploaded.json()["id"],
            "session_id": sessions[0]["id"],
            "invitation_id": invited.json()["id"],
        },
        headers=headers,
    )


async def every_row() -> dict[str, list[tuple]]:
    async with SessionFactory() as session:
        return {
            table.name: sorted(map(tuple, (await session.execute(select(table))).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def stored_file_contents() -> dict[Path, bytes]:
    """Every file under UPLOAD_DIR, temporary ones included, with what it holds."""
    return {path: path.read_bytes() for path in stored_files()}


async def send(client: httpx.AsyncClient, operation: Operation, world: World, request: dict[str, Any]):
    request = dict(request)
    url = path_of(operation, world.ids, **request.pop("path_override", {}))
    if "params_text" in request:
        url = f"{url}?{request.pop('params_text')}"
    headers = {**world.headers, **request.pop("headers", {})}
    return await client.request(operation.method, url, headers=headers, **request)


def test_the_route_list_comes_from_the_openapi_document_and_is_not_trivial():
    routes = {str(operation) for operation in OPERATIONS}
    assert len(routes) >= 30
    assert {"POST /api/v1/studies", "PATCH /api/v1/studies/{study_id}/samples/{sample_pk}"} <= routes
    assert {"POST /api/v1/auth/token", "POST /api/v1/studies/{study_id}/sample-files"} <= routes
    assert all(len(bad_requests(operation)) >= len(BAD_IDS) for operation in OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_garbage_gets_a_quick_4xx_problem_and_stores_nothing(
    client, world: World, operation: Operation
):
    before = await every_row()
    files = stored_file_contents()
    assert files  # the world's upload: this is where the app stores files
    failures = []

    for kind, request in bad_requests(operation):
        started = time.perf_counter()
        response = await send(client, operation, world, request)
        seconds = time.perf_counter() - started
        is_problem = response.headers.get("content-type") == "application/problem+json"
        if not (400 <= response.status_code < 500 and is_problem and seconds < MAX_SECONDS):
            failures.append((kind, response.status_code, round(seconds, 2), response.text[:300]))
        elif not set(response.json()) >= PROBLEM_FIELDS:
            failures.append((kind, "fields", response.json()))
        files_after = stored_file_contents()
        if files_after != files:
            changed = sorted(str(path) for path in files.keys() ^ files_after.keys()) or "contents"
            failures.append((kind, "files under UPLOAD_DIR changed", changed))
            files = files_after

    assert failures == []
    assert await every_row() == before


# Every string a client can send has a documented maximum length

# Formats whose values are bounded by their syntax; `binary` is the uploaded file (MAX_UPLOAD_MB).
BOUNDED_FORMATS = {"uuid", "date", "date-time", "binary"}


def schemas_in(node: Any, seen: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema inside `node`, following $refs (each component once), with where it was found."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                yield from ((f"{name}{where}", schema) for where, schema in schemas_in(resolved(node), seen))
            return
        yield "", node
        for key, value in node.items():
            yield from ((f".{key}{where}", schema) for where, schema in schemas_in(value, seen))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from ((f"[{index}]{where}", schema) for where, schema in schemas_in(value, seen))


def unbounded_input_strings() -> list[str]:
    unbounded = []
    for operation in OPERATIONS:
        seen: set[str] = set()
        inputs = {"parameters": operation.spec.get("parameters", []), "body": operation.body_types}
        for where, schema in schemas_in(inputs, seen):
            bounded = "maxLength" in schema or "enum" in schema or "const" in schema
            if schema.get("type") == "string" and not bounded and schema.get("format") not in BOUNDED_FORMATS:
                unbounded.append(f"{operation} {where}")
    return unbounded


def test_every_string_a_client_sends_has_a_documented_maximum_length():
    assert unbounded_input_strings() == []


@pytest.mark.parametrize(
    ("operation", "spoil", "code"),
    [
        ("POST /api/v1/studies", lambda body: {**body, "code": "A" * 33}, "string_too_long"),
        (
            "POST /api/v1/studies",
            lambda body: {**body, "sample_fields": [{"name": "a" * 65, "type": "text"}]},
            "invalid_sample_field",  # the sample fields' own validation, one error per field
        ),
        ("POST /api/v1/auth/register", lambda body: {**body, "full_name": "a" * 201}, "string_too_long"),
    ],
    ids=["code", "field name", "full name"],
)
async def test_the_documented_maximum_length_is_enforced(client, world: World, operation: str, spoil, code):
    route = next(candidate for candidate in OPERATIONS if str(candidate) == operation)
    body = spoil(documented_example(route.body_types[JSON]))

    response = await send(client, route, world, {"json": body})

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["code"] == code
