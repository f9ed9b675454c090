"""A real SMTP server for the tests (aiosmtpd, in a thread of its own) on a free loopback port.

It keeps every message it accepts, parsed, and can be stopped and started again on the same
port (an SMTP server away for a while), refuse recipients for good (550), ask for a password,
and speak TLS: STARTTLS on offer, or TLS from the first byte (smtps).
"""

import contextlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from scripts.local_stack import free_port

SMTP_USER = "studybase"
SMTP_PASSWORD = "smtp p@ss:word"  # URL-unsafe on purpose: SMTP_URL carries it %-encoded


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def link_token(self, link_start: str) -> str:
        """The token in the fragment of the text's one link that starts with `link_start`
        (`https://host/verify-email`), read as the page reads it."""
        text = self.message.get_body(("plain",)).get_content()
        (link,) = [word for word in text.split() if word.startswith(f"{link_start}#token=")]
        (token,) = parse_qs(urlsplit(link).fragment)["token"]
        return token


@dataclass
class _Handler:
    messages: list[Delivered] = field(default_factory=list)
    refused_recipients: set[str] = field(default_factory=set)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        if address in self.refused_recipients:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.arrived:
            self.messages.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), parsed))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


def _check_login(_server, _session, _envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        mechanism in ("LOGIN", "PLAIN")
        and isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == SMTP_USER
        and auth_data.password.decode() == SMTP_PASSWORD
    )
    return AuthResult(success=ok, handled=False)


class SmtpTestServer:
    def __init__(
        self,
        *,
        require_login: bool = False,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = free_port()
        self.handler = _Handler()
        self.require_login = require_login
        self.starttls_context = starttls_context
        self.implicit_tls_context = implicit_tls_context
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Delivered]:
        return self.handler.messages

    def url(self, *, scheme: str = "smtp", credentials: str = "") -> str:
        return f"{scheme}://{credentials}127.0.0.1:{self.port}"

    def start(self) -> None:
        smtp_kwargs: dict = {"server_hostname": "mail.test"}
        if self.require_login:
            smtp_kwargs |= {"auth_required": True, "authenticator": _check_login}
            # Passwords are fine in plain text on loopback; a real server insists on TLS first.
            smtp_kwargs["auth_require_tls"] = self.starttls_context is not None
        if self.starttls_context is not None:
            smtp_kwargs["tls_context"] = self.starttls_context
        # ssl_context: TLS from the first byte (smtps); tls_context above: STARTTLS on offer.
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=self.implicit_tls_context,
            **smtp_kwargs,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Delivered]:
        """Blocks until `count` messages have arrived (for a server fed by another process)."""
        deadline = time.monotonic() + timeout
        with self.handler.arrived:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self.messages)} of {count} messages arrived within {timeout}s"
                    )
                self.handler.arrived.wait(remaining)
        return list(self.messages)


@contextlib.contextmanager
def running_smtp_server(**options) -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """A throwaway certificate for 127.0.0.1 made with the openssl command, or None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(  # noqa: S603 (fixed argv)
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def server_tls_context(key: Path, cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_tls_context(cert: Path) -> ssl.SSLContext:
    """Trusts the throwaway certificate only: the client checks it as it would a real one."""
    return ssl.create_default_context(cafile=str(cert))
