"""Every JSON body is held to structural limits, and a refused one answers small (issue 11, item 1)."""

import json

import pytest

from src.constants import MAX_BODY_BYTES, MAX_JSON_ARRAY_ITEMS, MAX_JSON_DEPTH, MAX_PROBLEM_ERRORS
from src.middleware import RequestMiddleware
from tests.conftest import assert_problem

REFRESH = "/api/v1/auth/refresh"
REGISTER = "/api/v1/auth/register"
SMALL_ANSWER_BYTES = 16 * 1024


async def post_json(client, path: str, body: bytes):
    return await client.post(path, content=body, headers={"Content-Type": "application/json"})


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", [REFRESH, REGISTER])
@pytest.mark.parametrize(
    "body",
    [
        json.dumps({f"k{i}": 0 for i in range(80_000)}).encode(),
        b"[" * 100_000,
        b"[" * 5_000,
        nested(MAX_JSON_DEPTH + 1),
        b"[" + b",".join([b"0"] * (MAX_JSON_ARRAY_ITEMS + 1)) + b"]",
        b'{"email": [' + b",".join([b"0"] * 200_000) + b"]}",
        b"[" + b",".join([b"[]"] * 20_000) + b"]",
        b"[" + b",".join([b"[" + b",".join([b"1e308"] * 9_000) + b"]"] * 6) + b"]",
        b'{"refresh_token": ' + b"9" * 500_000 + b"}",
    ],
    ids=[
        "80k-unknown-keys",
        "100k-open-brackets",
        "past-the-recursion-limit",
        "too-deep",
        "long-array",
        "long-array-in-a-field",
        "many-containers",
        "many-values",
        "500k-digit-integer",
    ],
)
async def test_a_body_past_a_structural_limit_is_refused_small(client, path, body):
    assert len(body) < MAX_BODY_BYTES

    response = await post_json(client, path, body)

    assert_problem(response, 422, "BODY_TOO_COMPLEX")
    assert len(response.content) < SMALL_ANSWER_BYTES


async def test_the_deepest_allowed_nesting_reaches_the_schema(client):
    response = await post_json(client, REFRESH, b'{"refresh_token": ' + nested(MAX_JSON_DEPTH - 1) + b"}")

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["loc"] == ["body", "refresh_token"]


async def test_nan_is_not_json(client):
    response = await post_json(client, REFRESH, b'{"refresh_token": NaN}')

    assert_problem(response, 400, "MALFORMED_BODY")


async def test_many_errors_are_capped_with_their_total(client):
    unknown = {f"k{i}": 0 for i in range(900)}

    response = await client.post(REFRESH, json=unknown)

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert len(body["errors"]) == MAX_PROBLEM_ERRORS
    assert body["errors_total"] == 901  # the 900 unknown keys and the missing refresh_token
    assert body["errors_truncated"] is True
    assert len(response.content) < SMALL_ANSWER_BYTES


async def test_few_errors_are_all_listed(client):
    response = await client.post(REFRESH, json={})

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert len(body["errors"]) == body["errors_total"] == 1
    assert body["errors_truncated"] is False


async def test_a_body_over_the_size_limit_is_413_even_without_nginx(client):
    response = await post_json(client, REFRESH, b'{"refresh_token": "' + b"a" * MAX_BODY_BYTES + b'"}')

    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_a_body_within_the_limits_still_reaches_the_route(client):
    response = await client.post(
        REGISTER, json={"email": "ada@example.org", "password": "a good long password", "full_name": "Ada"}
    )

    assert response.status_code == 202, response.text


async def test_the_problem_schema_documents_the_capped_errors(client):
    problem = (await client.get("/openapi.json")).json()["components"]["schemas"]["Problem"]

    assert {"errors", "errors_total", "errors_truncated"} <= set(problem["properties"])


JSON_SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/x",
    "headers": [(b"content-type", b"application/json")],
}


async def test_a_client_gone_before_its_body_ended_reaches_no_route():
    called, sent = [], []
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def route(scope, receive, send):
        called.append(scope)

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    await RequestMiddleware(route)(JSON_SCOPE, receive, send)

    assert called == []
    assert sent == []


async def test_the_route_gets_the_body_read_once_then_what_the_server_sends_next():
    received = []
    messages = iter(
        [
            {"type": "http.request", "body": b'{"a": ', "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": False},
            {"type": "http.disconnect"},
        ]
    )

    async def route(scope, receive, send):
        received.extend([await receive(), await receive()])

    async def receive():
        return next(messages)

    async def send(message):
        raise AssertionError(message)

    await RequestMiddleware(route)(JSON_SCOPE, receive, send)

    assert received == [
        {"type": "http.request", "body": b'{"a": 1}', "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_a_huge_unknown_key_is_echoed_cut_short_and_the_answer_stays_small(client):
    response = await post_json(client, REFRESH, json.dumps({"k" * 900_000: 1}).encode())

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert len(response.content) < SMALL_ANSWER_BYTES
    assert body["errors_total"] == 2
    assert all(len(str(part)) <= 200 for entry in body["errors"] for part in entry["loc"])


async def test_many_long_keys_stop_at_the_byte_budget_and_say_so(client):
    response = await post_json(
        client, REFRESH, json.dumps({f"{n}" + "k" * 18_000: n for n in range(50)}).encode()
    )

    body = assert_problem(response, 422, "VALIDATION_ERROR")
    assert len(response.content) < SMALL_ANSWER_BYTES
    assert body["errors_total"] == 51
    assert body["errors_truncated"] is True
    assert len(body["errors"]) < 51


async def test_a_lone_surrogate_in_a_body_is_400_not_500(client):
    response = await post_json(client, REFRESH, b'{"refresh_token": "x", "\\ud800": 1}')

    assert_problem(response, 400, "MALFORMED_BODY")


async def test_a_surrogate_pair_is_ordinary_text(client):
    response = await post_json(client, REFRESH, b'{"refresh_token": "\\ud83d\\ude00"}')

    assert_problem(response, 401, "REFRESH_TOKEN_INVALID")


@pytest.mark.parametrize("filler", [b"a,", b"[{"], ids=["commas", "brackets"])
async def test_commas_and_brackets_inside_text_do_not_count_as_structure(client, filler):
    text = (filler * 60_000).decode()

    response = await post_json(client, REFRESH, json.dumps({"refresh_token": text}).encode())

    body = assert_problem(response, 422, "VALIDATION_ERROR")  # the schema's verdict, not the shape's
    assert [error["code"] for error in body["errors"]] == ["string_too_long"]


async def test_more_strings_than_values_allowed_are_refused_without_a_closer_look(client):
    body = b"[" + b",".join([b'"a"'] * 60_000) + b"]"

    response = await post_json(client, REFRESH, body)

    assert_problem(response, 422, "BODY_TOO_COMPLEX")
