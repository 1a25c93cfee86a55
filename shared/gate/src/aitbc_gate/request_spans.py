"""The edge's server span of each request, with tracing on (the middleware tests the flag).

A span is named by the request's route template (`GET /v1/{path}`), never by its path:
paths hold ids, and the query string may hold an `api_key`. Its attributes are the method, the
route template, the status and the request id, nothing a client's key or account could be
read from.

A client's own `traceparent` is not continued: on a public endpoint it would let any client
choose the trace our spans join, and, under the parent-based sampler, whether we record it at
all. The request's span is a root of its own, *linked* to the client's context when it sent a
well-formed one, so the two traces can still be found from each other. Neither the client's
`traceparent` nor its `tracestate` goes upstream (aitbc_api.proxy.forward drops both and sends
the edge's own).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace import get_current_span as span_of

from aitbc_runtime import tracing

TRACEPARENT = b"traceparent"


class RequestSpan:
    """A request's span, current from its start to its end (one task: the ASGI call)."""

    __slots__ = ("method", "span", "token")

    def __init__(self, method: str, scheme: str, request_id: str, client: Link | None) -> None:
        self.method = method  # one of a few known words (aitbc_gate.requests)
        self.span: Span = tracing.start(
            method,  # renamed by its route template once routing has found it
            SpanKind.SERVER,
            Context(),  # a root, whatever the client sent (see above)
            (client,) if client is not None else (),
            {"http.request.method": method, "url.scheme": scheme, "aitbc.request_id": request_id},
        )
        self.token = attach(set_span_in_context(self.span))

    def end(self, route: str | None, status: int) -> None:
        detach(self.token)
        span = self.span
        if route:
            span.update_name(f"{self.method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def client_link(headers: Iterable[tuple[bytes, bytes]]) -> Link | None:
    """A link to the context of the client's `traceparent` (its first; None when absent or
    malformed)."""
    for name, value in headers:
        if name == TRACEPARENT:
            context = tracing.extract({"traceparent": value.decode("latin-1")})
            return None if context is None else Link(span_of(context).get_span_context())
    return None
