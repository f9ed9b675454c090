"""Schemathesis against the OpenAPI document of the running stack (nginx, two gunicorn workers,
PostgreSQL): every operation, generated valid and invalid requests, as a researcher who owns an
active study with fields, samples, a member and a sample file. After every request but a GET, what
it may have undone is put back through the API (the study made active again, the sample or member
it deleted replaced, a session ended everywhere renewed), so every request meets a writable study.

Checked on every answer: no server error, the status code is one the operation documents, the
content type and headers are the documented ones, the body matches the documented schema, invalid
data is refused, valid data is accepted (but for the refusals BUSINESS_RULES lists), a missing
required header or an unsupported method is refused (with `Allow`), a route behind a token refuses a
call without one, and a deleted resource stays gone.

Examples per operation: FUZZ_EXAMPLES (25 in CI, about a minute on two cores); a longer run is
`FUZZ_EXAMPLES=500 python -m pytest tests/stack/test_fuzzing.py` (docs/reliability.md).
"""

import os
import re
import uuid

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from src.app import create_app
from tests.smtp_server import SmtpTestServer
from tests.stack.conftest import (
    STACK_PASSWORD,
    TRUSTED_CLIENT_ADDRESS,
    Stack,
    join_by_invitation,
    researcher_with_study,
)

pytestmark = pytest.mark.stack

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# The refusals of a schema-valid request that no static schema can foresee, by operation: each a
# documented business rule that depends on stored data. Anything else refusing such a request (a
# VALIDATION_ERROR, a 400) is a rule the schema does not state, and fails the run.
BUSINESS_RULES = {
    # Whether If-Match names the version stored now (else 412) depends on that version.
    **{
        (method, path): {"PRECONDITION_FAILED"}
        for method, path in [
            ("PATCH", "/api/v1/studies/{study_id}"),
            ("DELETE", "/api/v1/studies/{study_id}"),
            ("POST", "/api/v1/studies/{study_id}/status"),
            ("PUT", "/api/v1/studies/{study_id}/sample-fields"),
            ("DELETE", "/api/v1/studies/{study_id}/samples/{sample_pk}"),
        ]
    },
    # Whether the current password is the account's is known only to the server.
    ("POST", "/api/v1/auth/me/password"): {"WRONG_PASSWORD"},
    # How often an address asked for a reset, and which reset tokens are live, is stored data.
    ("POST", "/api/v1/auth/password-reset"): {"PASSWORD_RESET_LIMITED"},
    ("POST", "/api/v1/auth/password-reset/confirm"): {"RESET_TOKEN_INVALID"},
    # Whether a member has the invited address is stored data.
    ("POST", "/api/v1/studies/{study_id}/members"): {"ALREADY_A_MEMBER"},
    # Which invitation tokens are live, and to which address each was sent, is stored data.
    ("POST", "/api/v1/invitations/accept"): {"INVITATION_TOKEN_INVALID", "INVITATION_FOR_ANOTHER_ADDRESS"},
    ("POST", "/api/v1/invitations/decline"): {"INVITATION_TOKEN_INVALID"},
    # Which verification tokens are live is stored data; so are the account's verified address and
    # how often it asked for a new link.
    ("POST", "/api/v1/auth/verify-email"): {"VERIFICATION_TOKEN_INVALID"},
    ("POST", "/api/v1/auth/verify-email/resend"): {"EMAIL_ALREADY_VERIFIED", "VERIFICATION_MAIL_LIMITED"},
    # A sample's values are checked against the study's field definitions, which the study stores.
    ("POST", "/api/v1/studies/{study_id}/samples"): {"INVALID_SAMPLE_VALUES"},
    ("PATCH", "/api/v1/studies/{study_id}/samples/{sample_pk}"): {
        "INVALID_SAMPLE_VALUES",
        "PRECONDITION_FAILED",
    },
    # Any bytes are a schema-valid file: its type, whether it reads as a sheet, and its rows against
    # the study's fields are known only once it is read.
    ("POST", "/api/v1/studies/{study_id}/sample-files"): {
        "UNSUPPORTED_FILE_TYPE",
        "UNREADABLE_FILE",
        "SAMPLE_FILE_REJECTED",
    },
    # The world's file was imported: its import has finished.
    ("POST", "/api/v1/sample-files/{file_id}/cancel"): {"IMPORT_FINISHED"},
}
# An Idempotency-Key's first request is stored data: the fuzzer draws few keys and many bodies, so the
# same key comes again with another request (422), or while the first runs (409).
IDEMPOTENCY_RULES = {"IDEMPOTENCY_KEY_REUSED", "IDEMPOTENT_REQUEST_IN_PROGRESS", "IDEMPOTENT_REQUEST_APPLIED"}
for _operation in [
    ("POST", "/api/v1/studies"),
    ("POST", "/api/v1/studies/{study_id}/members"),
    ("POST", "/api/v1/studies/{study_id}/samples"),
    ("POST", "/api/v1/studies/{study_id}/sample-files"),
]:
    BUSINESS_RULES[_operation] = BUSINESS_RULES.get(_operation, set()) | IDEMPOTENCY_RULES

