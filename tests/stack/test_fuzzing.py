"""Schemathesis against the OpenAPI document of the running stack (nginx, two gunicorn workers,
PostgreSQL): every operation, generated valid and invalid requests, as a researcher who owns a
study with fields, samples, a member and a sample file.

Checked on every answer: no server error, the status code is one the operation documents, the
content type and headers are the documented ones, the body matches the documented schema, invalid
data is refused, a missing required header or an unsupported method is refused (with `Allow`), a
route behind a token refuses a call without one, and a deleted resource stays gone.

Examples per operation: FUZZ_EXAMPLES (25 in CI, about a minute on two cores); a longer run is
`FUZZ_EXAMPLES=500 python -m pytest tests/stack/test_fuzzing.py` (see README, Reliability).
"""

import os
import uuid
from dataclasses import dataclass

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from src.app import create_app
from tests.stack.conftest import STACK_PASSWORD, TRUSTED_CLIENT_ADDRESS, Stack, researcher_with_study

pytestmark = pytest.mark.stack

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# Every check Schemathesis has but positive_data_acceptance, which takes a schema-valid request
# refused by a business rule (the wrong current password, a sample id already taken: 4xx by
# design, documented) for a bug.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
    use_after_free,
    ensure_resource_availability,
]
FIELDS = [
    {"name": "tissue", "type": "choice", "required": True, "choices": ["blood", "saliva"]},
    {"name": "volume", "type": "number", "required": False, "unit": "mL", "min": 0},
    {"name": "label", "type": "text", "required": False, "max_length": 20},
    {"name": "collected_on", "type": "date", "required": False},
]
# Operations that end the session they are called with get a session of their own, so the rest of
# the run keeps its token.
SESSION_ENDING = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("DELETE", "/api/v1/auth/sessions/{session_id}"),
    ("POST", "/api/v1/auth/me/password"),
}


class FromTrustedAddress(HTTPAdapter):
    """Connections from the address nginx exempts from its rate limits: a fuzzer is a load generator."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (TRUSTED_CLIENT_ADDRESS, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass
class World:
    base_url: str
    session: requests.Session
    email: str
    headers: dict[str, str]
    ids: dict[str, str]

    def fresh_session(self) -> tuple[dict[str, str], str]:
        """The Authorization header and id of a new session of the researcher."""
        tokens = self.call(
            "POST", "/api/v1/auth/token", data={"username": self.email, "password": STACK_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        sessions = self.call("GET", "/api/v1/auth/sessions", headers=headers)
        return headers, next(session["id"] for session in sessions if session["current"])

    def call(self, method: str, path: str, **kwargs) -> dict:
        kwargs.setdefault("headers", self.headers)
        response = self.session.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()


def build_world(stack: Stack) -> World:
    session = requests.Session()
    session.mount("http://", FromTrustedAddress())
    transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
    with httpx.Client(base_url=stack.base_url, transport=transport, timeout=30) as http:
        researcher = researcher_with_study(http, "fuzz", fields=FIELDS)
    world = World(stack.base_url, session, researcher.email, researcher.headers, {})
    member_email = f"fuzz-member-{uuid.uuid4().hex[:8]}@example.org"
    world.call(
        "POST",
        "/api/v1/auth/register",
        json={"email": member_email, "password": STACK_PASSWORD, "full_name": "Fuzz"},
    )
    sessions = world.call("GET", "/api/v1/auth/sessions")
    world.ids["session_id"] = next(session["id"] for session in sessions if session["current"])
    study = researcher.study
    study_url = researcher.study_url
    samples = [
        world.call(
            "POST", f"{study_url}/samples", json={"sample_id": f"F-{number}", "values": {"tissue": "blood"}}
        )
        for number in range(3)
    ]
    member = world.call("POST", f"{study_url}/members", json={"email": member_email, "role": "editor"})
    content = b"sample_id,tissue,volume [mL]\r\nU-1,saliva,1.5\r\nU-2,blood,2\r\n"
    uploaded = world.call(
        "POST", f"{study_url}/sample-files", files={"file": ("samples.csv", content, "text/csv")}
    )
    world.ids.update(
        study_id=study["id"], sample_pk=samples[0]["id"], user_id=member["user_id"], file_id=uploaded["id"]
    )
    return world


@pytest.fixture(scope="session")
def fuzz_world(stack: Stack) -> World:
    return build_world(stack)


@pytest.fixture(scope="session")
def fuzzed_schema(stack: Stack):
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")


# The operations of the app's own document (the stack serves the same one), one test each.
OPERATIONS = [
    (method.upper(), path) for path, methods in create_app().openapi()["paths"].items() for method in methods
]


@pytest.mark.parametrize(
    ("method", "path"), OPERATIONS, ids=[f"{method} {path}" for method, path in OPERATIONS]
)
def test_the_api_answers_every_generated_request_as_documented(
    fuzzed_schema, fuzz_world: World, method, path
):
    operation = fuzzed_schema[path][method]
    headers = fuzz_world.headers
    ids = dict(fuzz_world.ids)
    session_ending = (method, path) in SESSION_ENDING
    # Real ids, so that requests reach the resources rather than a 404 (ids that are not UUIDs, or
    # name nothing, are tests/test_bad_input.py's business).
    real_ids = {
        parameter.name: ids[parameter.name]
        for parameter in operation.path_parameters
        if parameter.name in ids
    }
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real_ids or None),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=real_ids or None),
    )

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def answered_as_documented(case) -> None:
        call_headers = headers
        if session_ending:
            call_headers, session_id = fuzz_world.fresh_session()
            if "session_id" in (case.path_parameters or {}):
                case.path_parameters["session_id"] = session_id
        case.call_and_validate(
            base_url=fuzz_world.base_url,
            session=fuzz_world.session,
            headers=call_headers,
            checks=CHECKS,
            timeout=30,
        )

    answered_as_documented()
