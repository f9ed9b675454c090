"""Study invitations: nobody joins without saying yes, and inviting says nothing about who has an
account. Mails go through a real SMTP server (aiosmtpd); its links are followed as the page does."""

import asyncio
import statistics
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from src.auth import registration as auth_registration
from src.auth.utils import hash_secret_token
from src.constants import Environment
from src.database import SessionFactory, utcnow
from src.invitations import service as invitation_service
from src.invitations.constants import INVITATION_KEEP_DAYS, InvitationStatus
from src.invitations.models import Invitation
from src.mail.composers import COMPOSERS
from src.mail.config import mail_settings
from src.mail.constants import MailKind, MailStatus
from src.mail.models import OutboxMail
from src.mail.service import deliver_due_mails
from src.study.constants import StudyRole
from src.study.models import StudyMember
from src.third_party.mail import SmtpTransport
from tests.conftest import assert_problem, link_token, send_kept_mails
from tests.smtp_server import SmtpTestServer
from tests.study.conftest import study_url

ACCEPT = "/api/v1/invitations/accept"
DECLINE = "/api/v1/invitations/decline"
MINE = "/api/v1/invitations"
PAGE = "/invitations"


async def deliver(smtp: SmtpTestServer, *, now=None):
    return await deliver_due_mails(
        transport=SmtpTransport(smtp.url(), timeout=5), composers=COMPOSERS, max_mails=50, now=now
    )


def text_of(delivered) -> str:
    return delivered.message.get_body(("plain",)).get_content()


async def invite(client, study, headers, email: str, role: str = "editor"):
    response = await client.post(
        study_url(study, "members"), json={"email": email, "role": role}, headers=headers
    )
    assert response.status_code == 202, response.text
    return response


async def mailed_token(client, study, headers, email: str, role: str = "editor") -> str:
    await invite(client, study, headers, email, role)
    (mail,) = [mail for mail in await send_kept_mails() if mail.recipient == email.strip().lower()]
    return link_token(mail.text, PAGE)


async def members_of(study) -> dict:
    async with SessionFactory() as session:
        rows = await session.execute(
            select(StudyMember.user_id, StudyMember.role).where(StudyMember.study_id == study.id)
        )
        return {row.user_id: row.role for row in rows}


async def invitation_rows() -> list[Invitation]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(Invitation).order_by(Invitation.created_at)))


# The whole way in, from the mail alone


async def test_an_invited_colleague_with_an_account_joins_from_the_mail(
    client, alice, alice_headers, make_study, make_user, auth_headers, smtp_server
):
    study = await make_study(owner=alice, code="ONC-1", title="Tumour bank")
    grace = await make_user(email="grace@example.org", full_name="Grace Hopper")

    answer = await invite(client, study, alice_headers, "Grace@Example.org ", "editor")
    counts = await deliver(smtp_server)

    body = answer.json()
    assert (body["email"], body["role"], body["status"], body["expired"]) == (
        "grace@example.org",
        "editor",
        "pending",
        False,
    )
    assert body["invited_by_name"] == alice.full_name
    assert counts.sent == 1
    (delivered,) = smtp_server.messages
    assert delivered.rcpt_tos == ["grace@example.org"]
    assert delivered.message["Subject"] == f"{alice.full_name} invites you to the study ONC-1 on Studybase"
    text = text_of(delivered)
    assert "Tumour bank" in text
    assert "as editor" in text
    token = link_token(text, PAGE)
    assert len(token) == 43
    html = delivered.message.get_body(("html",)).get_content()
    assert f'href="{mail_settings.PUBLIC_URL}{PAGE}#token={token}"' in html
    assert await members_of(study) == {alice.id: StudyRole.OWNER}  # nobody added without a yes

    accepted = await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace))

    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {
        "study": {"id": str(study.id), "code": "ONC-1", "title": "Tumour bank"},
        "role": "editor",
    }
    assert (await client.get(study_url(study), headers=await auth_headers(grace))).json()[
        "my_role"
    ] == "editor"
    (row,) = await invitation_rows()
    assert (row.status, row.token_hash) == (InvitationStatus.ACCEPTED, None)


