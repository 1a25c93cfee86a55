"""API_WORKERS > 1: that many edge processes on one listening socket, under uvicorn's own
supervisor (it starts them, restarts one that dies, and stops them all on SIGINT/SIGTERM).

Each worker is an edge of its own, as separate edges already are: its own NATS connection,
auth cache, leases and usage batches, so limits stay exact through the usage service; its own
slot of the usage spool (aitbc_gate.usage_spool); its own presence on the bus (a fail-open
share counts workers as edges); MAX_CONNECTIONS per worker. Their metrics are summed by
prometheus_client's multiprocess mode, served by whichever worker holds API_METRICS_PORT
(aitbc_runtime.metrics)."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar

from aitbc_api.app import create_app
from aitbc_api.connections import guarded_protocol
from aitbc_api.settings import Settings, get_settings
from aitbc_runtime import logs, tracing
from aitbc_runtime.summed import MULTIPROCESS_DIR

# How long the supervisor waits for a worker to answer its health check before it kills it as
# hung and starts another. uvicorn's 5 s also covers a new worker's start (a fresh interpreter
# importing the app), which a busy machine makes longer: workers were killed while starting.
HEALTHCHECK_SECONDS = 30


def serve_workers(settings: Settings, options: dict[str, Any]) -> None:
    """The supervisor: uvicorn spawns the workers, each of which makes its app (worker_app)
    from the same environment; `options` are the single process's uvicorn options."""
    made = ""
    if settings.metrics_port and not os.environ.get(MULTIPROCESS_DIR):
        made = os.environ[MULTIPROCESS_DIR] = _fresh_metrics_folder()
    try:
        uvicorn.run(
            "aitbc_api.workers:worker_app",
            factory=True,
            workers=settings.workers,
            http="aitbc_api.workers:EdgeHttpProtocol",
            timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
            **options,
        )
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


def _fresh_metrics_folder() -> str:
    """Where the workers' metric files go: emptied at each start, since counts from an earlier
    run's processes are not this run's (prometheus_client's multiprocess rule)."""
    folder = Path(tempfile.gettempdir()) / f"aitbc-api-metrics-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    return str(folder)


def worker_app() -> Litestar:
    """One worker's app, made in the worker (uvicorn's factory)."""
    settings = get_settings()
    logs.configure("aitbc-api", settings.log_level)
    tracing.configure("aitbc-api")  # its provider flushes at the worker's exit
    app = create_app(settings)
    gc.freeze()  # as the single process does (aitbc_api.main)
    return app


def __getattr__(name: str) -> Any:
    """`EdgeHttpProtocol`: the guarded protocol with this environment's limits, which uvicorn
    imports by name in each worker (a class made at run time cannot be sent to one)."""
    if name == "EdgeHttpProtocol":
        settings = get_settings()
        return guarded_protocol(
            settings.header_timeout, settings.max_header_bytes, settings.max_connections
        )
    raise AttributeError(name)
