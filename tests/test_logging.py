"""The log lines' own setup: what configure_logging switches off, and what a line still carries."""

import json
import logging
import uuid

from src.logging import JsonFormatter, bind_request_id, configure_logging, unbind_request_id


def test_logging_skips_the_lookups_no_line_shows_and_a_line_keeps_every_field():
    configure_logging("INFO")

    assert logging._srcfile is None  # no walk up the stack for a file and line per call
    assert [logging.logThreads, logging.logProcesses, logging.logMultiprocessing] == [False] * 3
    logger = logging.getLogger("studybase.access")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        "(unknown file)",
        0,
        "request",
        (),
        None,
        extra={"status": 200, "path": "/x"},
    )
    token = bind_request_id("r-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        unbind_request_id(token)
    assert (record.thread, record.process) == (None, None)
    assert line.pop("ts")
    assert line == {
        "level": "INFO",
        "logger": "studybase.access",
        "msg": "request",
        "request_id": "r-1",
        "status": 200,
        "path": "/x",
    }


def test_a_value_json_cannot_hold_is_written_as_its_text():
    logger = logging.getLogger("studybase.requests")
    someone = uuid.uuid4()
    record = logger.makeRecord(
        logger.name, logging.INFO, "(unknown file)", 0, "x", (), None, extra={"user": someone, "n": 1}
    )

    line = json.loads(JsonFormatter().format(record))

    assert (line["user"], line["n"]) == (str(someone), 1)
