"""The operator's audit tools against a running keys service: replay, point in time, verify."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client

from aitbc_cli.main import run
from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEY_EVENTS_STREAM, KEYS_OPERATOR_COMMANDS, KEYS_OWNER_COMMANDS
from aitbc_infra.bus_stores import READ_ACCOUNT
from aitbc_infra.bus_streams import jetstream
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.main import Service, running_service
from aitbc_keys.schema import events
from aitbc_runtime.bus_access import BusAccess
from tests.bus import cli_options, keys_settings


@pytest.fixture
async def service(database_url: str, own_nats: NatsServer) -> AsyncIterator[Service]:
    settings = keys_settings(own_nats, database_url=database_url)
    async with running_service(settings, relay_poll_interval=30) as svc:
        yield svc


@pytest.fixture
def auditor(own_nats: NatsServer) -> BusAccess:
    """The audit tools' role: read-only."""
    return own_nats.access("auditor")


@pytest.fixture
async def nc(service: Service, own_nats: NatsServer) -> AsyncIterator[Client]:
    # An operator: it sends operator commands and deletes messages from the stream.
    client = await nats.connect(**own_nats.options())
    yield client
    await client.close()


async def ask(nc: Client, command: m.AnyCommand, subject: str = KEYS_OPERATOR_COMMANDS) -> m.Reply:
    reply = await nc.request(subject, m.encoder.encode(command), timeout=10)
    return m.reply_decoder.decode(reply.data)


def secret() -> dict[str, str]:
    key = keyformat.generate_key()
    return {"secret_hash": keyformat.hash_key(key), "hint": keyformat.hint(key)}


async def relayed(service: Service, nc: Client) -> int:
    """Waits until the auditor's mirror of the stream holds every committed event; returns how
    many there are."""
    want = await store.last_position(service.engine)
    js = jetstream(nc, READ_ACCOUNT)  # the admin reaches it through its account's imports
    for _ in range(500):
        info = await js.stream_info(KEY_EVENTS_STREAM)
        if info.state.last_seq >= want:
            return want
        await asyncio.sleep(0.01)
    raise AssertionError(f"the relay never published {want} events")


