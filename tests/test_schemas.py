"""SingleLineText: what one-line text refuses and what it keeps (issue 11, item 12); and that the
OpenAPI document states the rules of text, If-Match, nulls and either/or fields as the server has them."""

import jsonschema_rs
import pytest
from pydantic import TypeAdapter, ValidationError

from src.app import create_app
from src.auth.constants import FULL_NAME_MAX_LENGTH
from src.auth.schemas import Email, FullName, PasswordText
from src.dependencies import if_match_version
from src.exceptions import InvalidIfMatch, PreconditionFailed
from src.invitations.schemas import InvitationCreate
from src.schemas import SingleLineText
from src.study import sample_schema
from src.study.constants import CODE_MAX_LENGTH, SAMPLE_ID_MAX_LENGTH, TITLE_MAX_LENGTH, FieldType
from src.study.schemas import Description, SampleId, StudyCode, Title

single_line = TypeAdapter(SingleLineText)


@pytest.mark.parametrize(
    "character",
    [chr(code) for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]
    + [
        "\u200b",
        "\u2028",
        "\u2029",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
        "\ufeff",
    ],
)
def test_control_invisible_and_bidirectional_override_characters_are_refused(character):
    with pytest.raises(ValidationError):
        single_line.validate_python(f"Ada{character}")


@pytest.mark.parametrize(
    "text",
    [
        "Ada Lovelace",
        "Zoë Ångström",
        "\u05d3\u05d5\u05d3 (\u200fDavid)",
        "\u0645\u06cc\u200c\u062e",
        "👩\u200d🔬 Ada",
    ],
    ids=["ascii", "accents", "rtl-mark", "zero-width-non-joiner", "zero-width-joiner"],
)
def test_ordinary_names_in_any_script_are_kept(text):
    assert single_line.validate_python(text) == text


# The OpenAPI document states these rules as JSON Schema patterns (ECMA-262, read here by the
# validator Schemathesis uses): for every character of the Basic Multilingual Plane (all the
# controls and white space are there) and a few beyond, in each place in a value, the pattern
# admits exactly what the server's own validation accepts.
OPENAPI = create_app().openapi()
SCHEMAS = OPENAPI["components"]["schemas"]
CHARACTERS = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF] + ["😀", "\U000822e0"]
PLACES = ["{}", "Ada{}", "{}Ada", " {} ", "Ada {} Ada", "{}{}", " {}Ada\t"]


def pattern_of(schema: dict) -> jsonschema_rs.Validator:
    branch = next(branch for branch in schema.get("anyOf", [schema]) if branch.get("type") == "string")
    return jsonschema_rs.validator_for({"type": "string", "pattern": branch["pattern"]})


def documented_body(model: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({**SCHEMAS[model], "components": {"schemas": SCHEMAS}})


def accepts(adapter: TypeAdapter, text: str) -> bool:
    try:
        adapter.validate_python(text)
    except ValidationError:
        return False
    return True


def disagreements(documented: jsonschema_rs.Validator, adapter: TypeAdapter) -> list[str]:
    return [
        text
        for text in (place.format(character, character) for place in PLACES for character in CHARACTERS)
        if documented.is_valid(text) != accepts(adapter, text)
    ]


@pytest.mark.parametrize(
    ("schema", "annotation"),
    [
        (SCHEMAS["RegisterRequest"]["properties"]["full_name"], FullName),
        (SCHEMAS["StudyCreate"]["properties"]["title"], Title),
        (SCHEMAS["SampleCreate"]["properties"]["sample_id"], SampleId),
        (SCHEMAS["TokenForm"]["properties"]["username"], SingleLineText),
        (SCHEMAS["StudyCreate"]["properties"]["description"], Description),
        (SCHEMAS["PasswordChange"]["properties"]["current_password"], PasswordText),
    ],
    ids=[
        "full_name (trimmed)",
        "title (trimmed)",
        "sample_id (trimmed)",
        "single line",
        "description",
        "password",
    ],
)
def test_the_documented_pattern_admits_exactly_what_the_server_accepts(schema, annotation):
    assert disagreements(pattern_of(schema), TypeAdapter(annotation)) == []


def test_every_query_text_documents_the_single_line_pattern():
    queries = [
        parameter
        for methods in OPENAPI["paths"].values()
        for operation in methods.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "q"
    ]
    assert len(queries) == 3
    for parameter in queries:
        assert pattern_of(parameter["schema"]).is_valid("S-00")
        assert not pattern_of(parameter["schema"]).is_valid("S-0\u202e0")


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.org",
        "ada@x.test",
        "ada@X.TEST",
        "ada@x.local",
        "ada@localhost",
        "ada@x.onion",
        "ada@tester.org",
    ],
)
def test_the_documented_email_pattern_refuses_the_special_use_domains_the_server_refuses(email):
    documented = pattern_of(SCHEMAS["RegisterRequest"]["properties"]["email"])
    assert documented.is_valid(email) == accepts(TypeAdapter(Email), email)


