"""The mail service: one outgoing message handed to an SMTP server, or to the log in development.

Only this file imports the SMTP client (aiosmtplib). The mail module (src/mail/) decides what is
sent and when; this decides how: `transport_for(url)` gives a `MailTransport` whose `send()` either
delivers the message or raises `MailDeliveryFailed`, saying whether trying again can help.
"""

import logging
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

logger = logging.getLogger("studybase.mail")

SMTP_SCHEMES = {"smtp": 587, "smtps": 465}
# The domain part of a Message-ID when MAIL_FROM has none that can serve (RFC 5322 wants one).
FALLBACK_MESSAGE_ID_DOMAIN = "studybase.invalid"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One message as the mail module composed it; `message_id` is its outbox row's id."""

    message_id: str
    sender: str
    recipient: str
    subject: str
    text: str
    html: str


class MailDeliveryFailed(Exception):
    """The server did not take the message. `permanent`: it refused it for good (an unknown
    mailbox, a rejected message), so trying again cannot help; otherwise it may later."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class MailTransport(Protocol):
    async def send(self, mail: OutgoingMail) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to hand mail over, read from SMTP_URL (`smtp://user:pass@host:port` with
    STARTTLS whenever the server offers it, `smtps://` for TLS from the first byte)."""

    hostname: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES:
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("SMTP_URL must name a host, as in smtp://mail.example.org:587")
        return cls(
            hostname=parts.hostname,
            port=parts.port or SMTP_SCHEMES[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def message_id_domain(sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return domain if domain and "." in domain else FALLBACK_MESSAGE_ID_DOMAIN


def build_message(mail: OutgoingMail) -> EmailMessage:
    """Plain text with an HTML alternative; the Message-ID names the outbox row, so a message
    handed over twice (a crash between the server's answer and our commit) reads as one."""
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = Address(addr_spec=mail.recipient)
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{mail.message_id}@{message_id_domain(mail.sender)}>"
    # RFC 3834: automatic mail; well-behaved auto-responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def _is_permanent(error: aiosmtplib.SMTPException) -> bool:
    """A 5xx about this message (its recipient, its content): permanent. A 5xx about our own
    setup (authentication, the sender address) is not the message's fault and is retried once
    the operator has fixed it; anything else (no connection, a timeout, a 4xx) is temporary."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code >= 500
    return False


class SmtpTransport:
    def __init__(self, url: str, *, timeout: float, tls_context: ssl.SSLContext | None = None) -> None:
        self.server = SmtpServer.from_url(url)
        self.timeout = timeout
        self.tls_context = tls_context

    async def send(self, mail: OutgoingMail) -> None:
        server = self.server
        try:
            await aiosmtplib.send(
                build_message(mail),
                hostname=server.hostname,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                # None: STARTTLS when the server offers it; implicit TLS has no upgrade to make.
                start_tls=False if server.implicit_tls else None,
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            permanent = isinstance(error, aiosmtplib.SMTPException) and _is_permanent(error)
            raise MailDeliveryFailed(f"{type(error).__name__}: {error}"[:300], permanent=permanent) from error


class LogTransport:
    """Development and tests without SMTP_URL: the whole message, links included, in the log."""

    async def send(self, mail: OutgoingMail) -> None:
        logger.info(
            "mail_logged",
            extra={
                "message_id": mail.message_id,
                "to": mail.recipient,
                "mail": build_message(mail).as_string(),
            },
        )


def transport_for(smtp_url: str | None, *, timeout: float) -> MailTransport:
    return SmtpTransport(smtp_url, timeout=timeout) if smtp_url else LogTransport()
