"""Every failure of the edge's routes becomes `{"error": {"code", "message"}}`, mapped in this one
place: the gate's ApiError (aitbc_gate.errors) and the framework's own exceptions."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from litestar import Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from aitbc_api.types import Req
from aitbc_contracts.messages import Code, ErrorBody, ErrorDetail
from aitbc_gate.errors import ApiError

log = logging.getLogger("aitbc.api")


# Default code for framework errors that carry only a status.
_STATUS_CODE = {
    400: Code.VALIDATION_ERROR,
    401: Code.INVALID_API_KEY,
    403: Code.FORBIDDEN,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    408: Code.REQUEST_TIMEOUT,
    413: Code.PAYLOAD_TOO_LARGE,
    429: Code.RATE_LIMIT_EXCEEDED,
    503: Code.SERVICE_UNAVAILABLE,
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(ErrorDetail(code, message)), status_code=status, headers=dict(headers or {})
    )


def _api_error(_: Req, exc: ApiError) -> Response[ErrorBody]:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _validation_error(request: Req, exc: ValidationException) -> Response[ErrorBody]:
    # Litestar's detail is generic; the first "extra" item says which field and why.
    message = str(exc.detail)
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        item = exc.extra[0]
        source = item.get("source", "body")
        source = getattr(source, "value", source)  # ParamType.QUERY is "query"
        key = _sent_as(request, str(item.get("key", "")))
        message = f"{item.get('message', message)} ({source}: {key})"
    return error_response(400, Code.VALIDATION_ERROR, message)


def _sent_as(request: Req, key: str) -> str:
    """A parameter's name as the client sends it (`from`), not the handler's (`start`)."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except AttributeError:  # no route (a failure before routing)
        return key
    definition = getattr(parameter, "kwarg_definition", None)
    for alias in ("query", "header", "cookie"):
        if name := getattr(definition, alias, None):
            return str(name)
    return key


def _not_found(_: Req, exc: NotFoundException) -> Response[ErrorBody]:
    return error_response(404, Code.NOT_FOUND, "No such resource")


def _http_error(_: Req, exc: HTTPException) -> Response[ErrorBody]:
    code = _STATUS_CODE.get(exc.status_code, Code.INTERNAL_ERROR)
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


def _unexpected(request: Req, exc: Exception) -> Response[ErrorBody]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR, Code.INTERNAL_ERROR, "An unexpected error occurred"
    )


exception_handlers: ExceptionHandlersMap = {
    ApiError: _api_error,
    ValidationException: _validation_error,
    NotFoundException: _not_found,
    HTTPException: _http_error,
    Exception: _unexpected,
}


_DESCRIPTIONS = {
    400: "Invalid input (VALIDATION_ERROR)",
    401: "No key, or an invalid, revoked or expired one",
    403: (
        "The key may not do this (FORBIDDEN; MASTER_KEY_IN_GRACE: a replaced master secret; "
        "INSUFFICIENT_SCOPE: the route needs a scope the key lacks; IP_NOT_ALLOWED: the client's "
        "address is outside the key's allow-list)"
    ),
    404: "No such resource (NOT_FOUND)",
    409: "The resource's state forbids this (CONFLICT; TOO_MANY_KEYS: at the account's cap)",
    429: "Rate limit exceeded (RATE_LIMIT_EXCEEDED); see Retry-After",
    503: "A service this needs is unavailable (SERVICE_UNAVAILABLE)",
}
_EXAMPLES = {
    400: (Code.VALIDATION_ERROR, "Expected `str` of length >= 1 (body: name)"),
    401: (Code.INVALID_API_KEY, "The provided API key is invalid"),
    403: (
        Code.FORBIDDEN,
        "Managing keys requires the account's master key or a key with the keys:manage scope",
    ),
    404: (Code.NOT_FOUND, "No such API key"),
    409: (Code.CONFLICT, "key key_0123456789abcdef is revoked and cannot be regenerated"),
    429: (Code.RATE_LIMIT_EXCEEDED, "Rate limit of 60 requests per minute exceeded"),
    503: (Code.SERVICE_UNAVAILABLE, "The keys service is unavailable; try again shortly"),
}


def documented(
    *statuses: int, own: Mapping[int, tuple[str, str, str]] | None = None
) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route can give, all with the error body, each
    with a real example (generated ones would be random strings, different in every process):
    the usual one for its status, or the route's `own` (description, code, message)."""
    usual = {status: (_DESCRIPTIONS[status], *_EXAMPLES[status]) for status in _EXAMPLES}
    entries = {**usual, **(own or {})}
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description=entries[status][0],
            generate_examples=False,
            examples=[
                Example(
                    summary=entries[status][1],
                    value={"error": {"code": entries[status][1], "message": entries[status][2]}},
                )
            ],
        )
        for status in statuses
    }


AUTHENTICATED = (400, 401, 403, 404, 429, 503)
