"""create_app(): the Litestar edge, assembled from its contexts: the request pipeline (the gate,
aitbc_gate, behind the HTTP connections' limits: aitbc_api.connections), the owners' routes
(aitbc_api.owners), forwarding (aitbc_api.proxy, in front of the router), the dashboard
(aitbc_api.dashboard, a plugin) and the documentation (aitbc_api.apidocs). Its lifespan
(aitbc_api.lifespan) connects NATS and starts the running parts, and the operators' listener
(/metrics) on a port of its own."""

from __future__ import annotations

from litestar import Litestar

from aitbc_api.apidocs.config import openapi_config
from aitbc_api.apidocs.headers import declare_rate_limit_headers
from aitbc_api.dashboard import Dashboard
from aitbc_api.errors import exception_handlers
from aitbc_api.lifespan import edge_lifespan
from aitbc_api.owners.account_settings import AccountController
from aitbc_api.owners.accounts import sign_up
from aitbc_api.owners.api_keys import ApiKeysController
from aitbc_api.owners.dependencies import owner_dependencies
from aitbc_api.owners.usage import usage
from aitbc_api.proxy.forward import forwarded_route
from aitbc_api.proxy.forwarder import Forwarder
from aitbc_api.settings import Settings, get_settings
from aitbc_api.types import EdgeRequest
from aitbc_gate.core import GateSlot
from aitbc_gate.proxies import TrustedProxies
from aitbc_gate.requests import RequestLayer


def create_app(settings: Settings | None = None, slot: GateSlot | None = None) -> Litestar:
    """`slot`: where the request layer finds the gate; the lifespan starts one there."""
    settings = settings or get_settings()
    slot = slot or GateSlot()
    app = Litestar(
        route_handlers=[sign_up, AccountController, ApiKeysController, usage, forwarded_route],
        dependencies=owner_dependencies(),
        lifespan=[edge_lifespan(settings, slot)],
        plugins=[Dashboard(settings)],
        exception_handlers=exception_handlers,
        request_class=EdgeRequest,
        openapi_config=openapi_config(query_key=settings.api_key_in_query),
        request_max_body_size=settings.max_body_bytes,
        # main.py configures logging; Litestar's default would put a queue thread behind it.
        logging_config=None,
    )
    declare_rate_limit_headers(app.openapi_schema)
    # Every request passes the request layer once, then the forwarded routes (straight to the
    # Coordinator) or the framework's router with its exception handlers (everything else).
    app.asgi_handler = RequestLayer(
        Forwarder(app.asgi_handler, app),
        slot,
        require_https=settings.require_https,
        body_timeout=settings.body_timeout,
        proxies=TrustedProxies.of(settings.trusted_proxies, settings.trusted_proxy_headers),
        hsts_max_age=settings.hsts_max_age,
    )
    return app
