"""create_app(): the Litestar edge, assembled from its contexts: the request pipeline (the gate,
aitbc_gate, behind the HTTP connections' limits: aitbc_api.connections), the owners' routes
(aitbc_api.owners), forwarding (aitbc_api.proxy), the dashboard (aitbc_api.dashboard, a
plugin) and the documentation (aitbc_api.apidocs). Its lifespan (aitbc_api.lifespan) connects
NATS and starts the running parts, and the operators' listener (/metrics) on a port of its own."""

from __future__ import annotations

from litestar import Litestar
from litestar.middleware import DefineMiddleware

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
from aitbc_api.proxy.forward import forward
from aitbc_api.settings import Settings, get_settings
from aitbc_gate.core import GateSlot
from aitbc_gate.proxies import TrustedProxies
from aitbc_gate.requests import RequestLayer


def create_app(settings: Settings | None = None, slot: GateSlot | None = None) -> Litestar:
    """`slot`: where the request layer finds the gate; the lifespan starts one there."""
    settings = settings or get_settings()
    slot = slot or GateSlot()
    app = Litestar(
        route_handlers=[sign_up, AccountController, ApiKeysController, usage, forward],
        dependencies=owner_dependencies(),
        lifespan=[edge_lifespan(settings, slot)],
        plugins=[Dashboard(settings)],
        exception_handlers=exception_handlers,
        middleware=[
            DefineMiddleware(
                RequestLayer,
                slot=slot,
                require_https=settings.require_https,
                body_timeout=settings.body_timeout,
                proxies=TrustedProxies.of(settings.trusted_proxies, settings.trusted_proxy_headers),
                hsts_max_age=settings.hsts_max_age,
            )
        ],
        openapi_config=openapi_config(query_key=settings.api_key_in_query),
        request_max_body_size=settings.max_body_bytes,
        # main.py configures logging; Litestar's default would put a queue thread behind it.
        logging_config=None,
    )
    declare_rate_limit_headers(app.openapi_schema)
    return app
