"""Spans as the tests read them: the SDK's in-memory exporter behind aitbc_runtime.tracing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from aitbc_runtime import tracing


class Recorded:
    """Every span ended while tracing records, in the order they ended."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def starting(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return [span.name for span in self.spans()]

    def clear(self) -> None:
        self.exporter.clear()


def is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    """`span` is `parent`'s child: the same trace, and `parent`'s span id as its parent's."""
    assert span.context is not None and parent.context is not None
    return (
        span.parent is not None
        and span.context.trace_id == parent.context.trace_id
        and span.parent.span_id == parent.context.span_id
    )


def traceparent(span: ReadableSpan) -> str:
    """The W3C `traceparent` that names `span`."""
    context = span.context
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@contextmanager
def recording() -> Iterator[Recorded]:
    """Tracing on, every span sampled and kept in memory; off again at the end."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield Recorded(exporter)
    finally:
        tracing.shutdown()
