"""The owners' dependencies, as Litestar injects them (`Provide`): each handler names what it
needs (a `KeyManager`, the `OwnerServices`) and is given it; none reaches into the request for
a service. The lifespan puts the app-lifetime services in the app's state (aitbc_api.lifespan).
"""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from aitbc_api.owners.key_manager import KeyManager, OwnerServices
from aitbc_api.types import Req
from aitbc_gate.admission import admit, managing, owning
from aitbc_gate.auth import Principal
from aitbc_gate.requests import request_id_of

OWNER_SERVICES = "owner_services"  # the app state's key


def provide_owner_services(state: State) -> OwnerServices:
    services: OwnerServices = state[OWNER_SERVICES]
    return services


async def caller(request: Req) -> Principal:
    """The authenticated, admitted caller of this request (any key)."""
    return await admit(request.scope)


async def master(request: Req) -> Principal:
    """The caller, who must hold the account's master key by its current secret."""
    return owning(await admit(request.scope))


async def manager(request: Req) -> Principal:
    """The caller, who must manage keys: the master key, or a root key (keys:manage)."""
    return managing(await admit(request.scope))


def provide_request_id(request: Req) -> str:
    return request_id_of(request.scope)


def provide_key_manager(
    owner_services: OwnerServices, caller: Principal, request_id: str
) -> KeyManager:
    """The caller's account, for this request (`caller` is the gate's: a master key, or any)."""
    return KeyManager(owner_services, caller, request_id)


def owner_dependencies() -> dict[str, Provide]:
    """For the app: what any owner's handler (the REST routes', the dashboard's) may name."""
    return {
        OWNER_SERVICES: Provide(provide_owner_services, sync_to_thread=False),
        "request_id": Provide(provide_request_id, sync_to_thread=False),
    }


def master_dependencies() -> dict[str, Provide]:
    """For a controller of the account's master key: the caller (403 for any other key, or a
    replaced master secret) and the key manager acting for it."""
    return {
        "caller": Provide(master),
        "keys": Provide(provide_key_manager, sync_to_thread=False),
    }


def manager_dependencies() -> dict[str, Provide]:
    """For the key management routes: the master key, or a root key, whose powers the keys
    service judges by the key's own state (aitbc_keys.domain.restrictions)."""
    return {
        "caller": Provide(manager),
        "keys": Provide(provide_key_manager, sync_to_thread=False),
    }