async def test_the_token_is_stored_only_as_its_hash_and_works_the_moment_the_mail_arrives(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    await invite(client, study, alice_headers, grace.email)
    answers = []

    class ReaderAtTheServer:
        async def send(self, mail):
            token = link_token(mail.text, PAGE)
            (row,) = await invitation_rows()
            answers.append((row.token_hash == hash_secret_token(token), token not in str(row.__dict__)))
            answers.append(
                await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace))
            )

    await deliver_due_mails(transport=ReaderAtTheServer(), composers=COMPOSERS, max_mails=5)

    assert answers[0] == (True, True)
    assert answers[1].status_code == 200, answers[1].text


async def test_a_name_or_title_with_markup_is_escaped_in_the_html(
    client, make_user, auth_headers, make_study, smtp_server
):
    owner = await make_user(full_name='<img src=x onerror="alert(1)">')
    study = await make_study(owner=owner, title="<script>alert(2)</script>")

    await invite(client, study, await auth_headers(owner), "grace@example.org")
    await deliver(smtp_server)

    html = smtp_server.messages[-1].message.get_body(("html",)).get_content()
    assert "<img" not in html
    assert "<script>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


# Nothing says who has an account


async def test_known_and_unknown_addresses_get_the_same_answer_and_the_same_mail(
    client, alice, alice_headers, make_study, make_user, smtp_server
):
    study = await make_study(owner=alice)
    grace = await make_user(email="grace@example.org")

    known = await invite(client, study, alice_headers, grace.email)
    unknown = await invite(client, study, alice_headers, "nobody@example.org")

    def shape(response) -> dict:
        return {
            key: value
            for key, value in response.json().items()
            if key not in ("id", "email", "created_at", "expires_at")
        }

    assert known.status_code == unknown.status_code == 202
    assert shape(known) == shape(unknown)
    assert set(known.json()) == set(unknown.json())
    ignored = {"x-request-id", "content-length", "date"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }
    await deliver(smtp_server)
    mailed = {delivered.rcpt_tos[0]: text_of(delivered) for delivered in smtp_server.messages}
    assert set(mailed) == {"grace@example.org", "nobody@example.org"}
    known_text, unknown_text = (
        mailed[address].replace(address, "ADDRESS").split("#token=")[0]
        for address in ("grace@example.org", "nobody@example.org")
    )
    assert known_text == unknown_text


async def test_known_and_unknown_addresses_take_about_the_same_time(
    client, alice, alice_headers, make_study, make_user
):
    """Medians over a few tries each, interleaved; the bound is generous (a shared machine), the
    point is that no step (a lookup of the account) runs for one kind of address only."""
    study = await make_study(owner=alice)
    tries = 15
    users = [await make_user() for _ in range(tries)]
    known_times, unknown_times = [], []
    await invite(client, study, alice_headers, "warm-up@example.org")
    for number, user in enumerate(users):
        for email, times in ((user.email, known_times), (f"nobody{number}@example.org", unknown_times)):
            started = time.perf_counter()
            await invite(client, study, alice_headers, email)
            times.append(time.perf_counter() - started)

    known, unknown = statistics.median(known_times), statistics.median(unknown_times)
    assert max(known, unknown) < 1.5 * min(known, unknown) + 0.005, (known, unknown)


