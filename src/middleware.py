"""The one pure-ASGI middleware of every request (RequestMiddleware): request id, access log,
last-resort 500s, security headers, deadline, idempotent answers, path and body checks."""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from src import idempotency
from src.config import settings
from src.constants import IDEMPOTENCY_MAX_STORED_BODY_BYTES, MAX_BODY_BYTES, ErrorCode
from src.deadlines import RequestDeadline, RequestTimedOut, enter_deadline, leave_deadline
from src.exceptions import (
    AppError,
    MalformedBody,
    PayloadTooLarge,
    internal_error_response,
    problem_of,
    problem_response,
)
from src.json_body import check_json_body
from src.logging import bind_request_id, unbind_request_id
from src.page import is_page_path
from src.url_encoded import undecodable_names

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Python's `$` also matches before a final newline, so `/auth/register%0A` would reach the
# `/auth/register` route while nginx's exact-match rate limit never saw that path.
_CONTROL_CHARACTERS_IN_PATH = re.compile(r"[\x00-\x1f\x7f-\x9f]")

access_logger = logging.getLogger("studybase.access")
error_logger = logging.getLogger("studybase.errors")
# Events of a request's life that are not errors (a client that hung up).
request_logger = logging.getLogger("studybase.requests")
# nginx's status for a request whose client closed the connection before the response was complete.
CLIENT_CLOSED_REQUEST = 499

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI comes from the app itself (src/docs.py): scripts and styles only from 'self', no
# inline script; images include the data: URIs of its icons.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# ReDoc (styled-components) builds its styles in <style> elements at run time and stops with
# error #17 when they are refused, so its page alone allows inline styles; scripts stay 'self'.
# Its search runs in a blob: worker.
REDOC_CSP = DOCS_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + "; worker-src blob:"
PAGE_CSPS = {"/docs": DOCS_CSP, "/redoc": REDOC_CSP}
# The dashboard page (src/page.py; nginx sets the same one in default.conf): its own scripts,
# styles and API calls only; its sign-in form is handled by script, so no form may post anywhere else.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's id when it is short and plain (it ends up in logs), else a fresh one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class _Exchange:
    """What became of one request's response, as the middleware saw it go by."""

    def __init__(self) -> None:
        self.status = 500
        self.response_started = False
        self.response_complete = False
        self.client_gone = False
        # The server's send raised: an ASGI 2.4 server's way of saying the client has gone.
        self.send_failed = False