@pytest.mark.parametrize(
    "if_match",
    [
        '"3"',
        'W/"3"',
        "*",
        '"123456789012345678"',
        "null",
        "abc",
        '"3',
        "3",
        '"-1"',
        '"1234567890123456789"',
        '"3", "4"',
    ],
)
async def test_the_documented_if_match_pattern_is_what_the_server_reads_and_can_match(if_match):
    parameter = next(
        parameter
        for parameter in OPENAPI["paths"]["/api/v1/studies/{study_id}"]["patch"]["parameters"]
        if parameter["name"] == "if-match"
    )
    try:
        await if_match_version(if_match)
        read = True
    except InvalidIfMatch:
        read = False
    except PreconditionFailed:  # a weak tag: read, but it never matches
        read = False
    assert pattern_of(parameter["schema"]).is_valid(if_match) == read


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("UserUpdate", ["full_name", "role", "is_active"]),
        ("StudyUpdate", ["code", "title"]),
        ("SampleUpdate", ["sample_id", "status", "values"]),
    ],
)
def test_fields_that_may_be_left_out_but_not_null_are_not_documented_nullable(model, names):
    validator = documented_body(model)
    for name in names:
        assert "null" not in str(SCHEMAS[model]["properties"][name]), name
        assert not validator.is_valid({name: None})


@pytest.mark.parametrize(
    "body",
    [
        {"role": "editor"},
        {"role": "editor", "email": None},
        {"role": "editor", "email": "grace@example.org"},
        {"role": "boss", "email": "grace@example.org"},
        {"role": "editor", "user_id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90"},
        {"role": "editor", "user_id": "3f2b8c1e-7d4a-4e8b-9a61-0c5d2e7f1a90", "email": "grace@example.org"},
    ],
)
def test_the_documented_invitation_names_one_address_and_a_role_as_the_server_requires(body):
    validator = documented_body("InvitationCreate")
    assert validator.is_valid(body) == accepts(TypeAdapter(InvitationCreate), body)


@pytest.mark.parametrize(
    "definition",
    [
        {"name": "volume", "type": "number", "min": 0, "max": 1.5, "unit": "mL"},
        {"name": "count", "type": "integer", "min": 1.0},
        {"name": "count", "type": "integer", "min": 1.5},
        {"name": "count", "type": "integer", "max": 2**53 + 1},
        {"name": "count", "type": "integer", "max": 2**53},
        {"name": "count", "type": "integer", "max": 2**53 - 1},
        {"name": "volume", "type": "number", "min": -(2**53)},
        {"name": "volume", "type": "number", "min": -(2**53) + 1},
        {"name": "label", "type": "text", "max_length": 10_000},
        {"name": "label", "type": "text", "max_length": 10_001},
        {"name": "label", "type": "text", "max_length": 20, "pattern": "[A-Z]+"},
        {"name": "label", "type": "text", "min": 1},
        {"name": "tissue", "type": "choice", "choices": ["blood", "saliva"]},
        {"name": "tissue", "type": "choice"},
        {"name": "tissue", "type": "choice", "choices": ["blood", "blood"]},
        {"name": "tissue", "type": "choice", "choices": [" blood"]},
        {"name": "tissue", "type": "choice", "choices": ["blood"], "max_length": None},
        {"name": "seen", "type": "boolean", "choices": ["x"]},
        {"name": "seen", "type": "date", "unit": "day "},
        {"name": "seen", "type": "date", "description": "when\u202e"},
        {"name": "Status", "type": "date"},
        {"name": "seen", "type": "date", "colour": "red"},
    ],
)
def test_the_documented_sample_field_is_what_the_server_reads(definition):
    validator = documented_body("SampleFieldDefinition")
    try:
        sample_schema.read_sample_field(definition)
        read = True
    except sample_schema.SampleSchemaError:
        read = False
    assert validator.is_valid(definition) == read


@pytest.mark.parametrize(
    ("text_type", "limit"),
    [
        (Title, TITLE_MAX_LENGTH),
        (StudyCode, CODE_MAX_LENGTH),
        (SampleId, SAMPLE_ID_MAX_LENGTH),
        (FullName, FULL_NAME_MAX_LENGTH),
    ],
    ids=["title", "code", "sample_id", "full_name"],
)
def test_trimmed_text_is_measured_as_sent_as_the_document_says(text_type, limit):
    """maxLength counts what the client sends, spaces around the text included (the fuzzer sent a
    101-character sample_id, six of them spaces, and it was taken under a documented 100)."""
    adapter = TypeAdapter(text_type)
    fits = "A" * (limit - 2)

    assert adapter.json_schema()["maxLength"] == limit
    assert adapter.validate_python(f" {fits} ") == fits
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python(f"  {fits} ")
    assert refused.value.errors()[0]["type"] == "string_too_long"


# Issue 17: the document in the shapes client generators read. A field definition is a discriminated
# union (one object per `type`, each with its own constraints), and each shape says what the server
# reads, rule by rule.
FIELD_SHAPES = SCHEMAS["SampleFieldDefinition"]
_SAFE = 2**53 - 1


