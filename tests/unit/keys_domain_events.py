"""Events and commands of the keys domain tests, with what they usually are, so that a test
names only what it is about (tests/unit/test_keys_domain*.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from aitbc_contracts.events import AccountCreated, KeyCreated, KeyRevoked
from aitbc_contracts.messages import CreateKey, RegenerateKey, RevokeKey

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
OWNER = "key_master"
_ids = itertools.count(1)


def new_id() -> str:
    return f"evt_{next(_ids)}"


def envelope(stream: str, version: int, account: str, at: datetime = T0) -> dict[str, Any]:
    """What every event carries: a new id, its stream and version, its account, its time."""
    return {
        "event_id": new_id(),
        "stream_id": stream,
        "version": version,
        "account_id": account,
        "occurred_at": at,
    }


def account_created(account: str = "acc_1", plan: str = "free") -> AccountCreated:
    return AccountCreated(**envelope(account, 1, account), name="Ada", plan=plan)


def key_created(
    key: str = "k1", account: str = "acc_1", kind: str = "standard", secret: str = H1
) -> KeyCreated:
    return KeyCreated(
        **envelope(key, 1, account),
        key_id=key,
        name=key,
        kind=kind,
        secret_hash=secret,
        hint="aitbc_1111",
    )


def revoked(key: str = "k1", version: int = 2, account: str = "acc_1") -> KeyRevoked:
    return KeyRevoked(**envelope(key, version, account, T0 + timedelta(minutes=1)), key_id=key)


def revoke(key: str = "k1", account: str | None = "acc_1", actor: str = OWNER) -> RevokeKey:
    return RevokeKey(key_id=key, account_id=account, actor=actor, request_id="req-1")


def regenerate(
    key: str = "k1", account: str | None = "acc_1", grace: int = 0, secret: str = H2
) -> RegenerateKey:
    return RegenerateKey(
        key_id=key,
        account_id=account,
        secret_hash=secret,
        hint="aitbc_2222",
        grace_seconds=grace,
        actor=OWNER,
    )


def create_command(**overrides: object) -> CreateKey:
    fields: dict[str, object] = {
        "account_id": "acc_1",
        "name": "  ci  ",
        "secret_hash": H2,
        "hint": "aitbc_2222",
        "actor": OWNER,
    }
    fields.update(overrides)
    return CreateKey(**fields)  # type: ignore[arg-type]
