"""Errors as pages: every failure on a dashboard path is shown as a page with a plain sentence,
never as the API's JSON body."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from aitbc_api.dashboard.access import owner_context
from aitbc_api.dashboard.messages import explain
from aitbc_api.dashboard.owner import Owner
from aitbc_api.dashboard.web import (
    BASE,
    OWNER_OF_REQUEST,
    SESSION_COOKIE,
    Cookies,
    DashboardError,
    SignedOut,
    redirect,
    render_with,
)
from aitbc_api.types import Req
from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError

log = logging.getLogger("aitbc.api.dashboard")

_HEADINGS = {
    400: "Please check what you entered",
    401: "Please sign in",
    403: "That was not allowed",
    404: "Not found",
    405: "That page cannot be used this way",
    409: "That cannot be done now",
    429: "Too many requests",
    431: "Too much sent",
    503: "Temporarily unavailable",
}


def _error_page(
    request: Req,
    status: int,
    message: str,
    detail: str = "",
    code: str = "",
    headers: dict[str, str] | None = None,
) -> Response[str]:
    """The error as a page. Once the request's session was checked, its header still shows
    who is signed in (a 429 or a 503 does not sign anyone out)."""
    owner: Owner | None = request.scope.get(OWNER_OF_REQUEST)  # type: ignore[assignment]
    heading = _HEADINGS.get(status, "Something went wrong")
    context: dict[str, object] = {
        "title": heading, "heading": heading, "error": message, "detail": detail, "code": code
    }  # fmt: skip
    if owner is not None:
        context.update(owner_context(owner))
    return render_with("error.html", context, status, extra_headers=headers)


def _api_error(request: Req, error: ApiError) -> Response[str]:
    sentence, detail = explain(error)
    return _error_page(request, error.status, sentence, detail, error.code, error.headers)


def _dashboard_error(request: Req, error: DashboardError) -> Response[str]:
    return _error_page(request, error.status, error.message, headers=error.headers)


def _not_found(request: Req, __: NotFoundException) -> Response[str]:
    message = "There is no such page in the dashboard."
    return _error_page(request, 404, message, code=Code.NOT_FOUND)


def _http_error(request: Req, error: HTTPException) -> Response[str]:
    message = (
        "That page cannot be used this way." if error.status_code == 405 else str(error.detail)
    )
    return _error_page(request, error.status_code, message)


def _unexpected(request: Req, _: Exception) -> Response[str]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error_page(request, 500, "Something went wrong on our side. Please try again.")


def error_pages(cookies: Cookies) -> ExceptionHandlersMap:
    """The dashboard router's exception handlers."""

    def signed_out(request: Req, error: SignedOut) -> Redirect:
        query = f"?reason={error.reason}" if error.reason else ""
        return redirect(f"{BASE}/sign-in{query}", [cookies.cleared(request, SESSION_COOKIE)])

    return {
        ApiError: _api_error,
        DashboardError: _dashboard_error,
        SignedOut: signed_out,
        NotFoundException: _not_found,
        HTTPException: _http_error,
        Exception: _unexpected,
    }


def with_dashboard_pages(handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """The app's handlers, but a page instead of JSON for a dashboard path that matches no
    route (404) or no method (405): those are answered before any router's handlers apply."""

    def for_path(api: Any, page: Any) -> Any:
        def handle(request: Req, error: Any) -> Response[Any]:
            path = request.url.path
            on_dashboard = path == BASE or path.startswith(BASE + "/")
            return page(request, error) if on_dashboard else api(request, error)  # type: ignore[no-any-return]

        return handle

    return {
        **handlers,
        NotFoundException: for_path(handlers[NotFoundException], _not_found),
        HTTPException: for_path(handlers[HTTPException], _http_error),
    }