async def test_inviting_an_address_again_renews_its_invitation_and_kills_the_old_link(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    old = await mailed_token(client, study, alice_headers, grace.email, "viewer")

    new = await mailed_token(client, study, alice_headers, grace.email, "editor")

    headers = await auth_headers(grace)
    assert_problem(
        await client.post(ACCEPT, json={"token": old}, headers=headers), 422, "INVITATION_TOKEN_INVALID"
    )
    assert (await client.post(ACCEPT, json={"token": new}, headers=headers)).json()["role"] == "editor"
    assert len(await invitation_rows()) == 1


async def test_without_a_mail_service_inviting_is_503(client, alice, alice_headers, make_study, monkeypatch):
    study = await make_study(owner=alice)
    monkeypatch.setattr(mail_settings, "SMTP_URL", None)
    monkeypatch.setattr(mail_settings, "ENVIRONMENT", Environment.PRODUCTION)

    response = await client.post(
        study_url(study, "members"),
        json={"email": "grace@example.org", "role": "viewer"},
        headers=alice_headers,
    )

    assert_problem(response, 503, "MAIL_NOT_CONFIGURED")
    assert await invitation_rows() == []


# Every token rule


async def test_a_token_works_once(client, alice, alice_headers, make_study, make_user, auth_headers):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)
    headers = await auth_headers(grace)

    assert (await client.post(ACCEPT, json={"token": token}, headers=headers)).status_code == 200
    assert_problem(
        await client.post(ACCEPT, json={"token": token}, headers=headers), 422, "INVITATION_TOKEN_INVALID"
    )
    assert_problem(await client.post(DECLINE, json={"token": token}), 422, "INVITATION_TOKEN_INVALID")


async def test_two_accepts_of_one_token_at_once_add_the_member_once(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)
    headers = await auth_headers(grace)

    answers = await asyncio.gather(
        *(client.post(ACCEPT, json={"token": token}, headers=headers) for _ in range(2))
    )

    assert sorted(answer.status_code for answer in answers) == [200, 422]
    assert len(await members_of(study)) == 2


async def test_an_expired_invitation_is_refused_and_a_resend_gives_it_a_new_life(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)
    async with SessionFactory() as session:
        await session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    headers = await auth_headers(grace)

    assert_problem(
        await client.post(ACCEPT, json={"token": token}, headers=headers), 422, "INVITATION_TOKEN_INVALID"
    )
    assert (await client.get(MINE, headers=headers)).json()["items"] == []
    (listed,) = (await client.get(study_url(study, "invitations"), headers=alice_headers)).json()["items"]
    assert listed["expired"] is True

    resent = await client.post(study_url(study, "invitations", listed["id"], "resend"), headers=alice_headers)
    (mail,) = await send_kept_mails()

    assert resent.status_code == 202, resent.text
    assert resent.json()["expired"] is False
    assert_problem(
        await client.post(ACCEPT, json={"token": token}, headers=headers), 422, "INVITATION_TOKEN_INVALID"
    )
    fresh = link_token(mail.text, PAGE)
    assert (await client.post(ACCEPT, json={"token": fresh}, headers=headers)).status_code == 200


async def test_an_invitation_mail_not_sent_within_its_lifetime_is_dropped(
    client, alice, alice_headers, make_study, smtp_server
):
    study = await make_study(owner=alice)
    await invite(client, study, alice_headers, "grace@example.org")

    counts = await deliver(smtp_server, now=utcnow() + timedelta(days=8))

    assert (counts.sent, counts.dropped) == (0, 1)
    assert smtp_server.messages == []


async def test_a_resend_kills_the_old_link_and_only_the_newest_mail_goes_out(
    client, alice, alice_headers, make_study, make_user, auth_headers, smtp_server
):
    study = await make_study(owner=alice)
    grace = await make_user()
    invitation = (await invite(client, study, alice_headers, grace.email)).json()
    await client.post(study_url(study, "invitations", invitation["id"], "resend"), headers=alice_headers)

    await deliver(smtp_server)

    (delivered,) = smtp_server.messages  # the first mail's link would be dead on arrival: dropped
    async with SessionFactory() as session:
        statuses = sorted(
            await session.scalars(select(OutboxMail.status).where(OutboxMail.kind == MailKind.INVITATION))
        )
    assert statuses == [MailStatus.DROPPED, MailStatus.SENT]
    token = link_token(text_of(delivered), PAGE)
    assert (
        await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace))
    ).status_code == 200


