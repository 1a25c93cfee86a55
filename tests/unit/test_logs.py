"""The log formats of every process (aitbc_runtime.logs): JSON's fields, one line a record,
the request and trace they belong to, failures, and nothing shaped like a secret in either."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider

from aitbc_contracts.keyformat import generate_key, hash_key
from aitbc_runtime import logs

FIELDS = {"time", "level", "service", "logger", "message", "request_id", "trace_id"}


@dataclass
class Logged:
    """A logger writing each record twice: in JSON, and in the text format."""

    logger: logging.Logger
    json: io.StringIO
    text: io.StringIO

    def entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


@pytest.fixture
def logged() -> Iterator[Logged]:
    written = Logged(logging.getLogger("aitbc.test.logs"), io.StringIO(), io.StringIO())
    as_json, as_text = logging.StreamHandler(written.json), logging.StreamHandler(written.text)
    as_json.setFormatter(logs.JsonFormatter("aitbc-test"))
    as_text.setFormatter(logs.TextFormatter())
    for handler in (as_json, as_text):
        written.logger.addHandler(handler)
    written.logger.propagate = False
    written.logger.setLevel(logging.DEBUG)
    yield written
    for handler in (as_json, as_text):
        written.logger.removeHandler(handler)
    written.logger.propagate = True


def test_a_json_record_is_one_object_on_one_line_with_every_field(logged: Logged) -> None:
    logger = logged.logger
    logger.info("first line\nsecond line %s", "of the same record")
    [entry] = logged.entries()
    assert set(entry) == FIELDS
    assert entry["message"] == "first line\nsecond line of the same record"
    assert entry["level"] == "INFO" and entry["service"] == "aitbc-test"
    assert entry["logger"] == "aitbc.test.logs"
    assert entry["request_id"] is None and entry["trace_id"] is None
    time = str(entry["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", time)
    seconds = datetime.fromisoformat(time).timestamp() - datetime.now(UTC).timestamp()
    assert abs(seconds) < 5  # UTC, not local time


def test_lines_carry_the_request_being_handled_and_the_trace_under_way(logged: Logged) -> None:
    logger = logged.logger
    tracer = TracerProvider().get_tracer("test")
    with logs.handling("req-1"), tracer.start_as_current_span("work") as span:
        logger.warning("inside")
    logger.warning("after")
    inside, after = logged.entries()
    assert inside["request_id"] == "req-1"
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert after["request_id"] is None and after["trace_id"] is None


def test_a_failure_comes_with_its_traceback_in_exc(logged: Logged) -> None:
    logger = logged.logger
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        logger.exception("while working")
    [entry] = logged.entries()
    assert entry["message"] == "while working" and entry["level"] == "ERROR"
    assert str(entry["exc"]).startswith("Traceback (most recent call last):")
    assert "RuntimeError: it broke" in str(entry["exc"])
    assert "RuntimeError: it broke" in logged.text.getvalue()


def test_nothing_shaped_like_a_key_or_a_hash_gets_through_either_format(logged: Logged) -> None:
    logger = logged.logger
    key = generate_key()
    secrets = [key, hash_key(key), hash_key(key).upper(), key[:30]]
    logger.info("key %s hash %s HASH %s cut %s", *secrets)
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        logger.exception("for %s", hash_key(key))
    with logs.handling(key):  # a client may name its own request id
        logger.info("named")
    written = logged.json.getvalue() + logged.text.getvalue()
    for secret in secrets:
        assert secret not in written
    first = logged.entries()[0]
    assert first["message"] == "key [redacted] hash [redacted] HASH [redacted] cut [redacted]"
    assert logged.entries()[2]["request_id"] == "[redacted]"


def test_names_ids_and_shorter_hex_are_left_alone() -> None:
    """Bucket and metric names, key hints, ids and trace ids are no secrets."""
    kept = (
        "aitbc_keys_leases aitbc_dashboard_sessions aitbc_http_request_duration_seconds "
        "aitbc_AbCd key_0123456789abcdef acc_0123456789abcdef 4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert logs.redact(kept) == kept
    assert logs.redact("x" + "a" * 63 + "y") == "x" + "a" * 63 + "y"


def test_log_format_is_text_by_default_and_refuses_anything_else() -> None:
    assert logs.log_format({}) == "text"
    assert logs.log_format({"LOG_FORMAT": " JSON "}) == "json"
    assert isinstance(logs.formatter("svc", {"LOG_FORMAT": "json"}), logs.JsonFormatter)
    assert isinstance(logs.formatter("svc", {}), logs.TextFormatter)
    with pytest.raises(ValueError, match="LOG_FORMAT must be text or json"):
        logs.log_format({"LOG_FORMAT": "xml"})
    with pytest.raises(SystemExit, match="svc: LOG_FORMAT"):
        logs.configure("svc", "INFO", {"LOG_FORMAT": "xml"})


def test_configure_sends_every_line_of_the_process_to_stderr_in_the_format() -> None:
    """As a service's start does: its own loggers, uvicorn's (named plainly) and warnings."""
    program = (
        "import logging, warnings\n"
        "from aitbc_runtime import logs\n"
        "logs.configure('aitbc-test', 'INFO')\n"
        "logging.getLogger('uvicorn.error').info('Started server process')\n"
        "logging.getLogger('aitbc.test').debug('below the level')\n"
        "warnings.warn('a warning')\n"
    )
    env = {**os.environ, "LOG_FORMAT": "json"}
    run = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout == ""
    started, warned = [json.loads(line) for line in run.stderr.splitlines()]
    assert started["logger"] == "uvicorn" and started["service"] == "aitbc-test"
    assert warned["logger"] == "py.warnings" and "a warning" in str(warned["message"])
