"""The operators' /metrics listener: what it answers, and that it answers nothing else."""

from __future__ import annotations

import asyncio

import pytest

from aitbc_infra.nats_server import free_port
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_runtime.bus import RECONNECTS
from aitbc_runtime.metrics import MAX_HEAD, listener_address, metrics_listener
from aitbc_usage.settings import Settings as UsageSettings


async def ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_it_serves_metrics_and_refuses_everything_else() -> None:
    port = free_port()
    RECONNECTS.labels("listener-test").inc(7)
    async with metrics_listener("127.0.0.1", port):
        ok = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b'\naitbc_nats_reconnects_total{connection="listener-test"} 7.0\n' in ok
        head = await ask(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        other = await ask(port, b"GET /v1/health HTTP/1.1\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 404") and b'"code":"NOT_FOUND"' in other
        posted = await ask(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert posted.startswith(b"HTTP/1.1 405") and b"METHOD_NOT_ALLOWED" in posted
        endless = await ask(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_HEAD * 2)
        assert endless == b""  # an oversized head is cut off unanswered
    refused = False
    try:
        await ask(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    except OSError:
        refused = True
    assert refused, "the listener stops with its context"


async def test_port_zero_means_no_listener() -> None:
    async with metrics_listener("127.0.0.1", 0):
        pass


def test_the_keys_and_usage_services_take_their_listener_from_their_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYS_METRICS_PORT", "9102")
    monkeypatch.setenv("USAGE_METRICS_HOST", "10.0.0.5")
    monkeypatch.setenv("USAGE_METRICS_PORT", "9103")
    keys, usage = KeysSettings.from_env(), UsageSettings.from_env()
    assert (keys.metrics_host, keys.metrics_port) == ("127.0.0.1", 9102)
    assert (usage.metrics_host, usage.metrics_port) == ("10.0.0.5", 9103)
    assert listener_address({}, "KEYS") == ("127.0.0.1", 0)  # unset: no listener
    for bad in ("-1", "70000", "http", "9²"):  # ² is a digit, not a decimal: int() refuses it
        with pytest.raises(ValueError, match="KEYS_METRICS_PORT must be a port number"):
            listener_address({"KEYS_METRICS_PORT": bad}, "KEYS")
