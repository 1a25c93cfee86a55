"""What an account's owner can do, as commands to the keys service: one place for the REST
routes (`/v1/accounts`, `/v1/api-keys`, `/v1/usage`) and the dashboard, with the same rules.

The keys service decides every command; the edge maps its answers to the API's error codes
(`ApiError`). New secrets are made here and only their SHA-256 and hint go on the bus: the
plaintext exists only in the response that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from aitbc_api.auth import Principal
from aitbc_api.clients import KeysClient
from aitbc_api.errors import ApiError
from aitbc_api.middleware import edge_of, request_id_of
from aitbc_api.routes.schemas import (
    ApiKey,
    ApiKeyWithSecret,
    KeyEvent,
    api_key,
    key_event,
    with_secret,
)
from aitbc_api.types import Req
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint, is_key_id
from aitbc_contracts.usage import MinuteUsage, UsageQuery


def checked_key_id(key_id: str) -> str:
    if not is_key_id(key_id):  # malformed ids cannot exist: answer as for any unknown key
        raise ApiError(404, m.Code.NOT_FOUND, "No such API key")
    return key_id


async def create_account(request: Req, name: str) -> tuple[m.AccountView, str]:
    """Sign-up: a free account and its master key (the plaintext, to be shown once)."""
    keys = edge_of(request).keys_client
    master_key = generate_key()
    view = await keys.command(
        m.CreateAccount(
            name=name,
            plan="free",
            master_key_hash=hash_key(master_key),
            master_key_hint=hint(master_key),
            actor="signup",
            request_id=request_id_of(request.scope),
        )
    )
    assert isinstance(view, m.AccountView)
    return view, master_key


class _Context(TypedDict):
    """Who asks, and in which request: the fields every command of a KeyManager carries."""

    actor: str
    request_id: str


@dataclass(frozen=True, slots=True)
class KeyManager:
    """The account of `principal` (its master key, or a dashboard session's), for one request."""

    request: Req
    principal: Principal

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def plan(self) -> str:
        return self.principal.plan

    @property
    def plan_limit(self) -> int | None:
        return edge_of(self.request).limiter.plan_limits.get(self.principal.plan)

    @property
    def _keys(self) -> KeysClient:
        return edge_of(self.request).keys_client

    def _context(self) -> _Context:
        return {"actor": self.principal.key_id, "request_id": request_id_of(self.request.scope)}

    async def _key(self, command: m.AnyCommand) -> m.KeyView:
        view = await self._keys.command(command)
        assert isinstance(view, m.KeyView)
        return view

    def _evict(self, key_id: str) -> None:
        """This edge forgets the key at once; the others hear it from the key event stream."""
        edge_of(self.request).authenticator.cache.evict_key(key_id)

    async def list_keys(self) -> list[ApiKey]:
        reply = await self._keys.command(m.ListKeys(account_id=self.account_id, **self._context()))
        assert isinstance(reply, m.KeyList)
        last_used = await edge_of(self.request).usage_client.last_used(self.account_id)
        return [api_key(view, last_used.get(view.key_id)) for view in reply.keys]

    async def get_key(self, key_id: str) -> ApiKey:
        command = m.GetKey(
            account_id=self.account_id, key_id=checked_key_id(key_id), **self._context()
        )
        return api_key(await self._key(command))

    async def create_key(
        self, name: str, expires_at: datetime | None, rate_limit: int | None
    ) -> ApiKeyWithSecret:
        secret = generate_key()
        view = await self._key(
            m.CreateKey(
                account_id=self.account_id,
                name=name,
                secret_hash=hash_key(secret),
                hint=hint(secret),
                expires_at=expires_at,
                rate_limit=rate_limit,
                **self._context(),
            )
        )
        return with_secret(view, secret)

    async def revoke_key(self, key_id: str, reason: str = "") -> ApiKey:
        command = m.RevokeKey(
            account_id=self.account_id,
            key_id=checked_key_id(key_id),
            reason=reason,
            **self._context(),
        )
        view = await self._key(command)
        self._evict(view.key_id)
        return api_key(view)

    async def regenerate_key(self, key_id: str, grace_seconds: int) -> ApiKeyWithSecret:
        secret = generate_key()
        command = m.RegenerateKey(
            account_id=self.account_id,
            key_id=checked_key_id(key_id),
            secret_hash=hash_key(secret),
            hint=hint(secret),
            grace_seconds=grace_seconds,
            **self._context(),
        )
        view = await self._key(command)
        self._evict(view.key_id)
        return with_secret(view, secret)

    async def key_events(self, key_id: str) -> list[KeyEvent]:
        """The key's audit trail, oldest first (no secrets)."""
        reply = await self._keys.command(
            m.ListKeyEvents(
                account_id=self.account_id, key_id=checked_key_id(key_id), **self._context()
            )
        )
        assert isinstance(reply, m.KeyHistory)
        return [key_event(event) for event in reply.events]

    async def usage(self, start: datetime, end: datetime, key_id: str | None) -> list[MinuteUsage]:
        """The account's (or one of its keys') per-minute counts."""
        series = await edge_of(self.request).usage_client.series(
            UsageQuery(self.account_id, start, end, key_id)
        )
        return series.minutes
