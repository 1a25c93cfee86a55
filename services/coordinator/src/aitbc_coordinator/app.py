"""SAMPLE Coordinator: an in-memory stand-in for the AITBC Coordinator's /v1/jobs API.

Not the real Coordinator. It exists so that `just up`, the tests and the benchmarks have an
upstream to forward to. Jobs live in memory, are scoped by the `X-Account-Id` header the edge
adds, and complete (deterministically) the first time they are fetched by id (the job or its
results), with a result that echoes their input. A queued job can be cancelled; a completed
one cannot (409 CONFLICT).

It believes `X-Account-Id` only with the edge's signature (aitbc_contracts.identity): a job
route without one, with a forged one or a stale one answers 401 INVALID_IDENTITY. The secret it
shares with the edge is the file UPSTREAM_IDENTITY_SECRET_FILE (mode 0600; `just up` makes it):
without it the Coordinator does not start.

With COORDINATOR_GATE=1 it runs the gate in process (aitbc_gate.GateMiddleware): a request
straight to its port needs an API key, and is counted and answered as at the edge; the caller's
account comes from the gate, no header names it. A request the edge forwards (its identity
signed) is not checked or counted a second time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from aitbc_contracts.identity import (
    IDENTITY_HEADER,
    KEY_HEADER,
    MAX_AGE,
    REQUEST_ID_HEADER,
    UpstreamIdentity,
)
from aitbc_contracts.messages import Code
from aitbc_coordinator.jobs import (
    Job,
    JobNotFoundError,
    JobResult,
    JobStateError,
    JobStore,
    NewJob,
    Status,
)
from aitbc_gate.middleware import caller_of
from aitbc_runtime import environment, logs
from aitbc_runtime.bus_access import read_secret_file

ACCOUNT_HEADER = "X-Account-Id"
EDGE_SIGNED = "aitbc_edge_signed"  # the request state's key: an account verified once already
MAX_ACCOUNT_ID_LENGTH = 128


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


class Health(msgspec.Struct, frozen=True):
    status: str


class JobPage(msgspec.Struct, frozen=True):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class CoordinatorError(Exception):
    """An error with a stable code, answered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> Response[ErrorBody]:
    return Response(ErrorBody(ErrorDetail(code, message)), status_code=status)


def account_of(request: Request[Any, Any, Any]) -> str:
    """The account the gate in process admitted, or the one the edge signed for; every job
    route is scoped by it."""
    caller = caller_of(request.scope)
    if caller is not None:
        return caller.account_id
    verified: str | None = request.scope.get("state", {}).get(EDGE_SIGNED)
    return verified or signed_account(request.app.state, request.headers)


def signed_account(state: Any, headers: Mapping[str, str]) -> str:
    """The account the edge signed for in `headers`, or CoordinatorError."""
    account = headers.get(ACCOUNT_HEADER, "").strip()
    if not account:
        raise CoordinatorError(401, "MISSING_ACCOUNT", f"the {ACCOUNT_HEADER} header is required")
    if len(account) > MAX_ACCOUNT_ID_LENGTH or not account.isascii() or not account.isprintable():
        raise CoordinatorError(400, "VALIDATION_ERROR", f"the {ACCOUNT_HEADER} header is malformed")
    refusal = state.identity.refusal(
        account,
        headers.get(KEY_HEADER, ""),
        headers.get(REQUEST_ID_HEADER, ""),
        headers.get(IDENTITY_HEADER),
        state.clock(),
        state.identity_max_age,
    )
    if refusal:
        raise CoordinatorError(401, Code.INVALID_IDENTITY, refusal)
    return account


def store_of(request: Request[Any, Any, Any]) -> JobStore:
    store: JobStore = request.app.state.store
    return store


@get("/v1/health", sync_to_thread=False)
def health() -> Health:
    return Health(status="ok")


@post("/v1/jobs", sync_to_thread=False)
def create_job(request: Request[Any, Any, Any], data: NewJob) -> Job:
    return store_of(request).create(account_of(request), data)


