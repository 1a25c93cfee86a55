"""The usage service's plan book: a view of the key event log, with lookups for the rest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aitbc_contracts import messages as m
from aitbc_contracts.events import AccountCreated, KeyCreated, Plan, PlanChanged
from aitbc_contracts.keys import AccountState, KeyEventView, fold
from aitbc_contracts.subjects import KEYS_READ_COMMANDS
from aitbc_runtime.commands import KeysCommands
from aitbc_runtime.key_events import KeyEventReader
from aitbc_usage import plans
from aitbc_usage.plans import PlanBook, keys_lookup
from tests.key_messages import Chained
from tests.unit.test_cli_audit import a_history

T0 = datetime(2026, 1, 2, tzinfo=UTC)
BASE: dict[str, Any] = {"account_id": "acc_1", "stream_id": "acc_1", "occurred_at": T0}


def created(plan: Plan = "free", account: str = "acc_1") -> AccountCreated:
    return AccountCreated(
        event_id="e1",
        stream_id=account,
        account_id=account,
        version=1,
        occurred_at=T0,
        name="",
        plan=plan,
    )


def changed(plan: Plan, previous: Plan = "free") -> PlanChanged:
    return PlanChanged(event_id="e2", version=2, plan=plan, previous_plan=previous, **BASE)


async def nobody(_: str) -> str | None:
    raise AssertionError("the keys service was asked")


def test_it_is_a_key_event_view_that_learns_plans_from_account_events() -> None:
    book: KeyEventView = PlanBook(nobody)
    assert isinstance(book, PlanBook)
    book.process(created("free"), 1)
    assert book.known("acc_1") == "free"
    key = KeyCreated(
        event_id="e3",
        version=1,
        key_id="key_1",
        name="",
        kind="standard",
        secret_hash="a" * 64,
        hint="aitbc_aaaa",
        **{**BASE, "stream_id": "key_1"},
    )
    book.process(key, 2)  # no plan in it: nothing changes
    book.process(changed("pro"), 3)
    assert book.known("acc_1") == "pro"
    book.reset()  # events may have passed unseen: ask again
    assert book.known("acc_1") is None


async def test_a_plan_change_of_an_account_it_never_saw_created_takes_effect() -> None:
    book = PlanBook(nobody)
    book.process(changed("enterprise", previous="pro"), 7)
    assert await book.resolve("acc_1") == "enterprise"


def test_the_reader_gives_it_the_events_of_the_stream_as_published() -> None:
    book = PlanBook(nobody)
    reader = KeyEventReader(None, [book], "test")  # type: ignore[arg-type]  # not started
    reader.receive(*Chained(4, "0" * 64).message(changed("pro")))
    reader.receive(b'{"type": "account.plan_changed.v1", "account_id": "acc_2", "plan": "pro"}', {})
    assert book.plans == {"acc_1": "pro"}  # the partial message is refused, not half-read
    assert reader.refused.total() == 1


async def test_plan_events_win_over_a_racing_lookup() -> None:
    gate = asyncio.Event()

    async def slow_lookup(_: str) -> str | None:
        await gate.wait()
        return "free"  # what the keys service said before the change

    book = PlanBook(slow_lookup)
    pending = asyncio.ensure_future(book.resolve("acc_1"))
    await asyncio.sleep(0)
    book.process(changed("pro"), 2)
    gate.set()
    assert await pending == "pro" and book.known("acc_1") == "pro"


async def test_concurrent_misses_ask_once() -> None:
    calls = []

    async def lookup(account_id: str) -> str | None:
        calls.append(account_id)
        await asyncio.sleep(0.01)
        return "pro"

    book = PlanBook(lookup)
    assert await asyncio.gather(*(book.resolve("acc_1") for _ in range(20))) == ["pro"] * 20
    assert calls == ["acc_1"]


async def test_an_unknown_account_is_not_asked_about_again_at_once() -> None:
    calls = []

    async def lookup(account_id: str) -> str | None:
        calls.append(account_id)
        return None

    book = PlanBook(lookup)
    assert await book.resolve("acc_x") is None
    assert await book.resolve("acc_x") is None
    assert calls == ["acc_x"]
    book.process(created("pro", account="acc_x"), 9)
    assert await book.resolve("acc_x") == "pro"  # its creation ends the wait


async def test_made_up_accounts_are_not_remembered_for_ever(monkeypatch: Any) -> None:
    """Every account asked about and not found is remembered for UNKNOWN_TTL. Each batch of
    decisions may name thousands never seen (whoever holds the edge's credentials chooses
    them): those remembered once stayed in memory for good, however long ago they expired."""
    now = [1000.0]
    monkeypatch.setattr(plans.time, "monotonic", lambda: now[0])

    async def lookup(_: str) -> str | None:
        return None

    book = PlanBook(lookup)
    for round_ in range(10):
        for n in range(5_000):
            assert await book.resolve(f"acc_{round_}_{n}") is None
        now[0] += plans.UNKNOWN_TTL + 1  # the round's accounts are past their wait
    # Those past their wait are forgotten: never more than two rounds' worth kept
    assert len(book._unknown_until) <= 10_000


class FakeConnection:
    """Answers every request with one canned reply, and notes what was sent."""

    def __init__(self, reply: m.Reply) -> None:
        self.reply = reply
        self.sent: list[bytes] = []

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: object = None
    ) -> object:
        self.sent.append(payload)
        return type("Msg", (), {"data": m.encoder.encode(self.reply)})()


async def test_the_lookup_asks_the_keys_service_with_the_one_command_client() -> None:
    view = m.AccountView(
        account_id="acc_1", name="", plan="pro", created_at=T0, master_key_id="key_1"
    )
    found = FakeConnection(view)
    assert await keys_lookup(KeysCommands(found, 2.0, KEYS_READ_COMMANDS))("acc_1") == "pro"  # type: ignore[arg-type]
    assert m.command_decoder.decode(found.sent[0]) == m.GetAccount(
        account_id="acc_1", answer_within_ms=2000
    )
    missing = FakeConnection(m.Rejected(m.Code.NOT_FOUND, "no such account"))
    assert await keys_lookup(KeysCommands(missing, 2.0, KEYS_READ_COMMANDS))("acc_1") is None  # type: ignore[arg-type]


def test_its_plans_are_the_one_folds_at_every_point_of_a_history() -> None:
    events = a_history()  # an account on free, then pro, with a key's events between
    account_events = [event for event in events if event.stream_id == "acc_1"]
    book = PlanBook(nobody)
    for position, event in enumerate(sorted(events, key=lambda e: e.occurred_at), 1):
        book.process(event, position)
        state = fold(e for e in account_events if e.occurred_at <= event.occurred_at)
        assert isinstance(state, AccountState)
        assert book.known("acc_1") == state.plan
