"""Every request's deadline, and the one rule that keeps writes honest: no commit after it.

RequestMiddleware (src/middleware.py) gives each request a RequestDeadline. When it passes
before the response has begun, the client gets 503 REQUEST_TIMED_OUT at once and the request's
work is cancelled behind it: nothing awaits a database that hangs. A commit is refused once the
deadline has passed or the client has gone (the client was, or will be, told it failed); the
transaction is then rolled back. Uploads lift the deadline: they have their own bounds
(receiving is bounded by nginx, the import by IMPORT_MAX_SECONDS).
"""

import asyncio
import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import event
from sqlalchemy.orm import Session

from src.constants import ErrorCode
from src.exceptions import ServiceUnavailable


class RequestTimedOut(ServiceUnavailable):
    code = ErrorCode.REQUEST_TIMED_OUT
    headers = MappingProxyType({"Retry-After": "5"})
    detail = (
        "The request took longer than the server allows (REQUEST_TIMEOUT_SECONDS) and was stopped: "
        "nothing was changed. Try again shortly."
    )


class CommitRefused(RequestTimedOut):
    """Raised by the commit of a request whose deadline passed, or whose client has gone."""


@dataclass(slots=True)
class RequestDeadline:
    """One request's deadline (event-loop time) and what became of it."""

    at: float
    on_expiry: Callable[[], None] | None = None
    client_gone: bool = False
    expired: bool = False
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.disarm()
        if math.isfinite(self.at) and self.on_expiry is not None:
            self._timer = loop.call_at(self.at, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def lift(self) -> None:
        """No deadline any more (a streamed response under way, an upload with bounds of its own)."""
        self.at = math.inf
        self.disarm()

    def allows_commit(self, now: float) -> bool:
        return not self.client_gone and not self.expired and now < self.at

    def _expire(self) -> None:
        self._timer = None
        self.expired = True
        if self.on_expiry is not None:
            self.on_expiry()


_current: ContextVar[RequestDeadline | None] = ContextVar("request_deadline", default=None)


def current_deadline() -> RequestDeadline | None:
    return _current.get()


def enter_deadline(deadline: RequestDeadline) -> object:
    return _current.set(deadline)


def leave_deadline(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def lift_request_deadline() -> None:
    """For a route with bounds of its own (an upload): the request deadline no longer applies."""
    deadline = _current.get()
    if deadline is not None:
        deadline.lift()


@event.listens_for(Session, "before_commit")
def _refuse_late_commit(_session: Session) -> None:
    """The last moment a write can still be called off: not after its client was told it failed."""
    deadline = _current.get()
    if deadline is not None and not deadline.allows_commit(asyncio.get_running_loop().time()):
        raise CommitRefused
