"""Histories of key events for the table every view is checked against (tests/key_views.py):
written by hand for the cases that once went wrong, and generated at random from mostly valid
commands, each built the way the keys service appends (its domain decisions)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent, KeyCreated, KeyRevoked, PlanChanged
from aitbc_contracts.keys import KeyState, State
from aitbc_contracts.powers import Power
from aitbc_keys import domain
from tests.key_views import Delivery, states_of

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
H = [f"{i:x}" * 64 for i in range(1, 10)]  # secret hashes


class Log:
    """Builds a history the way the keys service would append it (domain decisions), plus
    the odd things a log can hold all the same (streams of unknown keys, redeliveries)."""

    def __init__(self) -> None:
        self.delivery: Delivery = []
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"evt_{next(self._ids)}"

    def state(self, stream_id: str) -> State | None:
        return states_of(self.delivery).get(stream_id)

    def add(self, *events: AnyEvent) -> None:
        for event in events:
            self.delivery.append((event, len({p for _, p in self.delivery}) + 1))

    def redeliver(self, index: int) -> None:
        self.delivery.append(self.delivery[index])

    def account(
        self, account_id: str, plan: str = "free", master: str = H[0], at: datetime = T0
    ) -> None:
        command = m.CreateAccount(master_key_hash=master, master_key_hint="aitbc_mast", plan=plan)  # type: ignore[arg-type]
        self.add(
            *domain.create_account(command, at, account_id, f"{account_id}_master", self.new_id)
        )

    def key(
        self, account_id: str, key_id: str, secret: str, at: datetime = T0, **fields: Any
    ) -> None:
        command = m.CreateKey(
            account_id=account_id, name=key_id, secret_hash=secret, hint="aitbc_k", **fields
        )
        self.add(*domain.create_key(self.state(account_id), command, at, key_id, self.new_id))

    def plan(self, account_id: str, plan: str, at: datetime = T0) -> None:
        command = m.SetPlan(account_id=account_id, plan=plan)  # type: ignore[arg-type]
        self.add(*domain.set_plan(self.state(account_id), command, at, self.new_id))

    def revoke(self, key_id: str, at: datetime = T0) -> None:
        command = m.RevokeKey(account_id=None, key_id=key_id, reason="test")
        self.add(*domain.revoke_key(self.state(key_id), command, at, self.new_id, Power.OPERATOR))

    def regenerate(self, key_id: str, secret: str, grace: int, at: datetime = T0) -> None:
        command = m.RegenerateKey(
            account_id=None, key_id=key_id, secret_hash=secret, hint="aitbc_r", grace_seconds=grace
        )
        self.add(*domain.regenerate_key(self.state(key_id), command, at, self.new_id))

    def data_plane(self, account_id: str, data_plane: bool, at: datetime = T0) -> None:
        command = m.SetMasterKeyDataPlane(account_id=account_id, data_plane=data_plane)
        state = self.state(account_id)
        self.add(*domain.set_master_key_data_plane(state, command, at, self.new_id))

    def new_master(self, account_id: str, key_id: str, secret: str, at: datetime = T0) -> None:
        command = m.ReplaceMasterKey(account_id=account_id, secret_hash=secret, hint="aitbc_n")
        keys = [s for s in states_of(self.delivery).values() if isinstance(s, KeyState)]
        state = self.state(account_id)
        self.add(*domain.replace_master_key(state, keys, command, at, key_id, self.new_id))


def _minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def _grace_then_regenerate() -> Delivery:
    """Grace, then regenerated again: the grace of the first secret ends with it."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    log.regenerate("key_1", H[2], grace=3600, at=_minutes(1))
    log.regenerate("key_1", H[3], grace=0, at=_minutes(2))
    return log.delivery


def _grace_twice_then_an_old_secret_again() -> Delivery:
    """Grace, then regenerated with grace again; then back to the first secret."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    log.regenerate("key_1", H[2], grace=3600, at=_minutes(1))
    log.regenerate("key_1", H[3], grace=600, at=_minutes(2))
    log.regenerate("key_1", H[1], grace=300, at=_minutes(3))
    return log.delivery


def _new_master_keys() -> Delivery:
    """Account recovery: a new master key, the old one revoked, then again."""
    log = Log()
    log.account("acc_a", plan="pro")
    log.key("acc_a", "key_1", H[1])
    log.new_master("acc_a", "acc_a_master_2", H[2], at=_minutes(1))
    log.plan("acc_a", "enterprise", at=_minutes(2))
    log.new_master("acc_a", "acc_a_master_3", H[3], at=_minutes(3))
    return log.delivery


def _master_key_data_plane() -> Delivery:
    """The master key kept to managing keys, across plan changes, then let out again."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    log.data_plane("acc_a", False, at=_minutes(1))
    log.plan("acc_a", "pro", at=_minutes(2))
    log.key("acc_a", "key_2", H[2], at=_minutes(3))
    log.new_master("acc_a", "acc_a_master_2", H[3], at=_minutes(4))
    log.data_plane("acc_a", False, at=_minutes(5))  # as it is: no event
    log.account("acc_b", master=H[4])
    log.data_plane("acc_b", False, at=_minutes(6))
    log.data_plane("acc_b", True, at=_minutes(7))
    return log.delivery


