"""What a Python caller writes with the client openapi-python-client generates from the API's document.

scripts/check_clients.py generates the package `studybase_api_client`, starts the app and runs this
against it: `python clients/python/flow.py BASE_URL`, with the generated package on PYTHONPATH. Every
step goes through the generated code (its models, its multipart body, its parsing of each answer),
and an answer that is not the documented one fails the run.
"""

import sys
import uuid
from io import BytesIO
from typing import Any, TypeVar

from studybase_api_client import AuthenticatedClient, Client
from studybase_api_client.api.auth import register, token
from studybase_api_client.api.dashboard import study_figures, summary
from studybase_api_client.api.invitations import accept_invitation, invite_member, list_my_invitations
from studybase_api_client.api.sample_files import upload_sample_file
from studybase_api_client.api.studies import (
    change_status,
    create_sample,
    create_study,
    list_samples,
    replace_sample_fields,
)
from studybase_api_client.models import (
    BooleanFieldDefinition,
    ChoiceFieldDefinition,
    DashboardSummary,
    DateFieldDefinition,
    DatetimeFieldDefinition,
    DryRunRead,
    ImportMode,
    IntegerFieldDefinition,
    InvitationAccepted,
    InvitationCreate,
    InvitationRead,
    NumberFieldDefinition,
    PageReceivedInvitationRead,
    PageSampleRead,
    RegisterRequest,
    RegistrationRequested,
    SampleCreate,
    SampleCreateValues,
    SampleFileRead,
    SampleRead,
    StatusChange,
    StudyCreate,
    StudyDashboard,
    StudyRead,
    StudyRole,
    StudyStatus,
    TextFieldDefinition,
    TokenForm,
    TokenPair,
    UploadSampleFileBody,
)
from studybase_api_client.types import File, Response

PASSWORD = "client-check-passphrase-2026"  # noqa: S105 (a throwaway account on a throwaway database)
TIMEOUT_SECONDS = 30.0
FIELDS = [
    TextFieldDefinition(name="label", type_="text", max_length=20, pattern="[A-Z]+"),
    IntegerFieldDefinition(name="count", type_="integer", min_=0, max_=100),
    NumberFieldDefinition(name="volume", type_="number", unit="mL", min_=0),
    BooleanFieldDefinition(name="fasting", type_="boolean"),
    DateFieldDefinition(name="collected_on", type_="date", required=True),
    DatetimeFieldDefinition(name="frozen_at", type_="datetime"),
    ChoiceFieldDefinition(name="tissue", type_="choice", required=True, choices=["blood", "saliva"]),
]
VALUES = {
    "label": "AB",
    "count": 3,
    "volume": 1.5,
    "fasting": True,
    "collected_on": "2026-11-20",
    "frozen_at": "2026-11-20T10:00:00Z",
    "tissue": "blood",
}
SHEET = (
    b"sample_id,label,count,volume [mL],fasting,collected_on,frozen_at,tissue\r\n"
    b"S-0002,CD,4,2.5,no,2026-11-21,2026-11-21T08:30:00Z,saliva\r\n"
    b"S-0003,EF,5,3,yes,2026-11-22,,blood\r\n"
)
NEXT_SHEET = b"sample_id,collected_on,tissue\r\nS-0004,2026-11-23,blood\r\n"


T = TypeVar("T")


class FlowFailed(Exception):
    """A step's answer was not the one the document promises."""


def answered(response: Response[Any], status: int, kind: type[T], step: str) -> T:
    """The parsed answer of a step, when it has the status and the type the document gives it."""
    if response.status_code != status or not isinstance(response.parsed, kind):
        raise FlowFailed(
            f"{step}: expected {status} {kind.__name__}, got {int(response.status_code)} "
            f"{type(response.parsed).__name__}: {response.content[:500]!r}"
        )
    print(f"  ok  {step}")
    return response.parsed


def expect(condition: bool, step: str) -> None:
    if not condition:
        raise FlowFailed(step)


def signed_in(base_url: str) -> tuple[AuthenticatedClient, AuthenticatedClient, str]:
    """A new account, signed in; and a colleague who has one too, signed in, with their email."""
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=TIMEOUT_SECONDS)
    suffix = uuid.uuid4().hex[:10]
    email, colleague = f"client-{suffix}@example.org", f"colleague-{suffix}@example.org"
    for address in (email, colleague):
        body = RegisterRequest(email=address, password=PASSWORD, full_name="Client Check")
        # The same 202 for any address (nobody learns who is registered): no account in the answer.
        # This check's server runs in development, where the account is made at once; where
        # addresses must be verified (staging, production) it exists only once the mailed link's
        # token is sent to POST /auth/verify-email with the account's password (chosen there, by
        # the mailbox's owner; the one sent here is checked but not kept), and signing in before
        # that is 401.
        registered = register.sync_detailed(client=anonymous, body=body)
        answered(registered, 202, RegistrationRequested, f"register {address}")
    clients = []
    for address in (email, colleague):
        form = TokenForm(username=address, password=PASSWORD)
        tokens = answered(
            token.sync_detailed(client=anonymous, body=form), 200, TokenPair, f"sign in {address}"
        )
        clients.append(
            AuthenticatedClient(
                base_url=base_url,
                token=tokens.access_token,
                raise_on_unexpected_status=True,
                timeout=TIMEOUT_SECONDS,
            )
        )
    return clients[0], clients[1], colleague


