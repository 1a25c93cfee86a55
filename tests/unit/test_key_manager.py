"""The owners' key manager: the keys service's answers as the API's, and what it tells the edge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aitbc_api.owners.key_manager import KeyManager, OwnerServices, send
from aitbc_contracts import messages as m
from aitbc_gate.auth import Principal
from aitbc_gate.errors import ApiError
from aitbc_runtime.commands import CommandFailed

KEY_ID = "key_0123456789abcdef"
VIEW = m.KeyView(
    key_id=KEY_ID,
    account_id="acc_1",
    name="ci",
    kind="standard",
    hint="aitbc_ab",
    status="revoked",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


class Commands:
    """Stands in for aitbc_runtime.commands.KeysCommands: one outcome for every command."""

    def __init__(self, outcome: m.Reply | CommandFailed) -> None:
        self.outcome = outcome
        self.sent: list[m.AnyCommand] = []

    async def send(self, command: m.AnyCommand) -> m.Reply:
        self.sent.append(command)
        if isinstance(self.outcome, CommandFailed):
            raise self.outcome
        return self.outcome


async def test_no_answer_is_503_and_a_refusal_is_its_own_error() -> None:
    command = m.GetKey(account_id="acc_1", key_id=KEY_ID)
    with pytest.raises(ApiError) as unanswered:
        await send(Commands(CommandFailed("timeout", "too slow")), command)  # type: ignore[arg-type]
    assert (unanswered.value.status, unanswered.value.code) == (503, m.Code.SERVICE_UNAVAILABLE)
    assert unanswered.value.message == "The keys service is unavailable; try again shortly"
    refused = Commands(m.Rejected(m.Code.NOT_FOUND, "No such API key"))
    with pytest.raises(ApiError) as not_found:
        await send(refused, command)  # type: ignore[arg-type]
    assert (not_found.value.status, not_found.value.code) == (404, m.Code.NOT_FOUND)


async def test_a_revocation_is_sent_as_the_caller_and_forgotten_here_at_once() -> None:
    commands, forgotten = Commands(VIEW), []
    services = OwnerServices(commands, None, forgotten.append, {"free": 60})  # type: ignore[arg-type]
    master = "key_master000000000"
    caller = Principal(master, "acc_1", "master", "free", None)
    manager = KeyManager(services, caller, "req-1")
    revoked = await manager.revoke_key(KEY_ID, "leaked")
    assert revoked.status == "revoked" and forgotten == [KEY_ID]
    (sent,) = commands.sent
    assert isinstance(sent, m.RevokeKey)
    assert (sent.account_id, sent.actor, sent.request_id) == (
        "acc_1",
        "key_master000000000",
        "req-1",
    )
    assert manager.plan_limit == 60
    with pytest.raises(ApiError) as malformed:  # never sent: no such id can exist
        await manager.get_key("not-a-key-id")
    assert malformed.value.status == 404 and len(commands.sent) == 1
