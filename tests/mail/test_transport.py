"""The mail service's client (src/third_party/mail.py) against a real SMTP server: plain, with a
password, with STARTTLS on offer, with TLS from the first byte; and what its failures mean."""

from urllib.parse import quote

import pytest

from src.third_party.mail import (
    LogTransport,
    MailDeliveryFailed,
    OutgoingMail,
    SmtpServer,
    SmtpTransport,
    build_message,
    message_id_domain,
    transport_for,
)
from tests.smtp_server import (
    SMTP_PASSWORD,
    SMTP_USER,
    client_tls_context,
    running_smtp_server,
    self_signed_certificate,
    server_tls_context,
)

MAIL = OutgoingMail(
    message_id="0b6c1c9e-7e2f-4c5e-9d1a-2f3b4c5d6e7f",
    sender="Studybase <noreply@example.org>",
    recipient="ada@example.org",
    subject="Hello",
    text="plain words",
    html="<p>html words</p>",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is not installed")
    return made


def credentials() -> str:
    return f"{quote(SMTP_USER, safe='')}:{quote(SMTP_PASSWORD, safe='')}@"


# SMTP_URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpServer("mail.example.org", 587, False, None, None)),
        ("smtp://mail.example.org:25", SmtpServer("mail.example.org", 25, False, None, None)),
        ("smtps://u:p@mail.example.org", SmtpServer("mail.example.org", 465, True, "u", "p")),
        ("smtp://a%40b:p%3Aq%40@h.example:2525", SmtpServer("h.example", 2525, False, "a@b", "p:q@")),
    ],
)
def test_smtp_url_says_where_and_how(url, expected):
    assert SmtpServer.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "mail.example.org:25", "smtp://", "smtp://:25"])
def test_an_smtp_url_that_is_not_one_is_refused(url):
    with pytest.raises(ValueError, match="SMTP_URL"):
        SmtpServer.from_url(url)


def test_without_an_smtp_url_mail_goes_to_the_log():
    assert isinstance(transport_for(None, timeout=1), LogTransport)
    assert isinstance(transport_for("smtp://h.example", timeout=1), SmtpTransport)


# The message


def test_the_message_carries_both_bodies_and_names_its_outbox_row():
    message = build_message(MAIL)

    assert message["Message-ID"] == f"<{MAIL.message_id}@example.org>"
    assert message["To"] == "ada@example.org"
    assert message.get_body(("plain",)).get_content().strip() == "plain words"
    assert message.get_body(("html",)).get_content().strip() == "<p>html words</p>"


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("a@example.org", "example.org"),
        ("Studybase <s@localhost>", "studybase.invalid"),
        ("x", "studybase.invalid"),
    ],
)
def test_the_message_id_domain_comes_from_the_sender_when_it_can(sender, domain):
    assert message_id_domain(sender) == domain


# Against a real server


# aiosmtpd warns that a password without TLS is unsafe: on loopback in a test it is what we want.
PLAIN_LOGIN_ON_LOOPBACK = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@PLAIN_LOGIN_ON_LOOPBACK
async def test_mail_is_handed_over_with_a_password_from_the_url():
    with running_smtp_server(require_login=True) as server:
        await SmtpTransport(server.url(credentials=credentials()), timeout=5).send(MAIL)

    (delivered,) = server.messages
    assert delivered.rcpt_tos == ["ada@example.org"]
    assert delivered.message["Subject"] == "Hello"


@PLAIN_LOGIN_ON_LOOPBACK
async def test_a_wrong_password_is_a_failure_worth_retrying_once_fixed():
    with running_smtp_server(require_login=True) as server, pytest.raises(MailDeliveryFailed) as failure:
        await SmtpTransport(server.url(credentials="studybase:wrong@"), timeout=5).send(MAIL)

    assert failure.value.permanent is False
    assert server.messages == []


async def test_starttls_is_used_whenever_the_server_offers_it(certificate):
    key, cert = certificate
    with running_smtp_server(require_login=True, starttls_context=server_tls_context(key, cert)) as server:
        # The server refuses a password before TLS (auth_require_tls): delivery proves the upgrade.
        transport = SmtpTransport(
            server.url(credentials=credentials()), timeout=5, tls_context=client_tls_context(cert)
        )
        await transport.send(MAIL)

    assert len(server.messages) == 1


async def test_starttls_checks_the_servers_certificate(certificate):
    key, cert = certificate
    with (
        running_smtp_server(starttls_context=server_tls_context(key, cert)) as server,
        pytest.raises(MailDeliveryFailed) as failure,
    ):
        await SmtpTransport(server.url(), timeout=5).send(MAIL)  # the system's trust store

    assert failure.value.permanent is False
    assert server.messages == []


async def test_smtps_speaks_tls_from_the_first_byte(certificate):
    key, cert = certificate
    with running_smtp_server(implicit_tls_context=server_tls_context(key, cert)) as server:
        transport = SmtpTransport(server.url(scheme="smtps"), timeout=5, tls_context=client_tls_context(cert))
        await transport.send(MAIL)

    assert len(server.messages) == 1


async def test_no_server_listening_is_a_temporary_failure():
    with running_smtp_server() as server:
        url = server.url()
    with pytest.raises(MailDeliveryFailed) as failure:
        await SmtpTransport(url, timeout=2).send(MAIL)

    assert failure.value.permanent is False


async def test_a_mailbox_refused_for_good_is_a_permanent_failure(smtp_server):
    smtp_server.handler.refused_recipients.add("ada@example.org")

    with pytest.raises(MailDeliveryFailed, match="550") as failure:
        await SmtpTransport(smtp_server.url(), timeout=5).send(MAIL)

    assert failure.value.permanent is True


async def test_the_log_transport_writes_the_whole_message(caplog):
    caplog.set_level("INFO", logger="studybase.mail")

    await LogTransport().send(MAIL)

    (record,) = [r for r in caplog.records if r.msg == "mail_logged"]
    assert record.to == "ada@example.org"
    assert "plain words" in record.mail
    assert f"Message-ID: <{MAIL.message_id}@example.org>" in record.mail
