"""The `aitbc` command against a real keys service on a real nats-server, as an operator uses it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import nats
import pytest

from aitbc_contracts.keyformat import hint, is_well_formed
from aitbc_contracts.subjects import (
    partition_of,
    usage_batch_subject,
    usage_event_subject,
)
from aitbc_contracts.usage import UsageBatch
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_runtime.bus_access import BusAccess
from tests.e2e.stack import BIN, Stack
from tests.integration.usage.usage_records import account_on, event


def aitbc(operator: BusAccess, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: the bus and the credentials from the environment."""
    env = {**os.environ, "NATS_URL": operator.url, "NATS_CREDS": operator.creds}
    return subprocess.run(
        [str(BIN / "aitbc"), *args], env=env, capture_output=True, text=True, timeout=30
    )


class Keys:
    def __init__(self, nats: NatsServer, db: Path) -> None:
        self.nats = nats
        self.operator = nats.access()  # admin: the operator's CLI
        self.db = db


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """A nats-server and a keys service process of this module's own."""
    stack = Stack(tmp_path_factory.mktemp("cli"))
    try:
        stack.nats.start()
        stack.add_service("keys").start()  # until it answers on the bus
        yield Keys(stack.nats, stack.layout.data_dir / "keys.db")
    finally:
        stack.stop()


def create_account(keys: Keys, *args: str) -> dict[str, str]:
    done = aitbc(keys.operator, "accounts", "create", "--json", *args)
    assert done.returncode == 0, done.stderr
    account: dict[str, str] = json.loads(done.stdout)
    return account


def list_keys(keys: Keys, account_id: str) -> list[dict[str, str]]:
    done = aitbc(keys.operator, "keys", "list", "--account", account_id, "--json")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, str]] = json.loads(done.stdout)["keys"]
    return listed


def test_create_an_account_and_see_its_master_key_listed(keys: Keys) -> None:
    account = create_account(keys, "--plan", "pro", "--name", "Acme")
    assert account["plan"] == "pro" and account["name"] == "Acme"
    assert is_well_formed(account["master_key"])
    [master] = list_keys(keys, account["account_id"])
    assert master["key_id"] == account["master_key_id"]
    assert master["kind"] == "master" and master["status"] == "active"
    assert master["hint"] == hint(account["master_key"])
    # only its hash was sent: the plaintext is nowhere in the keys database
    assert account["master_key"].encode() not in keys.db.read_bytes()


def test_human_output(keys: Keys) -> None:
    created = aitbc(keys.operator, "accounts", "create", "--plan", "free")
    assert created.returncode == 0, created.stderr
    fields = dict(
        line.split(":", 1) for line in created.stdout.splitlines() if ":" in line and "  " in line
    )
    account_id, master_key = fields["account id"].strip(), fields["master key"].strip()
    assert is_well_formed(master_key)
    table = aitbc(keys.operator, "keys", "list", "--account", account_id)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.startswith("KEY ID") and "EXPIRES" in header
    assert "master" in row and "active" in row and hint(master_key) in row
    assert master_key not in table.stdout


def test_change_a_plan(keys: Keys) -> None:
    account = create_account(keys, "--plan", "free")
    done = aitbc(keys.operator, "accounts", "set-plan", account["account_id"], "enterprise")
    assert done.returncode == 0, done.stderr
    assert "enterprise" in done.stdout
    again = aitbc(keys.operator, "accounts", "set-plan", account["account_id"], "pro", "--json")
    assert json.loads(again.stdout)["plan"] == "pro"


def test_revoke_any_key_as_the_operator(keys: Keys) -> None:
    account = create_account(keys, "--plan", "free")
    done = aitbc(
        keys.operator, "keys", "revoke", account["master_key_id"], "--reason", "leaked", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "revoked"
    [master] = list_keys(keys, account["account_id"])
    assert master["status"] == "revoked"


def test_rejections_print_their_code_and_exit_1(keys: Keys) -> None:
    unknown_key = aitbc(keys.operator, "keys", "revoke", "key_0000000000000000")
    assert unknown_key.returncode == 1
    assert unknown_key.stderr.startswith("aitbc: NOT_FOUND: ")
    assert unknown_key.stdout == ""
    unknown_account = aitbc(keys.operator, "accounts", "set-plan", "acc_0000000000000000", "pro")
    assert unknown_account.returncode == 1
    assert unknown_account.stderr.startswith("aitbc: NOT_FOUND: ")


def test_events_verify_finds_nats_and_the_keys_database_as_just_up_places_them(
    keys: Keys,
) -> None:
    """NATS_PORT and DATA_DIR, as `just up` is given them: no NATS_URL, no DATABASE_URL, and
    no NATS_CREDS: the admin credentials `just up` made in DATA_DIR."""
    create_account(keys, "--plan", "free")
    env = {name: value for name, value in os.environ.items() if name not in UNSET}
    env |= {"NATS_PORT": str(keys.nats.port), "DATA_DIR": str(keys.db.parent)}
    done = subprocess.run(
        [str(BIN / "aitbc"), "events", "verify"], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().endswith("the key event log is intact\n")
    assert re.search(rb"^store: +[1-9][0-9]* events, intact", done.stdout, re.MULTILINE)


UNSET = ("NATS_URL", "DATABASE_URL", "NATS_CREDS")


def test_no_keys_service_is_one_clear_line(nats_server: NatsServer) -> None:
    done = aitbc(nats_server.access(), "keys", "list", "--account", "acc_1")
    assert done.returncode == 1
    assert (
        done.stderr == "aitbc: error: no keys service is answering on aitbc.keys.commands.read "
        "(is it running?)\n"
    )


def test_no_nats_is_one_clear_line(nats_server: NatsServer) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    done = aitbc(replace(nats_server.access(), url=url), "accounts", "create", "--plan", "free")
    assert done.returncode == 1
    assert done.stderr.startswith(f"aitbc: error: cannot reach NATS at {url}")
    assert len(done.stderr.splitlines()) == 1
    assert done.stdout == ""  # no master key was shown for an account that does not exist


def test_a_password_in_the_nats_url_is_never_shown(nats_server: NatsServer) -> None:
    port = free_port()
    url = f"nats://operator:s3cret-word@127.0.0.1:{port}"
    done = aitbc(replace(nats_server.access(), url=url), "accounts", "create", "--plan", "free")
    assert done.returncode == 1
    assert done.stderr.startswith("aitbc: error: cannot reach NATS at nats://operator:***@")
    assert "s3cret-word" not in done.stderr + done.stdout


def test_usage_tail_reads_batches_and_single_events_of_one_account(keys: Keys) -> None:
    mine = account_on(4)
    neighbour = account_on(4)  # in the same batches
    events = [event(mine, status=201), event(neighbour), event(mine, status=404)]

    async def publish() -> None:
        # An older edge's single event is beyond any role: the admin's account imports the
        # usage stream's subjects (the stream is the bus's from the start).
        nc = await nats.connect(**keys.operator.options())
        js = nc.jetstream()
        await js.publish(usage_event_subject(mine), msgspec.json.encode(event(mine)))
        batch = UsageBatch(events=events)
        await js.publish(usage_batch_subject(partition_of(mine)), msgspec.json.encode(batch))
        await nc.close()

    asyncio.run(publish())
    tail = aitbc(
        keys.operator, "usage", "tail", "--account", mine, "--from-start", "--count", "3", "--json"
    )
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [(x["account_id"], x["status"]) for x in lines] == [
        (mine, 200),
        (mine, 201),
        (mine, 404),
    ]
    assert {x["type"] for x in lines} == {"usage.request.v1"}
