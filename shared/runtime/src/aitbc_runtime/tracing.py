"""Traces with OpenTelemetry, configured from the standard `OTEL_*` variables, off by default.

Each service process calls `configured(its name)` around its whole run (`run_service`, the
edge's main): it reads the environment once and, when an exporter is named, installs a tracer
provider and turns `enabled` on; at the end it flushes what is left. The request paths test
`tracing.enabled` (a module attribute: read it as `tracing.enabled`, never import the name,
or the value at import time is what you get) before any tracing work, so with tracing off a
request costs one flag check and nothing else.

- `OTEL_TRACES_EXPORTER`: `otlp` (OTLP/HTTP protobuf to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
  else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else localhost:4318), `console` (one JSON
  object per span on stdout), `none`; a comma-separated list for more than one. Unset: `otlp`
  when an OTLP endpoint is set, else nothing (the specification's default is `otlp`; here a
  process traces only when told where to).
- `OTEL_SERVICE_NAME` (default: the process's own, `aitbc-api`, `aitbc-keys`, `aitbc-usage`),
  `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default
  `parentbased_always_on`), the `OTEL_BSP_*` batch settings and the exporter's own
  `OTEL_EXPORTER_OTLP_*` are the SDK's to read. `OTEL_SDK_DISABLED=true`: no traces at all.

Context crosses processes in W3C `traceparent` headers (the TraceContext propagator alone: no
baggage): in NATS message headers (`headers()` on the sender, `serving()` on the receiver)
and in the HTTP request the edge forwards to the Coordinator. Spans carry no secret: no key,
no hash of one, no account id, no query string; an exception marks its span failed by its
type alone, since its message may quote what a client sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

log = logging.getLogger("aitbc.tracing")

enabled = False  # the hot path's one test: nothing else of tracing runs while it is False
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_EXPORTERS = ("otlp", "console", "none")
_OUTSIDE = nullcontext()  # within(None): no span to make current (reusable: it keeps no state)


def exporter_names(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the environment names: [] for none (unset and no OTLP endpoint, `none`,
    or the SDK disabled). An unknown name is refused, so that a typo does not pass silently."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not named:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip() for name in named.split(",") if name.strip()]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}: use otlp, console or none"
        )
    return [] if "none" in names else names


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only when used: it brings the protobuf messages and an HTTP client with it.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and TLS from OTEL_EXPORTER_OTLP_*


def _resource(service_name: str) -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, with the process's name when neither
    names the service (the SDK would call it `unknown_service`)."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return resource


def configure(service_name: str, env: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """Tracing as the environment says: the installed provider, or None (tracing stays off)."""
    names = exporter_names(env)
    if not names:
        return None
    provider = TracerProvider(resource=_resource(service_name))  # the sampler: OTEL_TRACES_*
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    install(provider)
    log.info("traces of %s go to %s (sampler %s)", service_name, ",".join(names), provider.sampler)
    return provider


def install(provider: TracerProvider) -> None:
    """Traces from now on go to `provider` (tests give one with an in-memory exporter). It is
    this module's, not OpenTelemetry's global one, which can be set only once a process."""
    global enabled, _tracer, _provider
    _provider, _tracer = provider, provider.get_tracer("aitbc")
    enabled = True


def shutdown() -> None:
    """Tracing off, and what the provider still holds exported (a stop's last flush)."""
    global enabled, _tracer, _provider
    provider, _provider = _provider, None
    enabled, _tracer = False, trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


@contextmanager
def configured(service_name: str) -> Iterator[None]:
    """A service process's whole run, traced as the environment says; flushed at its end."""
    configure(service_name)
    try:
        yield
    finally:
        shutdown()


def start(
    name: str,
    kind: SpanKind,
    parent: Context | None = None,
    links: Iterable[Link] = (),
    attributes: Mapping[str, str | int] | None = None,
) -> Span:
    """A span, started (not made current): a child of `parent`, else of the current span."""
    return _tracer.start_span(
        name,
        parent,
        kind,
        attributes,
        list(links),
        record_exception=False,
        set_status_on_exception=False,
    )


@contextmanager
def active(span: Span) -> Iterator[Span]:
    """`span` current within the block and ended after it. An exception marks it failed by
    the exception's type alone: its message may quote what a client sent."""
    try:
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            yield span
    except Exception as exc:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def within(span: Span | None) -> AbstractContextManager[object]:
    """`span` current within the block (not ended after it); None: nothing at all."""
    if span is None:
        return _OUTSIDE
    return trace.use_span(span, record_exception=False, set_status_on_exception=False)


def current() -> SpanContext:
    """The current span's context (invalid outside any span)."""
    return trace.get_current_span().get_span_context()


def note(name: str, value: str | int) -> None:
    """An attribute of the current span (a bounded value: never an id, a key or a hash)."""
    trace.get_current_span().set_attribute(name, value)


def headers() -> dict[str, str]:
    """The current span's context as W3C trace context headers, for a message or a request."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The context `carrier`'s `traceparent` names, or None (absent or malformed)."""
    if not carrier or "traceparent" not in carrier:
        return None
    context = _propagator.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def serving(subject: str, carrier: Mapping[str, str] | None) -> Span:
    """The span of a request taken off the bus: a child of the sender's (from the message's
    headers), or a root when it sent none. Named by its subject, as OpenTelemetry's messaging
    conventions say (every subject of ours is a bounded name)."""
    parent = extract(carrier) or Context()
    return start(f"process {subject}", SpanKind.SERVER, parent, (), {"messaging.system": "nats"})


def batch(name: str, members: list[SpanContext]) -> Span:
    """The span of a message that carries the requests of `members` (their spans' contexts).
    One request: the batch is its child, so that request's trace goes on across processes.
    More: a root of its own, linked to each request's span (a span has one parent; the
    links say which requests it served). Not made current."""
    valid = [member for member in members if member.is_valid]
    attributes: dict[str, str | int] = {
        "messaging.system": "nats",
        "messaging.batch.message_count": len(members),
    }
    if len(members) == 1:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0])) if valid else None
        return start(f"{name} batch", SpanKind.CLIENT, parent or Context(), (), attributes)
    links = (Link(member) for member in valid)
    return start(f"{name} batch", SpanKind.CLIENT, Context(), links, attributes)
