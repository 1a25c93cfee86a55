"""Which requests the edge forwards in front of its framework: exactly those its router would
send to the forwarded route (aitbc_api.proxy.forwarder)."""

from __future__ import annotations

import pytest

from aitbc_api.proxy.forwarder import Forwarder
from aitbc_gate.requests import RequestLayer
from tests.unit.edge_apps import without_bus

FORWARDED = "/v1/{path}"


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/v1/jobs", FORWARDED),
        ("POST", "/v1/jobs/42/cancel", FORWARDED),
        ("GET", "/v1/health", FORWARDED),
        ("GET", "/v1/usage/daily", FORWARDED),  # under a leaf route of the edge's: forwarded
        ("GET", "/v1/api-keys", None),  # the edge's own routes
        ("GET", "/v1/api-keys/key_0123456789abcdef", None),
        ("GET", "/v1/api-keys/../../etc", None),  # %2F decoded: still under the keys' route
        ("GET", "/v1//api-keys/x", None),  # the router's reading of a doubled slash
        ("POST", "/v1/accounts", None),
        ("GET", "/v1/usage", None),
        ("TRACE", "/v1/jobs", None),  # no such method: the framework answers 405
        ("GET", "/v1/", None),  # no route: the framework answers 404
        ("GET", "/dashboard/", None),
        ("GET", "/schema/openapi.json", None),
    ],
)
def test_a_request_is_forwarded_in_front_of_the_framework_when_the_router_would(
    method: str, path: str, template: str | None
) -> None:
    app = without_bus()
    layer = app.asgi_handler
    assert isinstance(layer, RequestLayer) and isinstance(layer.app, Forwarder)
    scope = {"type": "http", "method": method, "path": path}
    assert layer.app._template(scope) == template
    assert layer.app._template(scope) == template  # and the same once remembered
