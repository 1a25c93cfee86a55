"""The documentation page at /schema, whole without a network: Swagger UI, its script, style and
icon served by this process from the files the swagger-ui-py package ships.

Litestar's default page loads Redoc, its fonts and its icon from CDNs: offline, or behind a
firewall, it stays blank. Swagger UI reads OpenAPI 3.1 (Litestar's documents) and lets a
reader try a route with a key.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import File
from swagger_ui.utils import SWAGGER_UI_PY_ROOT

DOCS_PATH = "/schema"
ASSETS = "/assets"  # under DOCS_PATH
_SHIPPED = Path(SWAGGER_UI_PY_ROOT) / "static"
_SERVED = {  # the only files of the package's folder that the page uses
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


@get(f"{ASSETS}/{{name:str}}", sync_to_thread=False, include_in_schema=False)
def asset(name: str) -> File:
    media_type = _SERVED.get(name)
    if media_type is None:
        raise NotFoundException()
    return File(
        _SHIPPED / name,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )


class LocalSwaggerUI(SwaggerRenderPlugin):
    """Swagger UI at /schema (and /schema/swagger), with every asset served from here."""

    def __init__(self) -> None:
        local = f"{DOCS_PATH}{ASSETS}"
        super().__init__(
            js_url=f"{local}/swagger-ui-bundle.js",
            css_url=f"{local}/swagger-ui.css",
            standalone_preset_js_url=f"{local}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{local}/favicon-32x32.png'>",
            path=["/", "/swagger"],
        )

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(asset)
