"""What every authenticated request passes: who is calling, and may they, right now? Each step
takes the request's ASGI scope, whose context the request layer made (aitbc_gate.requests)."""

from __future__ import annotations

import math
import time

from aitbc_contracts.messages import Code
from aitbc_contracts.restrictions import KEYS_MANAGE, allows
from aitbc_gate.auth import Principal, presented_key
from aitbc_gate.errors import ApiError
from aitbc_gate.policies import exceeded
from aitbc_gate.proxies import client_address
from aitbc_gate.requests import context_of
from aitbc_gate.routes import route_path
from aitbc_gate.types import Scope


async def authenticate(scope: Scope) -> Principal:
    """Who is calling, from the presented key (401, or 429 for an address that guesses keys),
    if its key's restrictions let it make this request (403)."""
    context = context_of(scope)
    gate = context.gate
    authenticator = gate.authenticator
    key = presented_key(context.keys, scope["query_string"], gate.settings.api_key_in_query)
    principal = authenticator.known(key)
    if principal is None:
        principal = await authenticator.authenticate(key, client_address(scope))
    if principal.scopes or principal.allowed_ips:  # all a key without restrictions costs
        restricted(scope, principal)
    return principal


def restricted(scope: Scope, principal: Principal) -> None:
    """403 unless the request comes from the key's allow-list (IP_NOT_ALLOWED) and its route
    needs a scope the key holds (INSUFFICIENT_SCOPE; SCOPE_RULES says which: a route no rule
    maps is refused to every scoped key). Neither message shows the key's restrictions."""
    if principal.allowed_ips:
        address = client_address(scope)
        if not allows(principal.allowed_ips, address):
            raise ApiError(
                403,
                Code.IP_NOT_ALLOWED,
                f"This API key may not be used from {address or 'an unknown address'}",
            )
    if principal.scopes:
        rules = context_of(scope).gate.settings.scopes_needed
        method = scope.get("method", "GET")  # a WebSocket handshake is a GET
        path = route_path(scope)
        needed = rules.needed(method, path)
        if needed not in principal.scopes:
            route = f"{method} {rules.route(path)}"
            raise ApiError(
                403,
                Code.INSUFFICIENT_SCOPE,
                f"{route} needs the scope {needed}, which this API key does not hold"
                if needed
                else f"No scope grants {route}: a key restricted to scopes cannot call it",
            )


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
    """The principal, if it may manage its account's keys: a master key, or a root key (a
    standard key with keys:manage, which the keys service lets manage only keys within its
    own scopes), by its current secret. A replaced secret in its grace period keeps calling
    the API, so that clients can move to the new one, but whoever holds it (it may have
    leaked) changes nothing."""
    if principal.is_master:
        return owning(principal)
    if KEYS_MANAGE not in principal.scopes:
        raise ApiError(
            403,
            Code.FORBIDDEN,
            f"Managing keys requires the account's master key or a key with the {KEYS_MANAGE} "
            "scope",
        )
    if principal.in_grace:
        raise ApiError(
            403,
            Code.FORBIDDEN,
            "This key's secret was replaced: it calls the API until its grace period ends, but "
            "manages nothing. Use the new secret",
        )
    return principal


def owning(principal: Principal) -> Principal:
    """The principal, if it may change its account (its settings, the dashboard): the master
    key, by its current secret."""
    if not principal.is_master:
        raise ApiError(403, Code.FORBIDDEN, "This requires the account's master key")
    if principal.in_grace:
        raise ApiError(
            403,
            Code.MASTER_KEY_IN_GRACE,
            "This master key secret was replaced: it calls the API until its grace period "
            "ends, but manages nothing. Use the new master key",
        )
    return principal