def _revoke_after_expiry() -> Delivery:
    """A key revoked after it expired."""
    log = Log()
    log.account("acc_a", plan="pro")
    log.key("acc_a", "key_1", H[1], expires_at=_minutes(5), rate_limit=7)
    log.revoke("key_1", at=_minutes(10))
    return log.delivery


def _plan_changes() -> Delivery:
    """Plan changes reach every key of the account, the master key too."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    log.key("acc_a", "key_2", H[2], rate_limit=100)
    log.plan("acc_a", "pro")
    log.plan("acc_a", "enterprise")
    log.account("acc_b", master=H[3])
    return log.delivery


def _events_of_unknown_streams() -> Delivery:
    """Streams the log holds with no creation: the store does not judge."""
    log = Log()
    log.account("acc_a")
    base = {"occurred_at": T0, "version": 1}
    log.add(
        KeyRevoked(event_id="g1", stream_id="key_ghost", account_id="acc_a", key_id="key_ghost",
                   **base),  # type: ignore[arg-type]
        PlanChanged(event_id="g2", stream_id="acc_ghost", account_id="acc_ghost", plan="pro",
                    previous_plan="free", **base),  # type: ignore[arg-type]
        KeyCreated(event_id="g3", stream_id="key_orphan", account_id="acc_nobody",
                   key_id="key_orphan", name="o", kind="standard", secret_hash=H[4],
                   hint="aitbc_o", **base),  # type: ignore[arg-type]
    )  # fmt: skip
    return log.delivery


def _duplicate_delivery() -> Delivery:
    """The stream brings events again, some after later ones."""
    log = Log()
    log.account("acc_a")
    log.key("acc_a", "key_1", H[1])
    log.revoke("key_1", at=_minutes(1))
    log.plan("acc_a", "pro")
    log.redeliver(2)  # key_1's creation, after its revocation
    log.redeliver(0)  # the account's creation, after its plan change
    log.redeliver(3)
    return log.delivery


HAND_WRITTEN = (
    ("grace then regenerate", _grace_then_regenerate),
    ("grace twice, then an old secret again", _grace_twice_then_an_old_secret_again),
    ("new master keys", _new_master_keys),
    ("master key data plane", _master_key_data_plane),
    ("revoke after expiry", _revoke_after_expiry),
    ("plan changes", _plan_changes),
    ("events of unknown streams", _events_of_unknown_streams),
    ("duplicate delivery", _duplicate_delivery),
)


def hand_written() -> Iterator[tuple[str, Delivery]]:
    """The cases that once went wrong, each by its name."""
    for name, history in HAND_WRITTEN:
        yield name, history()


def generated(count: int, seed: int = 15) -> Iterator[tuple[str, Delivery]]:
    """Random histories of mostly valid commands (refusals are skipped), some redelivered."""
    rng = random.Random(seed)
    for n in range(count):
        log = Log()
        secrets = iter(f"{n:02x}{i:062x}" for i in range(1, 10**6))
        accounts: list[str] = []
        keys: list[str] = []
        for step in range(rng.randrange(3, 25)):
            at = _minutes(step * rng.choice([0.5, 2, 20]))
            roll = rng.random()
            try:
                if not accounts or roll < 0.15:
                    accounts.append(f"acc_{len(accounts)}")
                    log.account(accounts[-1], rng.choice(["free", "pro"]), next(secrets), at)
                    keys.append(f"{accounts[-1]}_master")
                elif roll < 0.25:
                    log.plan(rng.choice(accounts), rng.choice(["free", "pro", "enterprise"]), at)
                elif roll < 0.55:
                    keys.append(f"key_{len(keys)}")
                    expires = rng.choice([None, at + timedelta(minutes=rng.choice([1, 30, 600]))])
                    log.key(rng.choice(accounts), keys[-1], next(secrets), at, expires_at=expires)
                elif roll < 0.7:
                    log.revoke(rng.choice(keys), at)
                elif roll < 0.95:
                    log.regenerate(rng.choice(keys), next(secrets), rng.choice([0, 60, 3600]), at)
                else:
                    log.redeliver(rng.randrange(len(log.delivery)))
            except domain.KeysError:
                pass  # refused: a history has those, and they append nothing
        yield f"generated {n}", log.delivery


def times_for(delivery: Delivery) -> list[datetime]:
    """The instants to ask at: each event's, a moment before and after each end of a grace or
    of a key's life, and long after."""
    ends = {T0, _minutes(60 * 24 * 30)}
    for event, _ in delivery:
        ends.add(event.occurred_at)
        for end in (
            getattr(event, "expires_at", None),
            getattr(event, "previous_valid_until", None),
        ):
            if end is not None:
                ends |= {end - timedelta(seconds=1), end, end + timedelta(seconds=1)}
    return sorted(ends)