async def test_a_revoked_invitation_is_dead_and_its_unsent_mail_is_dropped(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)
    (listed,) = (await client.get(study_url(study, "invitations"), headers=alice_headers)).json()["items"]

    revoked = await client.delete(study_url(study, "invitations", listed["id"]), headers=alice_headers)

    assert revoked.status_code == 204
    headers = await auth_headers(grace)
    assert_problem(
        await client.post(ACCEPT, json={"token": token}, headers=headers), 422, "INVITATION_TOKEN_INVALID"
    )
    assert (await client.get(MINE, headers=headers)).json()["items"] == []
    assert (await client.get(study_url(study, "invitations"), headers=alice_headers)).json()["items"] == []
    assert_problem(
        await client.delete(study_url(study, "invitations", listed["id"]), headers=alice_headers),
        404,
        "INVITATION_NOT_FOUND",
    )
    second = await invite(client, study, alice_headers, "late@example.org")
    await client.delete(study_url(study, "invitations", second.json()["id"]), headers=alice_headers)
    assert await send_kept_mails() == []


async def test_a_token_for_another_address_is_403_and_stays_usable(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user(email="grace@example.org")
    mallory = await make_user(email="mallory@example.org")
    token = await mailed_token(client, study, alice_headers, grace.email)

    stolen = await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(mallory))

    assert_problem(stolen, 403, "INVITATION_FOR_ANOTHER_ADDRESS")
    assert mallory.id not in await members_of(study)
    assert (
        await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace))
    ).status_code == 200


async def test_accepting_needs_a_sign_in(client, alice, alice_headers, make_study):
    study = await make_study(owner=alice)
    token = await mailed_token(client, study, alice_headers, "grace@example.org")

    assert_problem(await client.post(ACCEPT, json={"token": token}), 401, "NOT_AUTHENTICATED")


@pytest.mark.parametrize("token", ["", "x" * 129])
async def test_a_token_of_impossible_length_is_refused_unread(client, auth_headers, alice, token):
    response = await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(alice))

    assert_problem(response, 422, "VALIDATION_ERROR")


async def test_declining_with_the_token_ends_the_invitation_without_a_sign_in(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)

    declined = await client.post(DECLINE, json={"token": token})

    assert declined.status_code == 204
    assert_problem(
        await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace)),
        422,
        "INVITATION_TOKEN_INVALID",
    )
    assert grace.id not in await members_of(study)
    (row,) = await invitation_rows()
    assert row.status == InvitationStatus.DECLINED


