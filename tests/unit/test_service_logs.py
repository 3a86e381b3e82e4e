"""service.logs: JSON lines, and the call log's direct path to the service's handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import CallLog, configure_logging

FIELDS = {"request_id": "r-1", "client": "demo-lender", "method": "/m", "status": "OK"}


@pytest.fixture
def sink() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    yield stream, handler
    for each in list(root.handlers):
        root.removeHandler(each)
    for each in saved[0]:
        root.addHandler(each)
    root.setLevel(saved[1])


def lines(stream: io.StringIO, handler: logging.Handler) -> list[dict[str, object]]:
    handler.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_call_line_is_the_same_directly_and_through_logging(
    sink: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = sink
    CallLog("test.calls").write(dict(FIELDS))
    logging.getLogger("test.calls").info("call", extra={"call_fields": dict(FIELDS)})
    direct, through = lines(stream, handler)
    assert list(direct) == list(through)  # same keys, same order
    assert {k: v for k, v in direct.items() if k != "time"} == {
        "level": "INFO",
        "logger": "test.calls",
        "message": "call",
        **FIELDS,
    }


def test_another_handler_gets_the_line_through_logging(
    sink: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = sink
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    extra = Keep()
    logging.getLogger().addHandler(extra)
    try:
        CallLog("test.calls").write(dict(FIELDS))
    finally:
        logging.getLogger().removeHandler(extra)
    assert [record.getMessage() for record in seen] == ["call"]
    assert [line["request_id"] for line in lines(stream, handler)] == ["r-1"]


def test_a_filtered_or_quietened_call_log_writes_nothing(
    sink: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = sink
    logger = logging.getLogger("test.quiet")
    logger.setLevel(logging.WARNING)
    CallLog("test.quiet").write(dict(FIELDS))
    logger.setLevel(logging.NOTSET)
    logger.addFilter(lambda record: False)
    CallLog("test.quiet").write(dict(FIELDS))
    assert lines(stream, handler) == []