def is_client_disconnect(error: BaseException) -> bool:
    """Starlette's ClientDisconnect (a body that stopped coming, or a response the client left),
    alone or as all of an exception group (a task group that was reading or sending)."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(ClientDisconnect)[1] is None
    return isinstance(error, ClientDisconnect)


# Methods that may write: their requests are watched for a client that goes away after its body.
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# After the 503 is sent, the request's task is cancelled twice this far apart: a database driver
# interrupted once tries to cancel its query politely (psycopg waits up to 10 s for a server that
# may be unreachable); interrupted again, it closes the connection at once.
SECOND_CANCEL_AFTER_SECONDS = 0.05


class _DeadlineExchange:
    def __init__(self) -> None:
        self.response_started = False
        self.response_complete = False
        self.abandoned = False  # the deadline answered for the request: its own answer is dropped
        self.cancels = 0
        self.watcher: asyncio.Future[Message] | None = None
        self.answering: asyncio.Task[None] | None = None


def _security_headers_for(csp: str) -> tuple[tuple[bytes, bytes], ...]:
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp, "Cache-Control": "no-store"}
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())


_API_SECURITY_HEADERS = _security_headers_for(API_CSP)
_PAGE_SECURITY_HEADERS = {path: _security_headers_for(csp) for path, csp in PAGE_CSPS.items()}
_DASHBOARD_SECURITY_HEADERS = _security_headers_for(DASHBOARD_CSP)
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")


def security_headers_of(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """Headers that make browsers treat every response defensively (no response is cacheable),
    with the Content-Security-Policy of the page or API path."""
    if is_page_path(path):
        return _DASHBOARD_SECURITY_HEADERS
    return _PAGE_SECURITY_HEADERS.get(path, _API_SECURITY_HEADERS)


def with_response_headers(
    message: Message, request_id: str, defaults: tuple[tuple[bytes, bytes], ...]
) -> None:
    """The response's headers with the request id (in place of any the app set) and each of
    `defaults` the app did not set itself."""
    headers = [header for header in message.get("headers", ()) if header[0].lower() != _REQUEST_ID_NAME]
    present = {name.lower() for name, _ in headers}
    headers.append((_REQUEST_ID_NAME, request_id.encode("latin-1")))
    headers.extend(header for header in defaults if header[0] not in present)
    message["headers"] = headers


class RequestMiddleware:
    """Studybase's own handling of every HTTP request, in one ASGI layer. Outermost first:

    - security headers on every response, and the request's id (`X-Request-ID`): the client's when
      it is short and plain, else a fresh one; bound to every log line of the request;
    - one access line per request, and a crash turned into a clean problem+json 500. A client that
      hangs up before its response is complete (mid-upload, mid-download) is not an error: an INFO
      `client_disconnected` line, status 499 in the access line (nginx's "client closed request"),
      nothing sent to it, whatever the status the response had begun with;
    - the deadline (REQUEST_TIMEOUT_SECONDS), however long the database hangs: past it, before the
      response has begun, the client gets 503 REQUEST_TIMED_OUT at once, and the request's work is
      cancelled behind the answer instead of being waited for. A streamed response lifts the
      deadline once it begins; an upload lifts it (src.deadlines). A request that may write is
      also watched, once its body is in, for a client that goes away: src.deadlines refuses the
      commit of a request past its deadline or without a client;
    - the answer of a POST that took an Idempotency-Key (src.idempotency) kept for its retries;
    - no route serves a path with control characters in it: 404 before routing;
    - CORS, where CORS_ORIGINS allows any (ProblemCORSMiddleware), around
    - every JSON body held to src.json_body's limits, and every form body to UTF-8 text.

    One layer rather than six: each layer cost every request a coroutine frame that every
    resumption of the request walks through, and every response message a wrapper of its own
    (README, Benchmarks: the profiles and the numbers before and after).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        deadline_seconds: float = settings.REQUEST_TIMEOUT_SECONDS,
        cors: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.deadline_seconds = deadline_seconds
        self.routed: ASGIApp = self._with_body_checked
        if cors is not None:
            self.routed = ProblemCORSMiddleware(self._with_body_checked, **cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        defaults = security_headers_of(scope["path"])
        token = bind_request_id(request_id)
        started = time.perf_counter()
        exchange = _Exchange()

        # The server's receive and send are called with no request id bound: uvicorn registers
        # transport callbacks from inside them (resuming reading after a large body paused it, the
        # keep-alive timer, the next pipelined request), and asyncio runs each callback in a copy of
        # the context current at registration. A bound id would follow those callbacks and label
        # the server's later log lines for other requests on the connection.
        async def receive_noting_hang_up() -> Message:
            unbound = bind_request_id(None)
            try:
                message = await receive()
            finally:
                unbind_request_id(unbound)
            if message["type"] == "http.disconnect" and not exchange.response_complete:
                exchange.client_gone = True
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                with_response_headers(message, request_id, defaults)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Before the send: a hang-up noticed while it is under way came too late to matter.
                exchange.response_complete = True
            unbound = bind_request_id(None)
            try:
                await send(message)
            except OSError:
                exchange.send_failed = exchange.client_gone = True
                raise
            finally:
                unbind_request_id(unbound)
            exchange.response_started = True

        try:
            await self._within_deadline(scope, receive_noting_hang_up, send_with_headers)
        except Exception as error:
            if is_client_disconnect(error) or exchange.send_failed:
                exchange.client_gone = True  # nothing to answer: there is no one to answer
            else:
                error_logger.exception("unhandled error", extra={"path": scope["path"]})
                if exchange.response_started:
                    raise
                await internal_error_response()(scope, receive_noting_hang_up, send_with_headers)
        finally:
            if exchange.client_gone and not exchange.response_complete:
                _log_hang_up(scope, exchange)
                exchange.status = CLIENT_CLOSED_REQUEST
            _log_access(scope, exchange.status, started)
            unbind_request_id(token)

    async def _within_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        exchange = _DeadlineExchange()
        deadline = RequestDeadline(at=loop.time() + self.deadline_seconds)

        def answer_for_the_request() -> None:
            if exchange.response_started or task is None:
                return
            exchange.abandoned = True
            exchange.answering = loop.create_task(_answer_then_cancel(scope, send, task, exchange))

        async def send_unless_answered(message: Message) -> None:
            if exchange.abandoned:
                return  # the client has its 503 already
            if message["type"] == "http.response.start":
                exchange.response_started = True
                deadline.lift()  # a streamed body may take as long as it takes
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                exchange.response_complete = True
            await send(message)

        watched = receive if scope["method"] in _READ_METHODS else _watching(receive, deadline, exchange)
        deadline.on_expiry = answer_for_the_request
        deadline.arm(loop)
        token = enter_deadline(deadline)
        try:
            await self._handle(scope, watched, send_unless_answered)
        except asyncio.CancelledError:
            if not exchange.abandoned or task is None:
                raise
            for _ in range(exchange.cancels):  # the cancellations were ours, and are over
                task.uncancel()
        finally:
            deadline.disarm()
            leave_deadline(token)
            if exchange.watcher is not None and not exchange.watcher.done():
                exchange.watcher.cancel()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _CONTROL_CHARACTERS_IN_PATH.search(scope["path"]):
            response = problem_response(
                status=404, code=ErrorCode.NOT_FOUND, title="Not Found", detail="There is no such path."
            )
            await response(scope, receive, send)
        elif scope["method"] == "POST":
            await self._keeping_idempotent_answer(scope, receive, send)
        else:
            await self.routed(scope, receive, send)

    async def _keeping_idempotent_answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Keeps the answer of a POST that took an Idempotency-Key, for its retries.

        The answer is captured as it is sent (a create's answer is small; one past
        IDEMPOTENCY_MAX_STORED_BODY_BYTES is not kept) and stored once sent, in a short transaction
        of its own, shielded from the request's cancellation and bounded in time: with the database
        gone, the key stays `started` and a retry takes it over once it is stale.
        """
        state, token = idempotency.enter_request()
        answer = _CapturedAnswer()

        async def send_and_capture(message: Message) -> None:
            if state.held is not None:
                answer.capture(message)
            await send(message)

        try:
            await self.routed(scope, receive, send_and_capture)
        finally:
            idempotency.leave_request(token)
            if state.held is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(STORE_ANSWER_SECONDS):
                    await idempotency.finish(
                        state, status=answer.status, headers=answer.headers, body=answer.body()
                    )

    async def _with_body_checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, once a JSON body is within src.json_body's limits and a form body is UTF-8 text
        (src.url_encoded): refused before routing, for every route alike."""
        media_type = media_type_of(scope["headers"])
        check = check_json_body if is_json_media_type(media_type) else BODY_CHECKS.get(media_type)
        if check is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
            if body is None:
                return
            check(body)
        except AppError as refused:
            await problem_of(refused)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def _log_hang_up(scope: Scope, exchange: _Exchange) -> None:
    request_logger.info(
        "client_disconnected",
        extra={
            "method": scope["method"],
            "path": scope["path"],
            # The status already sent when the client left mid-response, else None.
            "response_status": exchange.status if exchange.response_started else None,
        },
    )


def _log_access(scope: Scope, status: int, started: float) -> None:
    client = scope.get("client")
    access_logger.info(
        "request",
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "user_id": scope.get("state", {}).get("user_id"),
            "client": client[0] if client else None,
        },
    )


def _watching(receive: Receive, deadline: RequestDeadline, exchange: _DeadlineExchange) -> Receive:
    """The server's receive, which once the body is in keeps listening for the client leaving."""

    async def listen_for_disconnect() -> Message:
        message = await receive()
        if message["type"] == "http.disconnect" and not exchange.response_complete:
            deadline.client_gone = True
        return message

    async def receive_and_watch() -> Message:
        if exchange.watcher is not None:  # asked again after the body: the watcher's answer
            return await asyncio.shield(exchange.watcher)
        message = await receive()
        if message["type"] == "http.disconnect":
            deadline.client_gone = True
        elif not message.get("more_body", False):
            exchange.watcher = asyncio.ensure_future(listen_for_disconnect())
        return message

    return receive_and_watch


async def _answer_then_cancel(
    scope: Scope, send: Send, task: asyncio.Task, exchange: _DeadlineExchange
) -> None:
    error = RequestTimedOut()
    response = problem_response(
        status=error.status_code,
        code=error.code,
        title=error.title,
        detail=error.detail,
        headers=error.headers,
    )
    try:
        await response(scope, _no_body, send)
    finally:
        for _ in range(2):
            if task.done():
                break
            task.cancel()
            exchange.cancels += 1
            await asyncio.sleep(SECOND_CANCEL_AFTER_SECONDS)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


# The longest an answer's storing may take (the database may be what failed the request).
STORE_ANSWER_SECONDS = 2.0


class _CapturedAnswer:
    def __init__(self) -> None:
        self.status = 503  # no answer sent at all: treated as the server failing
        self.headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self.complete = False

    def capture(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {
                name.decode("latin-1").lower(): value.decode("latin-1") for name, value in message["headers"]
            }
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self._size += len(chunk)
            if self._size <= IDEMPOTENCY_MAX_STORED_BODY_BYTES:
                self._chunks.append(chunk)
            self.complete = not message.get("more_body", False)

    def body(self) -> bytes | None:
        """The whole body, or None when it is too large to keep or was never sent whole."""
        if not self.complete or self._size > IDEMPOTENCY_MAX_STORED_BODY_BYTES:
            return None
        return b"".join(self._chunks)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered in problem+json like every error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        return problem_response(
            status=400,
            code=ErrorCode.CORS_REJECTED,
            title="Cross-origin request refused",
            detail=f"This cross-origin request is not allowed (refused: {refused}).",
            headers={
                k: v for k, v in response.headers.items() if k.startswith("access-control-") or k == "vary"
            },
        )


def media_type_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


def is_json_media_type(media_type: bytes) -> bool:
    """What FastAPI would parse as JSON: application/json or application/*+json."""
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


def check_form_body(body: bytes) -> None:
    undecodable = undecodable_names(body)
    if undecodable:
        raise MalformedBody(f"The form field `{undecodable[0][:40]}` is not UTF-8 text.")


BODY_CHECKS: dict[bytes, Callable[[bytes], None]] = {b"application/x-www-form-urlencoded": check_form_body}


async def read_body(receive: Receive) -> bytes | None:
    """The whole body, PayloadTooLarge past MAX_BODY_BYTES, or None if the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever the server sends next."""
    delivered = False

    async def receive_again() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again
