"""An answer that is not a success, with a stable code: raised anywhere on a request's path,
answered as `{"error": {"code", "message"}}` (by the gate's middleware as it is, by the edge's
exception handlers: aitbc_api.errors)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from aitbc_contracts.messages import Code, ErrorBody, ErrorDetail, Rejected


class ApiError(Exception):
    """An answer to the client that is not a success; `headers` go on the response."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return msgspec.json.encode(ErrorBody(ErrorDetail(self.code, self.message)))


# Status of each code the keys service can reject with.
_REJECTION_STATUS = {
    Code.INVALID_API_KEY: 401,
    Code.API_KEY_REVOKED: 401,
    Code.API_KEY_EXPIRED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.CONFLICT: 409,
    Code.VALIDATION_ERROR: 400,
    Code.SERVICE_UNAVAILABLE: 503,
    Code.TOO_MANY_KEYS: 409,
}


def unavailable(service: str) -> ApiError:
    """A service the answer needs did not answer (or not readably): 503."""
    return ApiError(
        503, Code.SERVICE_UNAVAILABLE, f"The {service} service is unavailable; try again shortly"
    )


def from_rejection(rejected: Rejected) -> ApiError:
    return ApiError(_REJECTION_STATUS.get(rejected.code, 500), rejected.code, rejected.message)
