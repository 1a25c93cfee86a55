"""The keys service layer: one function per command, each given its unit of work and the
sender's power. They load, decide (aitbc_keys.domain), commit and answer; the bus entry point
(aitbc_keys.entrypoint) only decodes, calls `handle` with the power of the subject the command
came on, and encodes. Which command needs which power is aitbc_contracts.powers' rule, applied
here once, before any handler runs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.keyformat import is_key_id, new_account_id, new_key_id
from aitbc_contracts.keys import AccountState, KeyState, State, fold
from aitbc_contracts.powers import Power, refusal
from aitbc_keys import domain, store
from aitbc_keys.domain import NotFound
from aitbc_keys.service_layer.unit_of_work import UnitOfWork

T = TypeVar("T")
COMMAND_RETRIES = 3  # a command that loses an optimistic-concurrency race is decided again


def new_event_id() -> str:
    return uuid.uuid4().hex


async def create_account(command: m.CreateAccount, uow: UnitOfWork, _: Power) -> m.AccountView:
    account_id, key_id = new_account_id(), new_key_id()
    new = domain.create_account(command, uow.now, account_id, key_id, new_event_id)
    await uow.commit([(account_id, 0, new[:1]), (key_id, 0, new[1:])])
    return await _account(uow, account_id)


async def set_plan(command: m.SetPlan, uow: UnitOfWork, _: Power) -> m.AccountView:
    await _update(
        uow, command.account_id, lambda s: domain.set_plan(s, command, uow.now, new_event_id)
    )
    return await _account(uow, command.account_id)


async def set_master_key_data_plane(
    command: m.SetMasterKeyDataPlane, uow: UnitOfWork, power: Power
) -> m.AccountView:
    domain.owning_key(await _acting_key(uow, command, command.account_id, power))
    await _update(
        uow,
        command.account_id,
        lambda s: domain.set_master_key_data_plane(s, command, uow.now, new_event_id),
    )
    return await _account(uow, command.account_id)


async def get_account(command: m.GetAccount, uow: UnitOfWork, _: Power) -> m.AccountView:
    return await _account(uow, command.account_id)


async def create_key(command: m.CreateKey, uow: UnitOfWork, power: Power) -> m.KeyView:
    root = await _root(uow, command, command.account_id, power)
    account = fold(await uow.load(command.account_id))
    key_id = new_key_id()
    live = await uow.live_keys(command.account_id)
    new = domain.create_key(
        account, command, uow.now, key_id, new_event_id, live, uow.max_keys, root
    )
    await uow.commit([(key_id, 0, new)])  # with its restrictions, if any: one commit
    return _key_view(fold(new), key_id, uow)


async def restrict_key(command: m.RestrictKey, uow: UnitOfWork, power: Power) -> m.KeyView:
    root = await _root(uow, command, command.account_id, power)
    state = await _update(
        uow,
        command.key_id,
        lambda s: domain.restrict_key(s, command, uow.now, new_event_id, root),
    )
    return _key_view(state, command.key_id, uow)


async def list_keys(command: m.ListKeys, uow: UnitOfWork, _: Power) -> m.KeyList:
    """From the account's events: a key's status is the fold's (it depends on the time). A
    look-up changes nothing: who may ask is the edge's to say (a root key, the master key, a
    standard key checking a key id is its account's)."""
    states: dict[str, State] = {}
    domain.fold_streams(states, await uow.load_account(command.account_id))
    if not isinstance(states.get(command.account_id), AccountState):
        raise NotFound(f"account {command.account_id} not found")
    keys = sorted(
        (s for s in states.values() if isinstance(s, KeyState)),
        key=lambda key: (key.created_at, key.key_id),
    )
    return m.KeyList(keys=[domain.key_view(key, uow.now) for key in keys])


async def get_key(command: m.GetKey, uow: UnitOfWork, _: Power) -> m.KeyView:
    key = domain.visible_key(
        fold(await uow.load(command.key_id)), command.key_id, command.account_id
    )
    return domain.key_view(key, uow.now)


async def revoke_key(command: m.RevokeKey, uow: UnitOfWork, power: Power) -> m.KeyView:
    root = await _root(uow, command, command.account_id, power)
    state = await _update(
        uow,
        command.key_id,
        lambda s: domain.revoke_key(s, command, uow.now, new_event_id, power, root),
    )
    return _key_view(state, command.key_id, uow)


async def regenerate_key(command: m.RegenerateKey, uow: UnitOfWork, power: Power) -> m.KeyView:
    root = await _root(uow, command, command.account_id, power)
    state = await _update(
        uow,
        command.key_id,
        lambda s: domain.regenerate_key(s, command, uow.now, new_event_id, root),
    )
    return _key_view(state, command.key_id, uow)


