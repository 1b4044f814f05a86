"""gateway.log: every line written while a call's fields are bound names the call."""

from __future__ import annotations

import io
import json
import logging

import structlog

from gateway.config import LoggingSettings
from gateway.log import bind_call_fields, configure_logging, enabled, unbind_call_fields


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_lines_inside_a_call_carry_its_request_id_method_and_face() -> None:
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="json"), stream=buffer)
    log = structlog.get_logger("gateway.test")
    token = bind_call_fields("rid-1", "GetMessage", "grpc")
    try:
        log.info("inside_grpc")
        logging.getLogger("somelib").warning("stdlib line")  # bridged through the same chain
    finally:
        unbind_call_fields(token)
    token = bind_call_fields("rid-2", "ListMessages", "rest")
    try:
        log.info("inside_rest")
    finally:
        unbind_call_fields(token)
    log.info("outside")
    lines = {line["event"]: line for line in _lines(buffer)}
    assert (lines["inside_grpc"]["request_id"], lines["inside_grpc"]["method"],
            lines["inside_grpc"]["face"]) == ("rid-1", "GetMessage", "grpc")
    assert lines["stdlib line"]["request_id"] == "rid-1"
    assert (lines["inside_rest"]["request_id"], lines["inside_rest"]["face"]) == ("rid-2", "rest")
    assert "request_id" not in lines["outside"] and "method" not in lines["outside"]


def test_lines_outside_calls_add_nothing_and_level_gate_follows_configuration() -> None:
    buffer = io.StringIO()
    configure_logging(LoggingSettings(level="warning", format="json"), stream=buffer)
    assert enabled(logging.WARNING) and not enabled(logging.INFO)
    try:
        structlog.get_logger("gateway.test").warning("background")
        assert "request_id" not in _lines(buffer)[0]
    finally:
        configure_logging(LoggingSettings(level="info", format="json"), stream=io.StringIO())
    assert enabled(logging.INFO)
