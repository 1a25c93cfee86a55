"""How every process logs: LOG_FORMAT=text (the default: one readable line a record) or json
(one object a line, for a log pipeline), set up once at a process's start by `configure`.

A JSON line has `time` (ISO 8601, UTC), `level`, `service` (aitbc-api, aitbc-keys...),
`logger`, `message`, `request_id` (the request being handled: the edge's id for a request,
which its middleware puts in `REQUEST_ID`, or a keys command's; null outside one), `trace_id`
(OpenTelemetry's current span's, when there is one; else null) and, for a failure, `exc` (its
traceback). Work a request starts, such as a batch sent on the bus, logs under that request's
id: the contextvar goes with the tasks it creates.

Neither format lets through anything shaped like a secret: an API key (or most of one) and a
run of 64 hex digits (a key's SHA-256, a chain hash) are replaced wherever they appear in a
message or a traceback. That is a last defence: what is logged names no secret to begin with,
and the access log has the path without its query string.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import msgspec
from opentelemetry import trace

from aitbc_contracts.keyformat import PREFIX

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"

# The request this task is handling, for every line it logs meanwhile (None: none)
REQUEST_ID: ContextVar[str | None] = ContextVar("aitbc_request_id", default=None)

# A key is PREFIX and 49 base62 characters: 16 of them already make a guess too easy to log.
_KEY_SHAPE = re.compile(rf"{re.escape(PREFIX)}[0-9A-Za-z]{{16,}}")
# Hex runs of 64 and more are SHA-256 digests (a key's hash is as good as the key to a reader
# of the bus). Two patterns, each tried only where it may match: an alternation of both costs
# a record of the access log three times as much.
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{64,}")
_HEX_RUN_LENGTH = 64


def redact(text: str) -> str:
    """`text` with anything shaped like an API key or a SHA-256 in hex replaced."""
    if PREFIX in text:
        text = _KEY_SHAPE.sub(REDACTED, text)
    if len(text) >= _HEX_RUN_LENGTH:
        text = _HEX_RUN.sub(REDACTED, text)
    return text


def log_format(env: Mapping[str, str] = os.environ) -> str:
    """LOG_FORMAT: text or json [text]."""
    value = (env.get("LOG_FORMAT") or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be text or json, not {value!r}")
    return value


@contextmanager
def handling(request_id: str) -> Iterator[None]:
    """Lines logged inside name `request_id` (a keys command's, carried in the command)."""
    token = REQUEST_ID.set(request_id or None)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


@lru_cache(maxsize=4)
def _second(seconds: int, utc: bool) -> str:
    """A second in ISO 8601 (UTC) or as logging writes it (local time): records come many a
    second, and each second is written once (time.strftime costs a record as much as the rest
    of its formatting)."""
    if utc:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _utc(created: float) -> str:
    """A record's time as ISO 8601 in UTC, to the millisecond: 2025-01-31T12:00:00.123Z."""
    seconds = int(created)
    return f"{_second(seconds, True)}.{int((created - seconds) * 1000):03d}Z"


def _trace_id() -> str | None:
    """The current span's trace id in W3C's 32 hex digits, when a trace is under way."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class TextFormatter(logging.Formatter):
    """The readable format (time, level, logger, message), redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's own time format (local time, milliseconds after a comma), faster."""
        return f"{_second(int(record.created), False)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a record, on one line (msgspec escapes the newlines of a traceback)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        request_id = REQUEST_ID.get()  # a client may choose its own: redacted like the rest
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": request_id and redact(request_id),
            "trace_id": _trace_id(),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        failure = "\n".join(filter(None, (record.exc_text, record.stack_info)))
        if failure:
            entry["exc"] = redact(failure)
        return msgspec.json.encode(entry).decode()


class _UvicornNames(logging.Filter):
    """uvicorn logs its server's news (started, stopping) as `uvicorn.error`, a name kept from
    gunicorn: shown as `uvicorn`, so that no line reads as an error that is none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
        return True


def formatter(service: str, env: Mapping[str, str] = os.environ) -> logging.Formatter:
    """The formatter LOG_FORMAT asks for."""
    return JsonFormatter(service) if log_format(env) == "json" else TextFormatter()


def configure(service: str, level: str | int, env: Mapping[str, str] = os.environ) -> None:
    """Every record of this process, to stderr, in the format LOG_FORMAT names; Python's
    warnings go the same way. A LOG_FORMAT that is neither stops the process, saying so.
    Servers on uvicorn pass it `log_config=None`, so that its loggers end here too."""
    try:
        chosen = formatter(service, env)
    except ValueError as exc:
        raise SystemExit(f"{service}: {exc}") from None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(chosen)
    handler.addFilter(_UvicornNames())
    # Neither format names a record's file, line, thread or process: the logging HOWTO's
    # "Optimization" section turns their collection off. Finding the caller's frame alone was
    # a tenth of the edge's CPU under load (its access log line: bench/results/ANALYSIS.md).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
