"""What every authenticated request passes: who is calling, and may they, right now? Each step
takes the request's ASGI scope, whose context the request layer made (aitbc_gate.requests)."""

from __future__ import annotations

import math
import time

from aitbc_contracts.messages import Code
from aitbc_gate.auth import Principal, presented_key
from aitbc_gate.errors import ApiError
from aitbc_gate.policies import exceeded
from aitbc_gate.proxies import client_address
from aitbc_gate.requests import context_of
from aitbc_gate.types import Scope


async def authenticate(scope: Scope) -> Principal:
    """Who is calling, from the presented key (401, or 429 for an address that guesses keys)."""
    context = context_of(scope)
    gate = context.gate
    authenticator = gate.authenticator
    key = presented_key(context.keys, scope["query_string"], gate.settings.api_key_in_query)
    if (known := authenticator.known(key)) is not None:
        return known
    return await authenticator.authenticate(key, client_address(scope))


async def data_plane_caller(scope: Scope) -> Principal:
    """Who calls the data plane (the edge's forwarded /v1/... routes, an app's gated ones): any
    key, but a master key only where neither the settings (MASTER_KEY_DATA_PLANE=0) nor its
    account keep it to managing keys."""
    principal = await authenticate(scope)
    if principal.kind == "master" and not (
        principal.data_plane and context_of(scope).gate.settings.master_key_data_plane
    ):
        raise ApiError(
            403,
            Code.MASTER_KEY_MANAGEMENT_ONLY,
            "This master key only manages keys: call the API with a standard key",
        )
    return principal


async def admit(scope: Scope) -> Principal:
    """Authenticates, takes a rate-limit decision, and sets the headers that report it."""
    principal = await authenticate(scope)
    await limit(scope, principal)
    return principal


async def limit(scope: Scope, principal: Principal) -> None:
    """Counts one request against the principal's limits (and records it as usage), or raises
    429, or 503 when failing closed. The dashboard counts its requests through here too."""
    context = context_of(scope)
    gate = context.gate
    limiter = gate.limiter
    context.principal = principal
    who = (
        principal.account_id, principal.key_id, principal.plan, principal.rate_limit,
        principal.shadow,
    )  # fmt: skip
    verdict = limiter.leased(*who) or await limiter.decide(*who)  # check(), without a coroutine
    context.verdict = verdict
    now = time.time()
    context.headers = gate.rate_limit_headers.of(verdict, now)
    if verdict.decision is None:
        raise ApiError(
            503,
            Code.SERVICE_UNAVAILABLE,
            "The rate limiter is unavailable and this service fails closed; try again shortly",
        )
    if not verdict.decision.admitted:
        retry_after = max(1, math.ceil(verdict.decision.reset - now))
        raise ApiError(
            429,
            Code.RATE_LIMIT_EXCEEDED,
            exceeded(verdict.decision),  # names the window that refused
            headers={"Retry-After": str(retry_after)},
        )


def managing(principal: Principal) -> Principal:
    """The principal, if it may manage its account: a master key, by its current secret. A
    replaced secret in its grace period keeps calling the API, so that clients can move to
    the new one, but whoever holds it (it may have leaked) changes nothing."""
    if not principal.is_master:
        raise ApiError(403, Code.FORBIDDEN, "Managing keys requires the account's master key")
    if principal.in_grace:
        raise ApiError(
            403,
            Code.MASTER_KEY_IN_GRACE,
            "This master key secret was replaced: it calls the API until its grace period "
            "ends, but manages nothing. Use the new master key",
        )
    return principal
