"""Key management with the account's master key (or a root key: a standard key with
keys:manage, within its own scopes): list, create, show, restrict, revoke, regenerate, and each
key's audit trail."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post

from aitbc_api.errors import AUTHENTICATED, documented
from aitbc_api.owners.bodies import ApiKeys, KeyChange, KeyEvents, NewKey, Regenerate
from aitbc_api.owners.dependencies import manager_dependencies
from aitbc_api.owners.key_manager import KeyManager
from aitbc_api.owners.views import ApiKey, ApiKeyWithSecret


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]
    dependencies = manager_dependencies()

    @get(
        "/",
        summary="List the account's keys",
        operation_id="listApiKeys",
        responses=documented(*AUTHENTICATED),
    )
    async def list_keys(self, keys: KeyManager) -> ApiKeys:
        return ApiKeys(keys=await keys.list_keys())

    @post(
        "/",
        status_code=201,
        summary="Create a key (the plaintext is in this response only)",
        operation_id="createApiKey",
        responses=documented(*AUTHENTICATED, 409),
    )
    async def create_key(self, keys: KeyManager, data: NewKey) -> ApiKeyWithSecret:
        return await keys.create_key(
            data.name.strip(),
            data.expires_at,
            data.rate_limit,
            (tuple(data.scopes), tuple(data.allowed_ips), data.shadow),
        )

    @get(
        "/{key_id:str}",
        summary="Show a key",
        operation_id="getApiKey",
        responses=documented(*AUTHENTICATED),
    )
    async def get_key(self, keys: KeyManager, key_id: str) -> ApiKey:
        return await keys.get_key(key_id)

    @patch(
        "/{key_id:str}",
        summary="Restrict a key: its scopes, allowed IPs, shadow mode (each field given)",
        operation_id="restrictApiKey",
        responses=documented(*AUTHENTICATED, 409),
    )
    async def restrict_key(self, keys: KeyManager, key_id: str, data: KeyChange) -> ApiKey:
        scopes = None if data.scopes is None else tuple(data.scopes)
        allowed_ips = None if data.allowed_ips is None else tuple(data.allowed_ips)
        return await keys.restrict_key(key_id, scopes, allowed_ips, data.shadow)

    @get(
        "/{key_id:str}/events",
        summary="A key's history: who changed it, when (no secrets)",
        operation_id="listApiKeyEvents",
        responses=documented(*AUTHENTICATED),
    )
    async def key_events(self, keys: KeyManager, key_id: str) -> KeyEvents:
        return KeyEvents(events=await keys.key_events(key_id))

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke a key",
        operation_id="revokeApiKey",
        responses=documented(*AUTHENTICATED),
    )
    async def revoke_key(self, keys: KeyManager, key_id: str) -> ApiKey:
        return await keys.revoke_key(key_id)

    @post(
        "/{key_id:str}/regenerate",
        status_code=200,
        summary="New secret, same key id",
        operation_id="regenerateApiKey",
        responses=documented(*AUTHENTICATED, 409),
    )
    async def regenerate_key(
        self, keys: KeyManager, key_id: str, data: Regenerate | None = None
    ) -> ApiKeyWithSecret:
        grace = data.grace_period_seconds if data else 0
        return await keys.regenerate_key(key_id, grace)