def shape_of(field_type: str) -> dict:
    ref = FIELD_SHAPES["discriminator"]["mapping"][field_type]
    return SCHEMAS[ref.rsplit("/", 1)[1]]


def documented_shape(field_type: str) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for({**shape_of(field_type), "components": {"schemas": SCHEMAS}})


@pytest.mark.parametrize("model", ["SampleFieldDefinition", "SampleFieldRead"])
def test_a_field_definition_is_documented_as_a_discriminated_union_of_one_shape_per_type(model):
    union = SCHEMAS[model]

    assert "anyOf" not in union
    assert "properties" not in union
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(FieldType)
    assert sorted(branch["$ref"] for branch in union["oneOf"]) == sorted(mapping.values())
    for field_type, ref in mapping.items():
        shape = SCHEMAS[ref.rsplit("/", 1)[1]]
        assert shape["type"] == "object"
        assert shape["additionalProperties"] is False
        assert shape["properties"]["type"] == {"type": "string", "const": field_type, "title": "Type"}
        assert set(shape["required"]) >= {"name", "type"}


OWN_CONSTRAINTS = {
    "text": {"max_length", "pattern"},
    "integer": {"min", "max"},
    "number": {"min", "max"},
    "boolean": set(),
    "date": set(),
    "datetime": set(),
    "choice": {"choices"},
}


@pytest.mark.parametrize("field_type", list(OWN_CONSTRAINTS))
def test_each_shape_lists_its_own_constraints_and_the_others_only_as_null(field_type):
    properties = shape_of(field_type)["properties"]
    constraints = {"max_length", "pattern", "min", "max", "choices"}

    for key in constraints - OWN_CONSTRAINTS[field_type]:
        assert properties[key]["type"] == "null", key
    for key in OWN_CONSTRAINTS[field_type]:
        assert properties[key].get("type") != "null", key
        assert properties[key] != {"type": "null"}, key
    assert set(properties) == {"name", "type", "required", "unit", "description"} | constraints


def reads(definition: dict) -> bool:
    try:
        sample_schema.read_sample_field(definition)
    except sample_schema.SampleSchemaError:
        return False
    return True


FOREIGN = {"max_length": 10, "pattern": "[a-z]+", "min": 0, "max": 1, "choices": ["a"]}
PER_TYPE_DEFINITIONS = [
    *[{"type": "text", "max_length": length} for length in (0, 1, 10_000, 10_001, 5.5, None, "9", True)],
    *[{"type": "text", "pattern": pattern} for pattern in ("", "x", "x" * 500, "x" * 501, None, 5)],
    *[
        {"type": kind, key: bound}
        for kind in ("integer", "number")
        for key in ("min", "max")
        for bound in (_SAFE, _SAFE + 1, -_SAFE, -_SAFE - 1, 0, None, "1", True)
    ],
    *[{"type": "integer", "min": bound} for bound in (1.5, 2.0, -0.5)],
    *[{"type": "number", "max": bound} for bound in (1.5, -2.25, 1e300)],
    *[
        {"type": "choice", "choices": choices}
        for choices in (
            [],
            ["a"],
            ["a", "b"],
            ["a", "a"],
            ["a", " a"],
            ["a "],
            [""],
            ["x" * 200],
            ["x" * 201],
            [str(n) for n in range(1_000)],
            [str(n) for n in range(1_001)],
            ["a\u202e"],
            None,
            "a",
            [1],
        )
    ],
    {"type": "choice"},
    *[
        {"type": kind, key: value}
        for kind in ("boolean", "date", "datetime", "text", "integer", "number", "choice")
        for key, value in FOREIGN.items()
        if key not in OWN_CONSTRAINTS[kind]
    ],
    *[
        {"type": kind, key: None}
        for kind in ("boolean", "date", "datetime", "text", "integer", "choice")
        for key in FOREIGN
        if key not in OWN_CONSTRAINTS[kind]
    ],
    *[
        {"type": "date", "name": name}
        for name in ("a", "A" * 64, "A" * 65, "1a", "_a", "SAMPLE_ID", "sTaTuS")
    ],
    *[{"type": "date", "unit": unit} for unit in ("mL", " mL", "", "x" * 50, "x" * 51, None, 5)],
    *[{"type": "date", "description": text} for text in ("Day", "x" * 1000, "x" * 1001, "a\nb", None)],
    *[{"type": "date", "required": required} for required in (True, False, None, "yes", 1)],
    {"type": "date", "colour": "red"},
    {"type": "time"},
    {"type": None},
]


@pytest.mark.parametrize("definition", PER_TYPE_DEFINITIONS, ids=repr)
def test_each_types_shape_states_the_rules_the_server_reads(definition):
    definition = {"name": "field", **definition}
    if definition.get("type") == "choice" and "choices" not in definition and len(definition) > 2:
        definition["choices"] = ["a"]
    server_reads = reads(definition)

    assert documented_body("SampleFieldDefinition").is_valid(definition) == server_reads
    if definition["type"] in OWN_CONSTRAINTS:
        assert documented_shape(definition["type"]).is_valid(definition) == server_reads
