"""The response headers the OpenAPI document declares: those the gate sets on every request it
counts (aitbc_gate.rate_limit_headers) and the 429's Retry-After.

Litestar documents a route's own headers on its success response only, and none on the error
responses it is given (`ResponseSpec`); so each is defined once in the document's components
(`header_components`) and the answers of every operation that can answer 429 refer to them
(`declare_rate_limit_headers`): the rate-limit headers for one that takes a key (it passes the
rate limit), Retry-After alone for one that takes none (sign-up's own budget).
"""

from __future__ import annotations

from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)

from aitbc_contracts.usage import WINDOW_SECONDS

_INTEGER = Schema(type=OpenAPIType.INTEGER, minimum=0)
_STRING = Schema(type=OpenAPIType.STRING)

# name -> (schema, description), in the order the gate writes them
RATE_LIMIT_HEADERS: dict[str, tuple[Schema, str]] = {
    "X-RateLimit-Mode": (
        Schema(type=OpenAPIType.STRING, enum=["exact", "fail-open", "fail-closed", "shadow"]),
        "How the decision was taken: `exact` by the usage service; `shadow` by it too, for a "
        "plan or key whose limits are only reported (nothing is refused; a request over them "
        "shows 0 remaining); `fail-open` by this edge alone while the usage service is "
        "unreachable (`fail-closed` answers 503 instead)",
    ),
    "X-RateLimit-Limit": (
        _INTEGER,
        "The limit of the window reported: the one that refused, else the one closest to "
        "refusing (the fewest requests left; the longer one on a tie) of the plan's minute, "
        "second (burst) and UTC day (quota); `fail-open`: this edge's share of the minute's "
        "(the limit over the edges alive, rounded up)",
    ),
    "X-RateLimit-Reset": (_INTEGER, "When the reported window ends, in Unix seconds"),
    "RateLimit-Policy": (
        _STRING,
        f'IETF draft: every policy of the plan, its quota and window, e.g. `"free";q=60;'
        f'w={WINDOW_SECONDS}, "free-burst";q=10;w=1, "free-day";q=10000;w=86400`; the '
        "minute's name is the plan, or `\"key\"` when the key's own lower limit applies",
    ),
    "X-RateLimit-Remaining": (_INTEGER, "Requests left in the reported window"),
    "RateLimit": (
        _STRING,
        "IETF draft: the reported window's policy, requests left and seconds until it ends, "
        'e.g. `"free";r=59;t=42`',
    ),
}
RETRY_AFTER = "Retry-After"


def _component(name: str) -> Reference:
    return Reference(ref=f"#/components/headers/{name}")


def header_components() -> dict[str, OpenAPIHeader | Reference]:
    """Each header once, for the document's components; responses refer to them. Not required:
    a 429 for too many invalid keys comes before any count, so without the rate-limit ones."""
    return {
        **{
            name: OpenAPIHeader(schema=schema, description=description)
            for name, (schema, description) in RATE_LIMIT_HEADERS.items()
        },
        RETRY_AFTER: OpenAPIHeader(
            schema=_INTEGER, description="Seconds to wait before trying again", required=True
        ),
    }


def declare_rate_limit_headers(document: OpenAPI) -> None:
    """Adds the headers to the answers of every operation that documents a 429: the rate-limit
    headers to its successes and its 429 if it takes a key, and Retry-After to its 429."""
    for path_item in (document.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            operation = getattr(path_item, method)
            responses = operation.responses if operation is not None else None
            if not responses or "429" not in responses:
                continue
            keyless = operation.security == [{}]  # type: ignore[union-attr]
            counted = {} if keyless else {name: _component(name) for name in RATE_LIMIT_HEADERS}
            for status, response in responses.items():
                if not isinstance(response, OpenAPIResponse):
                    continue
                if status.startswith("2"):
                    response.headers = {**(response.headers or {}), **counted}
                elif status == "429":
                    refusal = {RETRY_AFTER: _component(RETRY_AFTER), **counted}
                    response.headers = {**(response.headers or {}), **refusal}