async def test_accepting_when_already_a_member_is_409(
    client, alice, alice_headers, make_study, make_user, add_member, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    token = await mailed_token(client, study, alice_headers, grace.email)
    await add_member(study, grace, StudyRole.VIEWER)  # joined meanwhile (another invitation's yes)

    response = await client.post(ACCEPT, json={"token": token}, headers=await auth_headers(grace))

    assert_problem(response, 409, "ALREADY_A_MEMBER")
    assert (await members_of(study))[grace.id] == StudyRole.VIEWER


# The invitee's list


async def test_a_user_sees_their_pending_invitations_and_answers_them_by_id(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    first = await make_study(owner=alice, code="ONE-1", title="One")
    second = await make_study(owner=alice, code="TWO-2", title="Two")
    grace = await make_user(email="grace@example.org")
    await invite(client, first, alice_headers, "GRACE@example.org", "viewer")
    await invite(client, second, alice_headers, grace.email, "owner")
    await invite(client, second, alice_headers, "someone-else@example.org", "viewer")
    headers = await auth_headers(grace)

    listed = await client.get(MINE, headers=headers)

    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [(item["study"]["code"], item["study"]["title"], item["role"]) for item in items] == [
        ("TWO-2", "Two", "owner"),
        ("ONE-1", "One", "viewer"),
    ]
    assert {item["invited_by_name"] for item in items} == {alice.full_name}
    assert listed.json()["total"] == 2
    accepted = await client.post(f"{MINE}/{items[0]['id']}/accept", headers=headers)
    declined = await client.post(f"{MINE}/{items[1]['id']}/decline", headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["study"]["code"] == "TWO-2"
    assert declined.status_code == 204
    assert (await members_of(second))[grace.id] == StudyRole.OWNER
    assert grace.id not in await members_of(first)
    assert (await client.get(MINE, headers=headers)).json()["items"] == []
    assert_problem(
        await client.post(f"{MINE}/{items[0]['id']}/accept", headers=headers), 404, "INVITATION_NOT_FOUND"
    )


async def test_accepting_or_declining_someone_elses_invitation_by_id_is_404(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    await make_user(email="grace@example.org")
    mallory = await make_user(email="mallory@example.org")
    invitation = (await invite(client, study, alice_headers, "grace@example.org")).json()
    headers = await auth_headers(mallory)

    for action in ("accept", "decline"):
        assert_problem(
            await client.post(f"{MINE}/{invitation['id']}/{action}", headers=headers),
            404,
            "INVITATION_NOT_FOUND",
        )
    assert (await client.get(MINE, headers=headers)).json()["items"] == []
    assert mallory.id not in await members_of(study)
    (row,) = await invitation_rows()
    assert row.status == InvitationStatus.PENDING


# Owners only


@pytest.mark.parametrize("role", ["editor", "viewer", "non-member"])
async def test_only_owners_manage_invitations(
    client, alice, alice_headers, make_study, make_user, add_member, auth_headers, role
):
    study = await make_study(owner=alice)
    invitation = (await invite(client, study, alice_headers, "grace@example.org")).json()
    caller = await make_user()
    if role != "non-member":
        await add_member(study, caller, StudyRole(role))
    headers = await auth_headers(caller)
    one = study_url(study, "invitations", invitation["id"])
    attempts = [
        ("POST", study_url(study, "members"), {"email": "x@example.org", "role": "owner"}),
        ("GET", study_url(study, "invitations"), None),
        ("POST", f"{one}/resend", None),
        ("DELETE", one, None),
    ]

    for method, url, body in attempts:
        response = await client.request(method, url, json=body, headers=headers)
        if role == "non-member":
            assert_problem(response, 404, "STUDY_NOT_FOUND")
        else:
            assert_problem(response, 403, "STUDY_ROLE_REQUIRED")
    (row,) = await invitation_rows()
    assert row.status == InvitationStatus.PENDING


async def test_an_owner_cannot_reach_another_studys_invitation(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    theirs = await make_study(owner=alice)
    invitation = (await invite(client, theirs, alice_headers, "grace@example.org")).json()
    bob = await make_user()
    mine = await make_study(owner=bob)
    headers = await auth_headers(bob)

    resend = await client.post(study_url(mine, "invitations", invitation["id"], "resend"), headers=headers)
    revoke = await client.delete(study_url(mine, "invitations", invitation["id"]), headers=headers)

    assert_problem(resend, 404, "INVITATION_NOT_FOUND")
    assert_problem(revoke, 404, "INVITATION_NOT_FOUND")


async def test_every_step_is_in_the_activity_log(
    client, alice, alice_headers, make_study, make_user, auth_headers
):
    study = await make_study(owner=alice)
    grace = await make_user()
    accepted = await mailed_token(client, study, alice_headers, grace.email)
    await client.post(ACCEPT, json={"token": accepted}, headers=await auth_headers(grace))
    declined = await mailed_token(client, study, alice_headers, "no@example.org")
    await client.post(DECLINE, json={"token": declined})
    revoked = (await invite(client, study, alice_headers, "gone@example.org")).json()
    await client.delete(study_url(study, "invitations", revoked["id"]), headers=alice_headers)

    log = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]

    assert [(entry["action"], entry["details"]["email"]) for entry in log[:-1]] == [
        ("invitation_revoked", "gone@example.org"),
        ("member_invited", "gone@example.org"),
        ("invitation_declined", "no@example.org"),
        ("member_invited", "no@example.org"),
        ("invitation_accepted", grace.email),
        ("member_invited", grace.email),
    ]
    actors = [entry["actor"]["email"] if entry["actor"] else None for entry in log[:-1]]
    assert actors == [alice.email, alice.email, None, alice.email, grace.email, alice.email]


# Races


async def test_an_invite_that_loses_a_race_for_the_same_address_is_409_busy_and_writes_nothing(
    client, alice, alice_headers, make_study, monkeypatch
):
    study = await make_study(owner=alice)
    await invite(client, study, alice_headers, "grace@example.org")

    async def not_yet_invited(*_args, **_kwargs):
        return None  # as if the other request committed just after this one's read

    monkeypatch.setattr(invitation_service, "_pending_for_address", not_yet_invited)
    response = await client.post(
        study_url(study, "members"),
        json={"email": "grace@example.org", "role": "owner"},
        headers=alice_headers,
    )

    assert_problem(response, 409, "RESOURCE_BUSY")
    (row,) = await invitation_rows()
    assert row.role == StudyRole.EDITOR
    log = (await client.get(study_url(study, "activity"), headers=alice_headers)).json()["items"]
    assert [entry["action"] for entry in log].count("member_invited") == 1


async def test_an_invitation_revoked_while_its_invitee_registers_leaves_a_verified_account_outside(
    client, alice, alice_headers, make_study, monkeypatch
):
    study = await make_study(owner=alice)
    token = await mailed_token(client, study, alice_headers, "grace@example.org")
    register_invited_user = auth_registration.register_invited_user

    async def revoked_meanwhile(session, **kwargs):
        user = await register_invited_user(session, **kwargs)
        async with SessionFactory() as other:
            await other.execute(update(Invitation).values(status=InvitationStatus.REVOKED, token_hash=None))
            await other.commit()
        return user

    monkeypatch.setattr(auth_registration, "register_invited_user", revoked_meanwhile)
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "grace@example.org",
            "password": "a long passphrase",
            "full_name": "G",
            "invitation_token": token,
        },
    )

    assert response.status_code == 201, response.text
    assert response.json()["email_verified_at"] is not None
    assert len(await members_of(study)) == 1


async def test_registering_through_the_link_with_an_address_that_has_an_account_is_409(
    client, alice, alice_headers, make_study, make_user
):
    """The link's holder has the invited mailbox: being told it has an account reveals nothing to them
    (self-registration, without a link, answers the same 202 either way)."""
    study = await make_study(owner=alice)
    await make_user(email="grace@example.org")
    token = await mailed_token(client, study, alice_headers, "grace@example.org")

    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "grace@example.org",
            "password": "a long passphrase",
            "full_name": "G",
            "invitation_token": token,
        },
    )

    assert_problem(response, 409, "EMAIL_TAKEN")
    assert len(await members_of(study)) == 1


# Pruning


async def test_prune_deletes_invitations_finished_long_ago_and_keeps_the_rest(
    client, alice, alice_headers, make_study
):
    study = await make_study(owner=alice)
    for email in (
        "old-declined@example.org",
        "old-expired@example.org",
        "recent@example.org",
        "live@example.org",
    ):
        await invite(client, study, alice_headers, email)
    long_ago = utcnow() - timedelta(days=INVITATION_KEEP_DAYS + 1)
    async with SessionFactory() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.email == "old-declined@example.org")
            .values(status=InvitationStatus.DECLINED, responded_at=long_ago)
        )
        await session.execute(
            update(Invitation)
            .where(Invitation.email == "old-expired@example.org")
            .values(expires_at=long_ago)
        )
        await session.execute(
            update(Invitation)
            .where(Invitation.email == "recent@example.org")
            .values(status=InvitationStatus.REVOKED, responded_at=utcnow() - timedelta(days=1))
        )
        await session.commit()

    async with SessionFactory() as session:
        pruned = await invitation_service.prune_finished_invitations(session, max_rows=100, batch_rows=1)

    assert pruned == 2
    assert sorted(row.email for row in await invitation_rows()) == ["live@example.org", "recent@example.org"]
