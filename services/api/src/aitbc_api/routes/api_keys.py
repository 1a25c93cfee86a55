"""Key management with the account's master key: list, create, show, revoke, regenerate, and
each key's audit trail."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.di import Provide

from aitbc_api.auth import Principal
from aitbc_api.errors import AUTHENTICATED, documented
from aitbc_api.gate import master
from aitbc_api.key_manager import KeyManager
from aitbc_api.routes.schemas import (
    ApiKey,
    ApiKeys,
    ApiKeyWithSecret,
    KeyEvents,
    NewKey,
    Regenerate,
)
from aitbc_api.types import Req


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]
    dependencies = {"caller": Provide(master)}

    @get("/", summary="List the account's keys", responses=documented(*AUTHENTICATED))
    async def list_keys(self, request: Req, caller: Principal) -> ApiKeys:
        return ApiKeys(keys=await KeyManager(request, caller).list_keys())

    @post(
        "/",
        status_code=201,
        summary="Create a key (the plaintext is in this response only)",
        responses=documented(*AUTHENTICATED),
    )
    async def create_key(self, request: Req, caller: Principal, data: NewKey) -> ApiKeyWithSecret:
        return await KeyManager(request, caller).create_key(
            data.name.strip(), data.expires_at, data.rate_limit
        )

    @get("/{key_id:str}", summary="Show a key", responses=documented(*AUTHENTICATED))
    async def get_key(self, request: Req, caller: Principal, key_id: str) -> ApiKey:
        return await KeyManager(request, caller).get_key(key_id)

    @get(
        "/{key_id:str}/events",
        summary="A key's history: who changed it, when (no secrets)",
        responses=documented(*AUTHENTICATED),
    )
    async def key_events(self, request: Req, caller: Principal, key_id: str) -> KeyEvents:
        return KeyEvents(events=await KeyManager(request, caller).key_events(key_id))

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke a key",
        responses=documented(*AUTHENTICATED),
    )
    async def revoke_key(self, request: Req, caller: Principal, key_id: str) -> ApiKey:
        return await KeyManager(request, caller).revoke_key(key_id)

    @post(
        "/{key_id:str}/regenerate",
        status_code=200,
        summary="New secret, same key id",
        responses=documented(*AUTHENTICATED, 409),
    )
    async def regenerate_key(
        self, request: Req, caller: Principal, key_id: str, data: Regenerate | None = None
    ) -> ApiKeyWithSecret:
        grace = data.grace_period_seconds if data else 0
        return await KeyManager(request, caller).regenerate_key(key_id, grace)
