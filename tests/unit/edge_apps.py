"""The edge's app for tests of what answers without the bus (documents, headers, spans)."""

from __future__ import annotations

from types import SimpleNamespace

from litestar import Litestar

from aitbc_api.app import create_app
from aitbc_api.settings import Settings
from aitbc_gate.core import GateSlot, Load


def without_bus(settings: Settings | None = None) -> Litestar:
    """The app, its lifespan not to be entered (no NATS): the request layer finds a gate that
    holds only what it counts, and no route that needs more may be called."""
    slot = GateSlot()
    slot.gate = SimpleNamespace(load=Load())  # type: ignore[assignment]
    return create_app(settings or Settings(), slot)