def active_study(client: AuthenticatedClient) -> StudyRead:
    """A study with one field of each type, activated."""
    body = StudyCreate(code=f"CLI-{uuid.uuid4().hex[:8]}", title="Client check", sample_fields=FIELDS)
    study = answered(create_study.sync_detailed(client=client, body=body), 201, StudyRead, "create a study")
    expect(
        [type(field) for field in study.sample_fields] == [type(field) for field in FIELDS],
        "each field is answered in its own type's shape",
    )
    activated = change_status.sync_detailed(
        study.id, client=client, body=StatusChange(status=StudyStatus.ACTIVE), if_match=f'"{study.version}"'
    )
    study = answered(activated, 200, StudyRead, "activate it")
    expect(study.status == StudyStatus.ACTIVE, "the study is active")
    return study


def upload(client: AuthenticatedClient, study: StudyRead, content: bytes, **options: Any) -> Response[Any]:
    sheet = File(payload=BytesIO(content), file_name="samples.csv", mime_type="text/csv")
    return upload_sample_file.sync_detailed(
        study.id, client=client, body=UploadSampleFileBody(file=sheet, **options)
    )


def samples_added(client: AuthenticatedClient, study: StudyRead) -> None:
    """One sample alone, two from a sheet; a dry run, and the same sheet again (each answer of its type)."""
    sample = SampleCreate(sample_id="S-0001", values=SampleCreateValues.from_dict(VALUES))
    answered(
        create_sample.sync_detailed(study.id, client=client, body=sample), 201, SampleRead, "add a sample"
    )
    imported = answered(upload(client, study, SHEET), 201, SampleFileRead, "upload a CSV")
    expect(
        imported.report.created == 2 and imported.report.rejected == 0, "the sheet's two samples are imported"
    )
    dry_run = answered(
        upload(client, study, NEXT_SHEET, dry_run=True, mode=ImportMode.UPSERT), 200, DryRunRead, "dry run"
    )
    expect(dry_run.report.created == 1, "the dry run reports what it would create")
    again = answered(upload(client, study, SHEET), 200, SampleFileRead, "the same sheet again")
    expect(again.duplicate_of == imported.id, "the same sheet again is the file already imported")
    listed = answered(
        list_samples.sync_detailed(study.id, client=client), 200, PageSampleRead, "list samples"
    )
    expect(listed.total == 3, f"three samples are listed, not {listed.total}")


def fields_sent_back(client: AuthenticatedClient, study: StudyRead) -> None:
    """The fields as read, sent back with one more: the answered shapes are the written ones."""
    more = [*study.sample_fields, TextFieldDefinition(name="note", type_="text")]
    replaced = replace_sample_fields.sync_detailed(study.id, client=client, body=more)
    replaced_study = answered(replaced, 200, StudyRead, "send the fields back with one more")
    expect(len(replaced_study.sample_fields) == len(FIELDS) + 1, "the study has one more field")


def run(base_url: str) -> None:
    client, colleague_client, colleague = signed_in(base_url)
    study = active_study(client)
    invitation = InvitationCreate(email=colleague, role=StudyRole.VIEWER)
    answered(
        invite_member.sync_detailed(study.id, client=client, body=invitation), 202, InvitationRead, "invite"
    )
    pending = answered(
        list_my_invitations.sync_detailed(client=colleague_client),
        200,
        PageReceivedInvitationRead,
        "the colleague's invitations",
    )
    expect([item.study.id for item in pending.items] == [study.id], "the colleague sees the invitation")
    accepted = answered(
        accept_invitation.sync_detailed(pending.items[0].id, client=colleague_client),
        200,
        InvitationAccepted,
        "accept the invitation",
    )
    expect(accepted.role == StudyRole.VIEWER, "the colleague joined as viewer")
    samples_added(client, study)
    fields_sent_back(client, study)
    figures = answered(
        study_figures.sync_detailed(study.id, client=client), 200, StudyDashboard, "the dashboard"
    )
    expect(figures.samples.total == 3, f"the dashboard counts three samples, not {figures.samples.total}")
    answered(summary.sync_detailed(client=client), 200, DashboardSummary, "the summary")


if __name__ == "__main__":
    try:
        run(sys.argv[1])
    except FlowFailed as failure:
        sys.exit(f"The generated Python client's flow failed: {failure}")
