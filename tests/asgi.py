"""The server's side of one request, for what httpx's ASGITransport cannot show: a client that goes
away halfway through its body or halfway through the response, and a response arriving chunk by chunk.

uvicorn (what gunicorn runs here) speaks ASGI 2.3: a client gone is a `http.disconnect` from
receive, and send to it does nothing. From ASGI 2.4 on, send to a client gone raises OSError
instead; `spec_version="2.4"` plays that server.
"""

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from src.logging import JsonFormatter

Message = dict[str, Any]


class ClientGone(OSError):
    """What an ASGI 2.4 server's send raises once the client has gone (uvicorn's is an OSError too)."""


class OneRequest:
    """Sends `body_pieces` to the app (the last with more_body=False unless the client hangs up
    after them), then hangs up after the response's `hang_up_after_chunks`-th non-empty body chunk,
    if given; records what the app sent while the client was there."""

    def __init__(
        self,
        *,
        body_pieces: Sequence[bytes] = (b"",),
        hang_up_after_body: bool = False,
        hang_up_after_chunks: int | None = None,
        spec_version: str = "2.3",
        on_chunk: Callable[[int], None] | None = None,
        on_hang_up_told: Callable[[], None] | None = None,
    ) -> None:
        self.body_pieces = list(body_pieces)
        self.hang_up_after_body = hang_up_after_body
        self.hang_up_after_chunks = hang_up_after_chunks
        self.spec_version = spec_version
        self.on_chunk = on_chunk
        self.on_hang_up_told = on_hang_up_told or (lambda: None)
        self.sent: list[Message] = []
        self.gone = asyncio.Event()
        self._chunks = 0

    async def __call__(
        self, app: Any, method: str, path: str, *, headers: Mapping[str, str] | None = None, query: str = ""
    ) -> "OneRequest":
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": self.spec_version},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver")]
            + [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
            "client": ("203.0.113.7", 50000),
            "server": ("testserver", 80),
        }
        await asyncio.wait_for(app(scope, self.receive, self.send), timeout=60)
        return self

    async def receive(self) -> Message:
        if self.body_pieces:
            piece = self.body_pieces.pop(0)
            more = bool(self.body_pieces) or self.hang_up_after_body
            return {"type": "http.request", "body": piece, "more_body": more}
        if self.hang_up_after_body:
            self.gone.set()
        if self.spec_version == "2.4" and not self.gone.is_set():
            await asyncio.Event().wait()  # a hang-up while the response is sent shows in send instead
        await self.gone.wait()
        self.on_hang_up_told()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.gone.is_set():
            if self.spec_version == "2.4":
                self.on_hang_up_told()
                raise ClientGone("the client has gone")
            return
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self._chunks += 1
            if self.on_chunk is not None:
                self.on_chunk(self._chunks)
            if self._chunks == self.hang_up_after_chunks:
                self.gone.set()

    @property
    def status(self) -> int | None:
        starts = [message for message in self.sent if message["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(
            message.get("body", b"") for message in self.sent if message["type"] == "http.response.body"
        )


@pytest.fixture
def request_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog writing lines as production does, at the time of the call, so each carries its request id."""
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.INFO, logger="studybase")
    return caplog


def assert_logged_as_a_hang_up(log: pytest.LogCaptureFixture, request_id: str) -> dict[str, Any]:
    """One INFO `client_disconnected` line and a 499 access line for the request, and no error at all;
    the hang-up line is returned."""
    lines = [json.loads(line) for line in log.text.splitlines()]
    assert [line for line in lines if line["level"] in ("ERROR", "CRITICAL", "WARNING")] == []
    (hang_up,) = [line for line in lines if line["msg"] == "client_disconnected"]
    assert hang_up["level"] == "INFO"
    assert hang_up["request_id"] == request_id
    (access,) = [line for line in lines if line["logger"] == "studybase.access"]
    assert (access["status"], access["request_id"]) == (499, request_id)
    return hang_up