# The rules of a study's sample fields that JSON Schema has no words for, all the document states
# otherwise: relations between values (names unique case-insensitively across the list, min not
# above max, the size of the whole schema), a text field's `pattern` being a regular expression
# RE2 compiles within its budget, and a whole-number `max_length` written as one (JSON Schema's
# integer admits 870.0, which the server refuses; the range is in the document). A
# VALIDATION_ERROR of these operations passes only when each of its errors is one of these.
SAMPLE_FIELDS_OPERATIONS = {("POST", "/api/v1/studies"), ("PUT", "/api/v1/studies/{study_id}/sample-fields")}
INEXPRESSIBLE_SAMPLE_FIELD_RULE = re.compile(
    r": the name is already used by |: min must not be above max$|: invalid pattern: |"
    r": max_length must be a whole number from |"
    r"^the schema's patterns together are too complex$|^at most \d+ choices in all the fields together$|"
    r"^the sample fields must take at most \d+ characters of JSON$"
)


def _problem(response) -> dict:
    try:
        problem = response.json()
    except ValueError:
        return {}
    return problem if isinstance(problem, dict) else {}


def _refused_by_a_rule_no_schema_can_state(operation: tuple[str, str], problem: dict) -> bool:
    if problem.get("code") in BUSINESS_RULES.get(operation, set()):
        return True
    errors = problem.get("errors") or []
    return (
        operation in SAMPLE_FIELDS_OPERATIONS
        and problem.get("code") == "VALIDATION_ERROR"
        and not problem.get("errors_truncated")
        and bool(errors)
        and all(
            error["code"] == "invalid_sample_field" and INEXPRESSIBLE_SAMPLE_FIELD_RULE.search(error["msg"])
            for error in errors
        )
    )