async def aitbc(auditor: BusAccess, *argv: str) -> tuple[int, str, str]:
    """The `aitbc` command, in a thread of this process (it runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()
    full = [*cli_options(auditor), *argv]
    code = await asyncio.to_thread(run, full, None, out, err)
    return code, out.getvalue(), err.getvalue()


async def a_key_with_a_history(nc: Client) -> tuple[m.AccountView, str, list[datetime]]:
    """A key created and regenerated twice by the master key, then revoked by the operator."""
    master = secret()
    account = await ask(
        nc, m.CreateAccount(master_key_hash=master["secret_hash"], master_key_hint=master["hint"])
    )
    assert isinstance(account, m.AccountView)
    owner = {"actor": account.master_key_id}
    created = await ask(
        nc,
        m.CreateKey(
            account_id=account.account_id, name="ci", request_id="r-1", **owner, **secret()
        ),
    )
    assert isinstance(created, m.KeyView)
    key_id, times = created.key_id, [datetime.now(UTC)]
    for n in (2, 3):
        regen = m.RegenerateKey(
            account_id=account.account_id, key_id=key_id, request_id=f"r-{n}", **owner, **secret()
        )
        assert isinstance(await ask(nc, regen), m.KeyView)
        times.append(datetime.now(UTC))
    revoke = m.RevokeKey(account_id=None, key_id=key_id, request_id="r-4", reason="leaked")
    assert isinstance(await ask(nc, revoke), m.KeyView)
    return account, key_id, times


async def test_replay_of_a_key_prints_its_four_events_in_order_with_their_actors(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    account, key_id, _ = await a_key_with_a_history(nc)
    await relayed(service, nc)

    code, out, err = await aitbc(auditor, "events", "replay", "--key", key_id, "--format", "jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["actor"], e["request_id"]) for e in lines] == [
        ("key.created.v1", account.master_key_id, "r-1"),
        ("key.regenerated.v1", account.master_key_id, "r-2"),
        ("key.regenerated.v1", account.master_key_id, "r-3"),
        ("key.revoked.v1", "operator", "r-4"),
    ]
    assert [e["version"] for e in lines] == [1, 2, 3, 4]
    # Exactly the stored bytes: jsonl is the event as published.
    stored = {r.event_id: r.data for r in await store.records_after(service.engine, 0, 100)}
    assert [stored[e["event_id"]] for e in lines] == [line.encode() for line in out.splitlines()]

    code, out, err = await aitbc(auditor, "events", "replay", "--key", key_id)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["TIME", "TYPE", "STREAM", "ACCOUNT", "ACTOR", "REQUEST", "ID"]
    assert [row.split()[2:7] for row in rows] == [
        [typ, key_id, account.account_id, actor, rid]
        for typ, actor, rid in [
            ("key.created.v1", account.master_key_id, "r-1"),
            ("key.regenerated.v1", account.master_key_id, "r-2"),
            ("key.regenerated.v1", account.master_key_id, "r-3"),
            ("key.revoked.v1", "operator", "r-4"),
        ]
    ]

    code, out, _ = await aitbc(
        auditor, "events", "replay", "--account", account.account_id, "--json"
    )
    assert [json.loads(line)["type"] for line in out.splitlines()] == [
        "account.created.v1",
        "key.created.v1",  # the master key
        "key.created.v1",
        "key.regenerated.v1",
        "key.regenerated.v1",
        "key.revoked.v1",
    ]
    late = (
        await aitbc(auditor, "events", "replay", "--key", key_id, "--json", "--since", "2999-01-01")
    )[1]
    assert late == ""


async def test_keys_show_folds_a_key_up_to_a_point_in_time(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    account, key_id, times = await a_key_with_a_history(nc)
    await relayed(service, nc)

    async def show(at: datetime) -> dict[str, object]:
        code, out, err = await aitbc(
            auditor, "keys", "show", key_id, "--at", at.isoformat(), "--json"
        )
        assert code == 0, err
        shown: dict[str, object] = json.loads(out)
        return shown

    first = await show(times[0])
    assert (first["status"], first["plan"], first["regenerations"]) == ("active", "free", 0)
    assert first["created_by"] == account.master_key_id and first["revoked_at"] is None
    second = await show(times[2])
    assert (second["status"], second["regenerations"]) == ("active", 2)
    assert second["regenerated_by"] == account.master_key_id
    last = await show(datetime.now(UTC))
    assert (last["status"], last["revoked_by"], last["reason"]) == ("revoked", "operator", "leaked")

    code, _, err = await aitbc(auditor, "keys", "show", key_id, "--at", "2000-01-01")
    assert code == 1 and "did not exist" in err


async def test_verify_passes_on_an_untouched_log(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    await a_key_with_a_history(nc)
    count = await relayed(service, nc)
    code, out, err = await aitbc(
        auditor, "events", "verify", "--database-url", service.settings.database_url
    )
    assert code == 0, out + err
    assert f"store:  {count} events, intact" in out and f"stream: {count} events, intact" in out
    assert out.endswith("the key event log is intact\n")


async def verify(service: Service, auditor: BusAccess) -> tuple[int, dict[str, object]]:
    code, out, err = await aitbc(
        auditor, "events", "verify", "--json", "--database-url", service.settings.database_url
    )
    assert not err, err
    report: dict[str, object] = json.loads(out)
    return code, report


def breaks(report: dict[str, object]) -> dict[str, tuple[object, ...] | None]:
    found: dict[str, tuple[object, ...] | None] = {}
    for witness in report["witnesses"]:  # type: ignore[attr-defined]
        brk = witness["break"]
        found[witness["name"]] = brk and (brk["problem"], brk["position"], brk["event_id"])
    differ = report["differ"]
    found["differ"] = differ and (differ["position"], differ["event_id"])  # type: ignore[index]
    return found


async def test_verify_names_an_event_edited_in_the_store(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    await a_key_with_a_history(nc)
    await relayed(service, nc)
    target = (await store.records_after(service.engine, 3, 1))[0]
    forged = target.data.decode().replace('"r-2"', '"r-x"')  # who asked: rewritten
    assert forged != target.data.decode()
    async with service.engine.begin() as conn:
        await conn.execute(
            events.update().where(events.c.position == target.position).values(data=forged)
        )
    code, report = await verify(service, auditor)
    assert code == 1 and report["intact"] is False
    assert breaks(report) == {
        "store": ("altered", target.position, target.event_id),
        "stream": None,
        "differ": (target.position, target.event_id),
    }


async def test_verify_names_a_message_deleted_from_the_stream(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    await a_key_with_a_history(nc)
    await relayed(service, nc)
    target = (await store.records_after(service.engine, 2, 1))[0]
    assert await jetstream(nc, READ_ACCOUNT).delete_msg(KEY_EVENTS_STREAM, target.position)
    code, report = await verify(service, auditor)
    assert code == 1
    assert breaks(report) == {
        "store": None,
        "stream": ("removed", target.position, ""),
        "differ": (target.position, target.event_id),
    }


async def test_verify_tells_a_stream_that_lost_its_tail_from_one_that_lags(
    service: Service, nc: Client, auditor: BusAccess
) -> None:
    await a_key_with_a_history(nc)
    last = await relayed(service, nc)
    [record] = await store.records_after(service.engine, last - 1, 1)
    assert await jetstream(nc, READ_ACCOUNT).delete_msg(KEY_EVENTS_STREAM, last)
    code, report = await verify(service, auditor)
    assert code == 1
    assert breaks(report) == {
        "store": None,
        "stream": ("removed", last, ""),
        "differ": (last, record.event_id),
    }


async def test_a_keys_events_are_listed_for_its_account_only_and_rebuilds_for_operators_only(
    service: Service, nc: Client
) -> None:
    account, key_id, _ = await a_key_with_a_history(nc)
    mine = await ask(nc, m.ListKeyEvents(account_id=account.account_id, key_id=key_id))
    assert isinstance(mine, m.KeyHistory)
    assert [(e.version, e.actor) for e in mine.events] == [
        (1, account.master_key_id),
        (2, account.master_key_id),
        (3, account.master_key_id),
        (4, "operator"),
    ]
    theirs = await ask(nc, m.ListKeyEvents(account_id="acc_0000000000000000", key_id=key_id))
    assert isinstance(theirs, m.Rejected) and theirs.code == m.Code.NOT_FOUND
    owner = await ask(nc, m.RebuildProjections(actor=account.master_key_id), KEYS_OWNER_COMMANDS)
    assert isinstance(owner, m.Rejected) and owner.code == m.Code.FORBIDDEN
    operator = await ask(nc, m.RebuildProjections())
    assert operator == m.Rebuilt(events=await store.last_position(service.engine))