async def list_key_events(command: m.ListKeyEvents, uow: UnitOfWork, _: Power) -> m.KeyHistory:
    history = await uow.load(command.key_id)
    domain.visible_key(fold(history), command.key_id, command.account_id)
    return m.KeyHistory(events=history)


async def rebuild_projections(
    command: m.RebuildProjections, uow: UnitOfWork, _: Power
) -> m.Rebuilt:
    return m.Rebuilt(events=await uow.rebuild_read_model())


async def replace_master_key(command: m.ReplaceMasterKey, uow: UnitOfWork, _: Power) -> m.KeyView:
    """Account recovery: decided on the account's keys as they are; decided again when one of
    them changed meanwhile (an owner's regenerate of the master key, say)."""
    key_id = new_key_id()

    async def decide_and_commit() -> m.KeyView:
        states: dict[str, State] = {}
        domain.fold_streams(states, await uow.load_account(command.account_id))
        keys = [state for state in states.values() if isinstance(state, KeyState)]
        new = domain.replace_master_key(
            states.get(command.account_id), keys, command, uow.now, key_id, new_event_id
        )
        # one event per stream: each follows the version it was decided on
        await uow.commit([(event.stream_id, event.version - 1, [event]) for event in new])
        return _key_view(fold(new[-1:]), key_id, uow)

    return await _retried(decide_and_commit)


Handler = Callable[[Any, UnitOfWork, Power], Awaitable[m.Reply]]
HANDLERS: dict[type[m.Command], Handler] = {
    m.CreateAccount: create_account,
    m.SetPlan: set_plan,
    m.GetAccount: get_account,
    m.CreateKey: create_key,
    m.ListKeys: list_keys,
    m.GetKey: get_key,
    m.RevokeKey: revoke_key,
    m.RegenerateKey: regenerate_key,
    m.RestrictKey: restrict_key,
    m.ListKeyEvents: list_key_events,
    m.RebuildProjections: rebuild_projections,
    m.ReplaceMasterKey: replace_master_key,
    m.SetMasterKeyDataPlane: set_master_key_data_plane,
}


async def handle(command: m.AnyCommand, uow: UnitOfWork, power: Power) -> m.Reply:
    """Carry out one command for a sender with `power`; a refusal is a domain.KeysError."""
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise domain.ValidationError(f"unsupported command {type(command).__name__}")
    why = refusal(command, power)
    if why is not None:
        raise domain.Forbidden(why)
    return await handler(command, uow, power)


async def _acting_key(
    uow: UnitOfWork, command: m.Command, account_id: str | None, power: Power
) -> KeyState | None:
    """The key an owner's command names as its actor, when it is a standard key: its state as
    this service holds it (the command's word is only which key acted: what that key may do
    is read from its own stream). None for the master key, an operator, or an actor that names
    no key of the log (a sign-up). A key of another account acts for no one here."""
    if power is not Power.OWNER or not is_key_id(command.actor):
        return None
    if uow.known_kind(command.actor) == "master":  # most owners' commands: no stream to read
        return None
    state = fold(await uow.load(command.actor))
    if not isinstance(state, KeyState) or state.kind == "master":
        return None
    if state.account_id != account_id:
        raise domain.Forbidden(f"the acting key {command.actor} is not a key of this account")
    return state


async def _root(
    uow: UnitOfWork, command: m.Command, account_id: str | None, power: Power
) -> KeyState | None:
    """The acting root key (aitbc_keys.domain.restrictions), or None when the master key or
    an operator acts; Forbidden for a standard key without keys:manage."""
    return domain.managing_key(await _acting_key(uow, command, account_id, power))


async def _update(
    uow: UnitOfWork, stream_id: str, decide: Callable[[State | None], list[AnyEvent]]
) -> State | None:
    """Load, decide and commit in one write transaction (the unit of work's `update`): no
    concurrent write can come between; again on a collision with existing state (a reused
    secret hash). Returns the stream's state after."""

    async def decide_and_commit() -> State | None:
        history, new = await uow.update(stream_id, lambda events: decide(fold(events)))
        return fold([*history, *new])

    return await _retried(decide_and_commit)


async def _retried(decide_and_commit: Callable[[], Awaitable[T]]) -> T:
    """Runs a load-decide-commit; again, on a fresh load, when a concurrent write won, up to
    COMMAND_RETRIES times in all (the last store.ConcurrencyError is raised)."""
    for _ in range(COMMAND_RETRIES - 1):
        try:
            return await decide_and_commit()
        except store.ConcurrencyError:
            continue
    return await decide_and_commit()


async def _account(uow: UnitOfWork, account_id: str) -> m.AccountView:
    view = await uow.account_view(account_id)
    if view is None:
        raise NotFound(f"account {account_id} not found")
    return view


def _key_view(state: State | None, key_id: str, uow: UnitOfWork) -> m.KeyView:
    return domain.key_view(domain.visible_key(state, key_id, None), uow.now)
