"""Key management with the account's master key: list, create, show, revoke, regenerate, and
each key's audit trail."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.di import Provide

from aitbc_api.auth import Authenticator, Principal
from aitbc_api.clients import KeysClient, UsageClient
from aitbc_api.errors import AUTHENTICATED, ApiError, documented
from aitbc_api.gate import master
from aitbc_api.middleware import request_id_of
from aitbc_api.routes.schemas import (
    ApiKey,
    ApiKeys,
    ApiKeyWithSecret,
    KeyEvents,
    NewKey,
    Regenerate,
    api_key,
    key_event,
    with_secret,
)
from aitbc_api.types import Req
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint, is_key_id


def _key_id(key_id: str) -> str:
    if not is_key_id(key_id):  # malformed ids cannot exist: answer as for any unknown key
        raise ApiError(404, m.Code.NOT_FOUND, "No such API key")
    return key_id


async def _key(request: Req, command: m.AnyCommand) -> m.KeyView:
    keys: KeysClient = request.app.state.keys_client
    view = await keys.command(command)
    assert isinstance(view, m.KeyView)
    return view


def _context(request: Req, caller: Principal) -> dict[str, str]:
    return {"actor": caller.key_id, "request_id": request_id_of(request.scope)}


class ApiKeysController(Controller):
    path = "/v1/api-keys"
    tags = ["api-keys"]
    dependencies = {"caller": Provide(master)}

    @get("/", summary="List the account's keys", responses=documented(*AUTHENTICATED))
    async def list_keys(self, request: Req, caller: Principal) -> ApiKeys:
        keys: KeysClient = request.app.state.keys_client
        reply = await keys.command(
            m.ListKeys(account_id=caller.account_id, **_context(request, caller))
        )
        assert isinstance(reply, m.KeyList)
        usage: UsageClient = request.app.state.usage_client
        last_used = await usage.last_used(caller.account_id)
        return ApiKeys(keys=[api_key(view, last_used.get(view.key_id)) for view in reply.keys])

    @post(
        "/",
        status_code=201,
        summary="Create a key (the plaintext is in this response only)",
        responses=documented(*AUTHENTICATED),
    )
    async def create_key(self, request: Req, caller: Principal, data: NewKey) -> ApiKeyWithSecret:
        secret = generate_key()
        view = await _key(
            request,
            m.CreateKey(
                account_id=caller.account_id,
                name=data.name.strip(),
                secret_hash=hash_key(secret),
                hint=hint(secret),
                expires_at=data.expires_at,
                rate_limit=data.rate_limit,
                **_context(request, caller),
            ),
        )
        return with_secret(view, secret)

    @get("/{key_id:str}", summary="Show a key", responses=documented(*AUTHENTICATED))
    async def get_key(self, request: Req, caller: Principal, key_id: str) -> ApiKey:
        command = m.GetKey(
            account_id=caller.account_id, key_id=_key_id(key_id), **_context(request, caller)
        )
        return api_key(await _key(request, command))

    @get(
        "/{key_id:str}/events",
        summary="A key's history: who changed it, when (no secrets)",
        responses=documented(*AUTHENTICATED),
    )
    async def key_events(self, request: Req, caller: Principal, key_id: str) -> KeyEvents:
        keys: KeysClient = request.app.state.keys_client
        reply = await keys.command(
            m.ListKeyEvents(
                account_id=caller.account_id, key_id=_key_id(key_id), **_context(request, caller)
            )
        )
        assert isinstance(reply, m.KeyHistory)
        return KeyEvents(events=[key_event(event) for event in reply.events])

    @delete(
        "/{key_id:str}",
        status_code=200,
        summary="Revoke a key",
        responses=documented(*AUTHENTICATED),
    )
    async def revoke_key(self, request: Req, caller: Principal, key_id: str) -> ApiKey:
        command = m.RevokeKey(
            account_id=caller.account_id, key_id=_key_id(key_id), **_context(request, caller)
        )
        view = await _key(request, command)
        _evict(request, view.key_id)
        return api_key(view)

    @post(
        "/{key_id:str}/regenerate",
        status_code=200,
        summary="New secret, same key id",
        responses=documented(*AUTHENTICATED, 409),
    )
    async def regenerate_key(
        self, request: Req, caller: Principal, key_id: str, data: Regenerate | None = None
    ) -> ApiKeyWithSecret:
        secret = generate_key()
        command = m.RegenerateKey(
            account_id=caller.account_id,
            key_id=_key_id(key_id),
            secret_hash=hash_key(secret),
            hint=hint(secret),
            grace_seconds=data.grace_period_seconds if data else 0,
            **_context(request, caller),
        )
        view = await _key(request, command)
        _evict(request, view.key_id)
        return with_secret(view, secret)


def _evict(request: Req, key_id: str) -> None:
    """This edge forgets the key at once; the others hear it from the key event stream."""
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.cache.evict_key(key_id)
