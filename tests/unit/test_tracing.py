"""Tracing's settings (the standard OTEL_* variables), the edge's request spans and batch spans,
and that with tracing off nothing of it runs: no span, no trace context in any header."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from aitbc_api.settings import Settings
from aitbc_gate.batching import Batcher
from aitbc_runtime import tracing
from tests.traces import Recorded, is_child, recording, traceparent
from tests.unit.edge_apps import without_bus

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def traces() -> Iterator[Recorded]:
    with recording() as recorded:
        yield recorded


@pytest.fixture
def off(traces: Recorded) -> Iterator[Recorded]:
    """Tracing off, with a tracer that would record any span made all the same: what it finds
    was made past the flag."""
    tracing.enabled = False
    yield traces


def test_nothing_is_exported_unless_an_exporter_is_named() -> None:
    names = tracing.exporter_names
    assert names({}) == []
    assert names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == ["otlp"]
    assert names({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert names({"OTEL_TRACES_EXPORTER": " OTLP , console"}) == ["otlp", "console"]
    assert names({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}) == []
    assert names({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) == []
    with pytest.raises(ValueError, match="jaeger"):
        names({"OTEL_TRACES_EXPORTER": "jaeger"})


def test_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with tracing.configured("aitbc-keys"):
        provider = tracing._provider
        assert tracing.enabled and provider is not None
        assert provider.resource.attributes[SERVICE_NAME] == "aitbc-keys"
        assert provider.sampler is ALWAYS_OFF  # the SDK read OTEL_TRACES_SAMPLER
    assert not tracing.enabled and tracing._provider is None
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-eu-1")
    with tracing.configured("aitbc-api"):
        assert tracing._provider is not None
        assert tracing._provider.resource.attributes[SERVICE_NAME] == "edge-eu-1"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    with tracing.configured("aitbc-api"):
        assert not tracing.enabled


def test_unconfigured_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure("aitbc-usage") is None
    assert not tracing.enabled


def edge_without_bus() -> TestClient:  # type: ignore[type-arg]
    app = without_bus(Settings())
    return TestClient(app)  # not entered: no lifespan, so no NATS


def test_a_request_span_is_named_by_its_route_and_holds_no_query(traces: Recorded) -> None:
    headers = {"traceparent": CLIENT_TRACEPARENT, "x-request-id": "req-1"}
    answer = edge_without_bus().get("/schema/openapi.json?api_key=aitbc_secret", headers=headers)
    assert answer.status_code == 200
    span = traces.one("GET /schema/openapi.json")
    assert span.kind is SpanKind.SERVER and span.context is not None
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/schema/openapi.json",
        "http.response.status_code": 200,
        "url.scheme": "http",
        "aitbc.request_id": "req-1",
    }
    # The client's trace is linked, not continued: a root of the edge's own.
    assert span.parent is None and span.context.trace_id != int(CLIENT_TRACE, 16)
    assert [link.context.trace_id for link in span.links] == [int(CLIENT_TRACE, 16)]


def test_a_malformed_client_traceparent_is_no_link(traces: Recorded) -> None:
    edge_without_bus().get("/schema", headers={"traceparent": "00-nonsense-01"})
    assert traces.one("GET /schema").links == ()


class Bus:
    """Batches' round trips, answered at once; each records the trace context it would send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str] | None] = []

    async def send(self, lane: int, items: list[int]) -> list[int]:
        self.sent.append(tracing.headers() if tracing.enabled else None)
        return items


async def requests(batcher: Batcher[int, int], count: int) -> None:
    """`count` requests in one turn, each within a server span of its own (tracing on)."""

    async def one(item: int) -> None:
        if not tracing.enabled:
            await batcher.submit(0, item)
            return
        with tracing.active(tracing.start(f"request {item}", SpanKind.SERVER)):
            await batcher.submit(0, item)

    await asyncio.gather(*(one(item) for item in range(count)))


async def test_a_lone_request_s_batch_is_its_child(traces: Recorded) -> None:
    bus = Bus()
    await requests(Batcher(bus.send, 1, RuntimeError, name="checks"), 1)
    batch, request = traces.one("checks batch"), traces.one("request 0")
    assert is_child(batch, request) and batch.kind is SpanKind.CLIENT
    assert bus.sent == [{"traceparent": traceparent(batch)}]


async def test_a_batch_of_many_requests_is_linked_to_each(traces: Recorded) -> None:
    bus = Bus()
    await requests(Batcher(bus.send, 1, RuntimeError, name="checks"), 3)
    batch = traces.one("checks batch")
    assert batch.parent is None and batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    linked = {link.context.span_id for link in batch.links}
    requests_ = {span.context.span_id for span in traces.spans() if span.name.startswith("req")}
    assert linked == requests_ and len(linked) == 3


async def test_with_tracing_off_no_span_is_made_and_no_header_sent(off: Recorded) -> None:
    bus = Bus()
    await requests(Batcher(bus.send, 1, RuntimeError, name="checks"), 3)
    await requests(Batcher(bus.send, 1, RuntimeError, name="checks"), 1)
    answer = edge_without_bus().get("/schema", headers={"traceparent": CLIENT_TRACEPARENT})
    assert answer.status_code == 200
    assert bus.sent == [None, None]
    assert off.spans() == []