def positive_data_acceptance_but_business_rules(ctx, response, case) -> bool | None:
    """Schemathesis's positive_data_acceptance, but for a refusal by one of the rules above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        operation = (case.operation.method.upper(), case.operation.path)
        if _refused_by_a_rule_no_schema_can_state(operation, _problem(response)):
            return None
        raise


# Every check Schemathesis has, positive_data_acceptance with the business rules above.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance_but_business_rules,
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


# The status changes that make a locked or archived study active again.
BACK_TO_ACTIVE = {"active": [], "locked": ["active"], "archived": ["locked", "active"]}


class World:
    """A researcher who owns an active study with samples, a member and an imported sample file, and
    the ids of each. Generated requests may lock or archive the study, delete the sample or remove
    the member they name, or sign the researcher out everywhere: `keep_usable()` puts that back
    through the API, so that every request meets a writable study and real resources."""

    def __init__(self, stack: Stack, smtp: SmtpTestServer) -> None:
        self.base_url = stack.base_url
        self.smtp = smtp
        self.session = requests.Session()
        self.session.mount("http://", FromTrustedAddress())
        transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
        with httpx.Client(base_url=self.base_url, transport=transport, timeout=30) as http:
            researcher = researcher_with_study(http, "fuzz", fields=FIELDS, status="active")
        self.email, self.headers = researcher.email, researcher.headers
        self.member_email = f"fuzz-member-{uuid.uuid4().hex[:8]}@example.org"
        self.call(
            "POST",
            "/api/v1/auth/register",
            json={"email": self.member_email, "password": STACK_PASSWORD, "full_name": "Fuzz"},
        )
        self.ids = {"study_id": researcher.study_id, "session_id": self.current_session_id(self.headers)}
        for _ in range(3):
            self.add_sample()  # the last one is the one the requests name
        self.add_member()
        self.invite_pending()
        content = b"sample_id,tissue,volume [mL]\r\nU-1,saliva,1.5\r\nU-2,blood,2\r\n"
        uploaded = self.call(
            "POST", f"{self.study_url}/sample-files", files={"file": ("samples.csv", content, "text/csv")}
        )
        self.ids["file_id"] = uploaded["id"]

    @property
    def study_url(self) -> str:
        return f"/api/v1/studies/{self.ids['study_id']}"

    def fresh_session(self) -> tuple[dict[str, str], str]:
        """The Authorization header and id of a new session of the researcher."""
        tokens = self.call(
            "POST", "/api/v1/auth/token", data={"username": self.email, "password": STACK_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        return headers, self.current_session_id(headers)

    def current_session_id(self, headers: dict[str, str]) -> str:
        sessions = self.call("GET", "/api/v1/auth/sessions", headers=headers)
        return next(session["id"] for session in sessions if session["current"])

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("headers", self.headers)
        return self.session.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def add_sample(self) -> None:
        sample = self.call(
            "POST",
            f"{self.study_url}/samples",
            json={"sample_id": f"F-{uuid.uuid4().hex[:12]}", "values": {"tissue": "blood"}},
        )
        self.ids["sample_pk"] = sample["id"]

    def add_member(self) -> None:
        """Invites the member, who accepts with the mailed token (the one way in)."""
        tokens = self.call(
            "POST", "/api/v1/auth/token", data={"username": self.member_email, "password": STACK_PASSWORD}
        )
        member_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        transport = httpx.HTTPTransport(local_address=TRUSTED_CLIENT_ADDRESS)
        with httpx.Client(base_url=self.base_url, transport=transport, timeout=30) as http:
            join_by_invitation(
                http,
                self.smtp,
                study_url=self.study_url,
                owner_headers=self.headers,
                member_headers=member_headers,
                email=self.member_email,
                role="editor",
            )
        self.ids["user_id"] = self.call("GET", "/api/v1/auth/me", headers=member_headers)["id"]

    def invite_pending(self) -> None:
        """A pending invitation of the study, which the invitation routes name (revoking it ends it)."""
        email = f"fuzz-invited-{uuid.uuid4().hex[:8]}@example.org"
        invitation = self.call("POST", f"{self.study_url}/members", json={"email": email, "role": "viewer"})
        self.ids["invitation_id"] = invitation["id"]

    def keep_usable(self) -> None:
        study = self.request("GET", self.study_url)
        if study.status_code == 401:  # signed out everywhere (logout-all)
            self.headers, self.ids["session_id"] = self.fresh_session()
            study = self.request("GET", self.study_url)
        # Neither can go: an active study is never deleted, nor a file whose samples are all there.
        assert study.status_code == 200, study.text
        sample_file = self.request("GET", f"/api/v1/sample-files/{self.ids['file_id']}")
        assert sample_file.status_code == 200, sample_file.text
        for status in BACK_TO_ACTIVE[study.json()["status"]]:
            self.call("POST", f"{self.study_url}/status", json={"status": status})
        if self.request("GET", f"{self.study_url}/samples/{self.ids['sample_pk']}").status_code == 404:
            self.add_sample()
        if self.request("GET", f"{self.study_url}/members/{self.ids['user_id']}").status_code == 404:
            self.add_member()
        pending = self.call("GET", f"{self.study_url}/invitations", params={"page_size": 100})["items"]
        if self.ids["invitation_id"] not in {invitation["id"] for invitation in pending}:
            self.invite_pending()


@pytest.fixture(scope="session")
def fuzz_world(stack: Stack, stack_smtp: SmtpTestServer) -> World:
    return World(stack, stack_smtp)


@pytest.fixture(scope="session")
def fuzzed_schema(stack: Stack):
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")


# The operations of the app's own document (the stack serves the same one), one test each.
OPERATIONS = [
    (method.upper(), path) for path, methods in create_app().openapi()["paths"].items() for method in methods
]


@pytest.mark.parametrize(
    ("method", "path"),
    [pytest.param(method, path, id=f"{method} {path}") for method, path in OPERATIONS],
)
def test_the_api_answers_every_generated_request_as_documented(
    fuzzed_schema, fuzz_world: World, method, path
):
    operation = fuzzed_schema[path][method]
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
        # The ids of the world as it is now: an earlier case may have deleted what it named.
        for name, value in real_ids.items():
            if case.path_parameters.get(name) == value:
                case.path_parameters[name] = fuzz_world.ids[name]
        call_headers = fuzz_world.headers
        if session_ending:
            call_headers, session_id = fuzz_world.fresh_session()
            if "session_id" in (case.path_parameters or {}):
                case.path_parameters["session_id"] = session_id
        try:
            case.call_and_validate(
                base_url=fuzz_world.base_url,
                session=fuzz_world.session,
                headers=call_headers,
                checks=CHECKS,
                timeout=30,
            )
        finally:
            if method != "GET":  # a GET changes nothing
                fuzz_world.keep_usable()

    answered_as_documented()


def test_the_world_is_put_back_after_what_a_generated_request_may_do(fuzz_world: World):
    world = fuzz_world
    sample_pk, user_id = world.ids["sample_pk"], world.ids["user_id"]
    assert world.request("DELETE", f"{world.study_url}/samples/{sample_pk}").status_code == 204
    assert world.request("DELETE", f"{world.study_url}/members/{user_id}").status_code == 204
    archived = world.call("POST", f"{world.study_url}/status", json={"status": "archived"})
    assert archived["status"] == "archived"
    assert world.request("POST", "/api/v1/auth/logout-all").status_code == 204

    world.keep_usable()

    assert world.call("GET", world.study_url)["status"] == "active"
    assert world.ids["sample_pk"] != sample_pk
    assert world.call("GET", f"{world.study_url}/samples/{world.ids['sample_pk']}")["status"] == "registered"
    assert world.call("GET", f"{world.study_url}/members/{user_id}")["role"] == "editor"
