"""`aitbc-api`: serve the edge with uvicorn on uvloop and httptools."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn
from litestar import Litestar

from aitbc_api.app import create_app
from aitbc_api.connections import guarded_protocol
from aitbc_api.settings import Settings, get_settings
from aitbc_api.workers import serve_workers
from aitbc_runtime import logs, tracing


def run() -> None:
    settings = get_settings()
    logs.configure("aitbc-api", settings.log_level)
    if settings.workers > 1:  # uvicorn's supervisor; each worker makes its own app
        serve_workers(settings, uvicorn_options(settings))
        return
    app = create_app(settings)
    # Modules and the app live as long as the process: kept out of the collector's full
    # collections, which would otherwise walk them all, a pause of tens of ms in the p99.
    gc.freeze()
    with tracing.configured("aitbc-api"):  # as OTEL_* say; the last spans flushed at the stop
        _serve(app, settings)


def _serve(app: Litestar, settings: Settings) -> None:
    uvicorn.run(
        app,
        # httptools, with a deadline and a size cap for request heads and a connection cap
        http=guarded_protocol(
            settings.header_timeout, settings.max_header_bytes, settings.max_connections
        ),
        **uvicorn_options(settings),
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the edge, one process or several (aitbc_api.workers)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "access_log": False,  # uvicorn's would print query strings, which may carry a key
        # Off: uvicorn would believe X-Forwarded-* from 127.0.0.1 (or FORWARDED_ALLOW_IPS),
        # so any local process could name any client. TRUSTED_PROXIES decides, in the edge
        # middleware (aitbc_gate.proxies).
        "proxy_headers": False,
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's lines in this process's format (aitbc_runtime.logs)
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "ssl_certfile": settings.tls_cert_file or None,
        "ssl_keyfile": settings.tls_key_file or None,
    }
