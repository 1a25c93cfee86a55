"""The sample Coordinator with the gate in process (COORDINATOR_GATE=1): what a Python upstream
adds to gain API keys and exact plan limits without an edge in front.

A request the edge forwarded carries the caller's identity, signed with the secret the two
share: the edge checked and counted it already, so the gate lets it through as it is. Any other
request needs an API key (aitbc_gate.GateMiddleware)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.datastructures import Headers

from aitbc_contracts.identity import IDENTITY_HEADER
from aitbc_coordinator.app import EDGE_SIGNED, CoordinatorError, signed_account
from aitbc_gate import GateMiddleware, GateSettings

_IDENTITY = IDENTITY_HEADER.encode()


def gated(app: Litestar, settings: GateSettings | None = None) -> GateMiddleware:
    """`app` behind the gate, with settings from the environment unless given."""

    def signed_by_the_edge(scope: Any) -> bool:
        headers = scope["headers"]
        if not any(name == _IDENTITY for name, _ in headers):
            return False
        try:
            account = signed_account(app.state, Headers.from_scope(scope))
        except CoordinatorError:
            return False  # then it needs a key, as any request would
        scope.setdefault("state", {})[EDGE_SIGNED] = account  # not verified a second time
        return True

    return GateMiddleware(app, settings, admitted=signed_by_the_edge, name="aitbc-coordinator")
