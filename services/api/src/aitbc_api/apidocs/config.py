"""The OpenAPI document's settings: its title, the two ways to present a key, and the page."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, Reference, SecurityScheme

from aitbc_api.apidocs.headers import header_components
from aitbc_api.apidocs.page import DOCS_PATH, LocalSwaggerUI
from aitbc_gate.auth import API_KEY_QUERY

DESCRIPTION = """\
API keys, per-plan rate limits and usage in front of the Coordinator.

Every other `/v1/...` path is forwarded to the Coordinator with the caller's key checked and
counted (`/v1/health` without a key). Each request counted against a limit, forwarded or not,
answers with the rate-limit headers documented on the routes below (`X-RateLimit-*`,
`RateLimit`, `RateLimit-Policy`), and a refusal with 429 and `Retry-After`. A key goes in
the `X-API-Key` header or the `api_key` query parameter; two different keys at once are
refused (400 `CONFLICTING_API_KEYS`)."""


def openapi_config(query_key: bool = True) -> OpenAPIConfig:
    """`query_key`: whether a key may come in the query (API_KEY_IN_QUERY)."""
    schemes: dict[str, SecurityScheme | Reference] = {
        "ApiKeyHeader": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header")
    }
    if query_key:
        schemes["ApiKeyQuery"] = SecurityScheme(
            type="apiKey", name=API_KEY_QUERY, security_scheme_in="query"
        )
    return OpenAPIConfig(
        title="AITBC Coordinator API (edge)",
        version="1.0.0",
        description=DESCRIPTION,
        components=Components(security_schemes=schemes, headers=header_components()),
        security=[{name: []} for name in schemes],
        path=DOCS_PATH,
        render_plugins=[
            LocalSwaggerUI(),
            JsonRenderPlugin(),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
        ],
    )
