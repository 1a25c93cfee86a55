"""What an account's owner can do, as commands to the keys service: one place for the REST
routes (`/v1/accounts`, `/v1/api-keys`, `/v1/usage`) and the dashboard, with the same rules.

The keys service decides every command; the edge maps its answers to the API's error codes
(`ApiError`). New secrets are made here and only their SHA-256 and hint go on the bus: the
plaintext exists only in the response that shows it.

A KeyManager is made per request by dependency injection (aitbc_api.owners.dependencies) from
the app's `OwnerServices` and the request's caller: it knows neither the request nor the
middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from aitbc_api.owners.usage_queries import UsageQueries
from aitbc_api.owners.views import (
    ApiKey,
    ApiKeyWithSecret,
    KeyEvent,
    api_key,
    key_event,
    with_secret,
)
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint, is_key_id
from aitbc_contracts.plans import PlanTable, beyond_the_minute
from aitbc_contracts.usage import MinuteUsage, UsageQuery
from aitbc_gate.auth import Principal
from aitbc_gate.errors import ApiError, from_rejection, unavailable
from aitbc_gate.throttle import AttemptBudget
from aitbc_runtime.commands import CommandFailed, KeysCommands

Restrictions = tuple[tuple[str, ...], tuple[str, ...], bool]  # scopes, allowed_ips, shadow
Answer = m.AccountView | m.KeyView | m.KeyList | m.KeyHistory | m.Rebuilt


def checked_key_id(key_id: str) -> str:
    if not is_key_id(key_id):  # malformed ids cannot exist: answer as for any unknown key
        raise ApiError(404, m.Code.NOT_FOUND, "No such API key")
    return key_id


async def send(commands: KeysCommands, command: m.AnyCommand) -> Answer:
    """The keys service's answer; its refusal as the matching ApiError, and no answer at all
    (CommandFailed: none listening, too slow, unreadable) as 503."""
    try:
        reply = await commands.send(command)
    except CommandFailed as exc:
        raise unavailable("keys") from exc
    if isinstance(reply, m.Rejected):
        raise from_rejection(reply)
    return reply


@dataclass(frozen=True, slots=True)
class OwnerServices:
    """What every key manager shares, made once by the lifespan."""

    commands: KeysCommands
    usage: UsageQueries
    forget_key: Callable[[str], None]  # this edge's auth cache forgets a changed key at once
    plan_limits: Mapping[str, int]
    signups: AttemptBudget | None = None  # sign-ups per address and overall; None: unbounded
    forget_account: Callable[[str], None] = lambda _: None  # ... and every key of an account
    standard_key_usage: str = "account"  # what GET /v1/usage shows a standard key (settings)
    plan_table: PlanTable | None = None  # every plan's windows (PLANS_FILE), kept up to date

    async def send(self, command: m.AnyCommand) -> Answer:
        return await send(self.commands, command)

    async def create_account(
        self, name: str, request_id: str, client: str = ""
    ) -> tuple[m.AccountView, str]:
        """Sign-up (the API's or the dashboard's, one budget): a free account and its master
        key (the plaintext, to be shown once); 429 TOO_MANY_SIGNUPS over the budget."""
        if self.signups is not None:
            self.signups.take(client)
        master_key = generate_key()
        view = await self.send(
            m.CreateAccount(
                name=name,
                plan="free",
                master_key_hash=hash_key(master_key),
                master_key_hint=hint(master_key),
                actor="signup",
                request_id=request_id,
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

    services: OwnerServices
    principal: Principal
    request_id: str

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def plan(self) -> str:
        return self.principal.plan

    @property
    def plan_limit(self) -> int | None:
        return self.services.plan_limits.get(self.principal.plan)

    @property
    def plan_windows(self) -> str:
        """The plan's limits beyond its minute, in words ("" for none)."""
        table = self.services.plan_table
        plan = table.plans.get(self.principal.plan) if table is not None else None
        return beyond_the_minute(plan) if plan is not None else ""

    def _context(self) -> _Context:
        return {"actor": self.principal.key_id, "request_id": self.request_id}

    async def _key(self, command: m.AnyCommand) -> m.KeyView:
        view = await self.services.send(command)
        assert isinstance(view, m.KeyView)
        return view

    async def account(self) -> m.AccountView:
        reply = await self.services.send(
            m.GetAccount(account_id=self.account_id, **self._context())
        )
        assert isinstance(reply, m.AccountView)
        return reply

    async def set_master_key_data_plane(self, data_plane: bool) -> m.AccountView:
        """Let the master key call the forwarded routes, or keep it to managing keys."""
        reply = await self.services.send(
            m.SetMasterKeyDataPlane(
                account_id=self.account_id, data_plane=data_plane, **self._context()
            )
        )
        assert isinstance(reply, m.AccountView)
        self.services.forget_account(self.account_id)  # other edges hear it from the events
        return reply

    async def list_keys(self) -> list[ApiKey]:
        reply = await self.services.send(m.ListKeys(account_id=self.account_id, **self._context()))
        assert isinstance(reply, m.KeyList)
        last_used = await self.services.usage.last_used(self.account_id)
        return [api_key(view, last_used.get(view.key_id)) for view in reply.keys]

    async def get_key(self, key_id: str) -> ApiKey:
        command = m.GetKey(
            account_id=self.account_id, key_id=checked_key_id(key_id), **self._context()
        )
        return api_key(await self._key(command))

    async def create_key(
        self,
        name: str,
        expires_at: datetime | None,
        rate_limit: int | None,
        restricted: Restrictions | None = None,
    ) -> ApiKeyWithSecret:
        """`restricted`: its scopes, allowed IPs and shadow mode (none: no restriction)."""
        scopes, allowed_ips, shadow = restricted or ((), (), False)
        secret = generate_key()
        view = await self._key(
            m.CreateKey(
                account_id=self.account_id,
                name=name,
                secret_hash=hash_key(secret),
                hint=hint(secret),
                expires_at=expires_at,
                rate_limit=rate_limit,
                scopes=scopes,
                allowed_ips=allowed_ips,
                shadow=shadow,
                **self._context(),
            )
        )
        return with_secret(view, secret)

    async def restrict_key(
        self,
        key_id: str,
        scopes: tuple[str, ...] | None = None,
        allowed_ips: tuple[str, ...] | None = None,
        shadow: bool | None = None,
    ) -> ApiKey:
        """New restrictions for a key (None: unchanged), in force on every edge at once: this
        one forgets the key now, the others when they read the key's event."""
        command = m.RestrictKey(
            account_id=self.account_id,
            key_id=checked_key_id(key_id),
            scopes=scopes,
            allowed_ips=allowed_ips,
            shadow=shadow,
            **self._context(),
        )
        view = await self._key(command)
        self.services.forget_key(view.key_id)
        return api_key(view)

    async def revoke_key(self, key_id: str, reason: str = "") -> ApiKey:
        command = m.RevokeKey(
            account_id=self.account_id,
            key_id=checked_key_id(key_id),
            reason=reason,
            **self._context(),
        )
        view = await self._key(command)
        self.services.forget_key(view.key_id)  # the other edges hear it from the key events
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
        self.services.forget_key(view.key_id)
        return with_secret(view, secret)

    async def key_events(self, key_id: str) -> list[KeyEvent]:
        """The key's audit trail, oldest first (no secrets)."""
        reply = await self.services.send(
            m.ListKeyEvents(
                account_id=self.account_id, key_id=checked_key_id(key_id), **self._context()
            )
        )
        assert isinstance(reply, m.KeyHistory)
        return [key_event(event) for event in reply.events]

    async def usage(self, start: datetime, end: datetime, key_id: str | None) -> list[MinuteUsage]:
        """The account's (or one of its keys') per-minute counts."""
        series = await self.services.usage.series(UsageQuery(self.account_id, start, end, key_id))
        return series.minutes
