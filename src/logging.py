"""One JSON object per log line, each carrying the id of the request it belongs to."""

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> object:
    return _request_id.set(request_id)


def unbind_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class DatabaseOutageLog:
    """A database outage in two lines, not a traceback per refused request: WARNING when the first
    request is refused (with what the driver said), INFO when the database answers again, with how
    many requests were refused meanwhile and for how long."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.refused = 0
        self.since: datetime | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def request_refused(self, error: BaseException) -> None:
        self.refused += 1
        if self.since is None:
            self.since = datetime.now(UTC)
            # The first line of what the driver said: never a value (engines hide parameters).
            said = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            self.logger.warning("database_unavailable", extra={"error": type(error).__name__, "detail": said})

    def database_answered(self) -> None:
        if self.since is None:
            return
        seconds = (datetime.now(UTC) - self.since).total_seconds()
        self.logger.info(
            "database_available",
            extra={"refused_requests": self.refused, "outage_seconds": round(seconds, 1)},
        )
        self.since, self.refused = None, 0


database_outage = DatabaseOutageLog(logging.getLogger("studybase.errors"))


# One encoder for every line: json.dumps(..., default=str) builds a new JSONEncoder per call, ~2 us
# of each request's access line.
_encode_line = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": current_request_id(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_RECORD_FIELDS
        )
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return _encode_line(entry)


# What every log call would otherwise look up for fields no line of ours shows (JsonFormatter writes
# the standard fields above and the `extra=` ones): the caller's file and line (a walk up the
# stack), the thread, the process and (Python 3.12+) the asyncio task. The logging HOWTO's
# "Optimization" switches; the access line of every request paid ~7 us for them
# (`python -m benchmarks.app_cpu`, /health).
_UNSHOWN_RECORD_LOOKUPS = ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


def skip_unshown_record_lookups() -> None:
    logging._srcfile = None  # type: ignore[attr-defined]
    for switch in _UNSHOWN_RECORD_LOOKUPS:
        setattr(logging, switch, False)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for our loggers and the servers'; uvicorn's access log is replaced by ours."""
    skip_unshown_record_lookups()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
            "root": {"handlers": ["stderr"], "level": level},
            "loggers": {
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
                "gunicorn.error": {"handlers": [], "propagate": True},
                "gunicorn.access": {"handlers": [], "propagate": False},
            },
        }
    )