@get("/v1/jobs", sync_to_thread=False)
def list_jobs(
    request: Request[Any, Any, Any],
    status: Status | None = None,
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> JobPage:
    jobs, total = store_of(request).list(account_of(request), status, limit, offset)
    return JobPage(jobs=jobs, total=total, limit=limit, offset=offset)


@get("/v1/jobs/{job_id:str}", sync_to_thread=False)
def get_job(request: Request[Any, Any, Any], job_id: str) -> Job:
    return store_of(request).get(account_of(request), job_id)


@delete("/v1/jobs/{job_id:str}", status_code=200, sync_to_thread=False)
def cancel_job(request: Request[Any, Any, Any], job_id: str) -> Job:
    return store_of(request).cancel(account_of(request), job_id)


@get("/v1/jobs/{job_id:str}/results", sync_to_thread=False)
def job_results(request: Request[Any, Any, Any], job_id: str) -> JobResult:
    return store_of(request).result(account_of(request), job_id)


def _coordinator_error(_: Request[Any, Any, Any], exc: CoordinatorError) -> Response[ErrorBody]:
    return error_response(exc.status, exc.code, exc.message)


def _not_found(_: Request[Any, Any, Any], exc: JobNotFoundError) -> Response[ErrorBody]:
    return error_response(404, "NOT_FOUND", str(exc))


def _conflict(_: Request[Any, Any, Any], exc: JobStateError) -> Response[ErrorBody]:
    return error_response(409, "CONFLICT", str(exc))


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    message = exc.detail
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("message"):
            key = "body" if first.get("key") == "data" else first.get("key")
            message = f"{first['message']} ({key})" if key else str(first["message"])
    return error_response(400, "VALIDATION_ERROR", message)


_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: Code.PAYLOAD_TOO_LARGE,
}


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = _HTTP_CODES.get(exc.status_code, "INTERNAL_ERROR")
    response = error_response(exc.status_code, code, exc.detail)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error")


def create_app(
    identity: UpstreamIdentity,
    store: JobStore | None = None,
    clock: Callable[[], float] = time.time,
    identity_max_age: float = MAX_AGE,
) -> Litestar:
    """The app, believing identities signed with `identity`'s secret, at most
    `identity_max_age` seconds from `clock`."""
    app = Litestar(
        route_handlers=[health, create_job, list_jobs, get_job, cancel_job, job_results],
        exception_handlers={
            CoordinatorError: _coordinator_error,
            JobNotFoundError: _not_found,
            JobStateError: _conflict,
            ValidationException: _validation,
            NotFoundException: _http_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
        logging_config=None,  # Litestar's own would take the root logger over from LOG_FORMAT's
        openapi_config=OpenAPIConfig(
            title="AITBC Coordinator (sample)",
            version="0.1.0",
            description="A SAMPLE, in-memory Coordinator for local runs and tests. "
            "Not the real AITBC Coordinator.",
        ),
    )
    app.state.store = store or JobStore()
    app.state.identity = identity
    app.state.clock = clock
    app.state.identity_max_age = identity_max_age
    return app


def identity_from_env(env: Mapping[str, str] | None = None) -> UpstreamIdentity:
    """The shared secret in UPSTREAM_IDENTITY_SECRET_FILE (refused unless only its owner may
    read it), or SystemExit saying what is missing. `env`: the process's environment unless
    given."""
    path = (os.environ if env is None else env).get("UPSTREAM_IDENTITY_SECRET_FILE", "")
    if not path:
        raise SystemExit(
            "aitbc-sample-coordinator: UPSTREAM_IDENTITY_SECRET_FILE is not set: the secret it "
            "shares with the edge to sign identities (`just up` makes one in DATA_DIR)"
        )
    try:
        return UpstreamIdentity(read_secret_file(path, "upstream identity secret"))
    except ValueError as exc:
        raise SystemExit(f"aitbc-sample-coordinator: {exc}") from None


def run() -> None:
    """Serve the sample Coordinator on COORDINATOR_HOST:COORDINATOR_PORT (127.0.0.1:8011)."""
    import uvicorn

    level = os.environ.get("LOG_LEVEL", "info").upper()
    logs.configure("aitbc-sample-coordinator", level)
    max_age = float(os.environ.get("UPSTREAM_IDENTITY_MAX_AGE", MAX_AGE))
    app: Any = create_app(identity_from_env(), identity_max_age=max_age)
    if environment.flag(os.environ, "COORDINATOR_GATE"):
        from aitbc_coordinator.gated import gated

        app = gated(app)
    uvicorn.run(
        app,
        host=os.environ.get("COORDINATOR_HOST", "127.0.0.1"),
        port=int(os.environ.get("COORDINATOR_PORT", "8011")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        # Off: uvicorn would believe X-Forwarded-For from 127.0.0.1, and the gate's allow-lists
        # would see the address a local client names. TRUSTED_PROXIES decides (the gate's).
        proxy_headers=False,
        log_level=level.lower(),
        log_config=None,  # uvicorn's lines in this process's format (aitbc_runtime.logs)
    )
