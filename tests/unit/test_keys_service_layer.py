"""The keys service layer over a fake unit of work (events in a list): one function per
command, decided on the fold, retried when another writer won, answered from the fold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent, KeyCreated, KeyKind
from aitbc_contracts.keys import AccountState, KeyState, State, fold
from aitbc_contracts.powers import Power
from aitbc_keys import store
from aitbc_keys.domain import Forbidden, NotFound, TooManyKeys, ValidationError, fold_streams
from aitbc_keys.service_layer.handlers import COMMAND_RETRIES, handle

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
H1, H2 = "1" * 64, "2" * 64


class FakeUnitOfWork:
    """The log as a list; `conflicts` commits lose to another writer before one succeeds."""

    def __init__(self, now: datetime = T0, conflicts: int = 0, max_keys: int = 100) -> None:
        self.now = now
        self.log: list[AnyEvent] = []
        self.commits = 0
        self.conflicts = conflicts
        self.max_keys = max_keys
        self.loaded: list[str] = []  # the streams loaded, in order

    async def load(self, stream_id: str) -> list[AnyEvent]:
        self.loaded.append(stream_id)
        return [e for e in self.log if e.stream_id == stream_id]

    def known_kind(self, key_id: str) -> KeyKind | None:
        """As the facts index knows them: every key's kind, from its creation."""
        return next(
            (e.kind for e in self.log if isinstance(e, KeyCreated) and e.key_id == key_id), None
        )

    async def live_keys(self, account_id: str) -> int:
        states: dict[str, State] = {}
        fold_streams(states, await self.load_account(account_id))
        keys = [s for s in states.values() if isinstance(s, KeyState)]
        return sum(key.status(self.now) == "active" for key in keys)

    async def load_account(self, account_id: str) -> list[AnyEvent]:
        return [e for e in self.log if e.account_id == account_id]

    async def account_view(self, account_id: str) -> m.AccountView | None:
        account = fold(await self.load(account_id))
        if not isinstance(account, AccountState):
            return None
        master = next(e.stream_id for e in self.log if getattr(e, "kind", "") == "master")
        return m.AccountView(account_id, account.name, account.plan, master, account.created_at)

    async def rebuild_read_model(self) -> int:
        return len(self.log)

    async def commit(self, batches: Sequence[store.Batch]) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise store.ConcurrencyError("another writer won")
        for stream_id, expected, new in batches:
            assert len(await self.load(stream_id)) == expected
            self.log.extend(new)
        self.commits += 1

    async def update(
        self, stream_id: str, decide: Callable[[list[AnyEvent]], list[AnyEvent]]
    ) -> tuple[list[AnyEvent], list[AnyEvent]]:
        """As the database's: read and appended in one go (a collision still loses)."""
        history = await self.load(stream_id)
        new = decide(history)
        if new:
            await self.commit([(stream_id, len(history), new)])
        return history, new


async def sign_up(uow: FakeUnitOfWork) -> m.AccountView:
    reply = await handle(
        m.CreateAccount(master_key_hash=H1, master_key_hint="aitbc_1"), uow, Power.OPERATOR
    )
    assert isinstance(reply, m.AccountView)
    return reply


async def test_a_key_is_created_listed_and_revoked_from_the_fold() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    create = m.CreateKey(
        account_id=account.account_id, name="ci", secret_hash=H2, hint="aitbc_2",
        expires_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    key = await handle(create, uow, Power.OPERATOR)
    assert isinstance(key, m.KeyView) and key.status == "active"
    revoked = await handle(m.RevokeKey(account_id=None, key_id=key.key_id), uow, Power.OPERATOR)
    assert isinstance(revoked, m.KeyView) and revoked.status == "revoked"
    uow.now = T0 + timedelta(hours=2)
    listed = await handle(m.ListKeys(account_id=account.account_id), uow, Power.OPERATOR)
    assert isinstance(listed, m.KeyList)
    seen = sorted((k.kind, k.status) for k in listed.keys)  # both made at T0: ids decide
    assert seen == [("master", "active"), ("standard", "revoked")]


async def test_a_change_that_loses_a_race_is_decided_again() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    uow.conflicts = COMMAND_RETRIES - 1
    reply = await handle(m.SetPlan(account_id=account.account_id, plan="pro"), uow, Power.OPERATOR)
    assert isinstance(reply, m.AccountView) and reply.plan == "pro"
    uow.conflicts = COMMAND_RETRIES
    with pytest.raises(store.ConcurrencyError):
        await handle(
            m.SetPlan(account_id=account.account_id, plan="enterprise"), uow, Power.OPERATOR
        )


async def test_nothing_to_change_commits_nothing() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    await handle(
        m.SetPlan(account_id=account.account_id, plan="free"), uow, Power.OPERATOR
    )  # already free
    revoke = m.RevokeKey(account_id=None, key_id=account.master_key_id)
    await handle(revoke, uow, Power.OPERATOR)
    await handle(revoke, uow, Power.OPERATOR)  # revoking twice
    assert uow.commits == 2  # the sign-up and the first revocation


async def test_refusals_are_the_domains() -> None:
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    with pytest.raises(NotFound):
        await handle(m.ListKeys(account_id="acc_nobody"), uow, Power.OPERATOR)
    with pytest.raises(Forbidden):
        await handle(m.RebuildProjections(actor=account.master_key_id), uow, Power.OWNER)
    with pytest.raises(ValidationError):
        await handle(
            m.CreateKey(account_id=account.account_id, name=" ", secret_hash=H2, hint="h"),
            uow,
            Power.OPERATOR,
        )
    assert uow.commits == 1


async def test_an_account_makes_keys_up_to_its_cap_of_live_ones() -> None:
    uow = FakeUnitOfWork(max_keys=3)  # the master key and two more
    account = await sign_up(uow)
    made = []
    for n in range(2):
        secret = f"{n + 3}" * 64
        create = m.CreateKey(
            account_id=account.account_id, name="k", secret_hash=secret, hint="aitbc_k"
        )
        made.append(await handle(create, uow, Power.OPERATOR))
    create = m.CreateKey(account_id=account.account_id, name="k", secret_hash="9" * 64, hint="k")
    with pytest.raises(TooManyKeys):
        await handle(create, uow, Power.OPERATOR)
    key = made[0]
    assert isinstance(key, m.KeyView)
    await handle(m.RevokeKey(account_id=None, key_id=key.key_id), uow, Power.OPERATOR)
    assert isinstance(await handle(create, uow, Power.OPERATOR), m.KeyView)  # room again


async def test_an_owners_command_reads_the_acting_keys_stream_only_for_a_standard_key() -> None:
    """A master key's kind is known without reading its stream (a kind never changes); a
    standard key's stream is read, since what it may do is its stream's to say."""
    uow = FakeUnitOfWork()
    account = await sign_up(uow)
    master, account_id = account.master_key_id, account.account_id
    create = m.CreateKey(account_id=account_id, name="ci", secret_hash=H2, hint="aitbc_2")
    key = await handle(create, uow, Power.OPERATOR)
    assert isinstance(key, m.KeyView)
    uow.loaded.clear()
    revoke = m.RevokeKey(account_id=account_id, key_id=key.key_id, actor=master)
    await handle(revoke, uow, Power.OWNER)
    assert master not in uow.loaded and key.key_id in uow.loaded
    uow.loaded.clear()
    as_key = m.RevokeKey(account_id=account_id, key_id=master, actor=key.key_id)
    with pytest.raises(Forbidden):  # revoked, and never a root key: it manages nothing
        await handle(as_key, uow, Power.OWNER)
    assert uow.loaded[0] == key.key_id
