"""Signed checkpoints on a real nats-server with the real roles: the keys service signs, stores
and publishes them as it runs; `aitbc events verify` (as the read-only auditor) finds an honest
log intact, and names the checkpoints a consistent rewrite of store and stream contradicts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_cli.main import run
from aitbc_contracts import checkpoints as wire
from aitbc_contracts.chain import GENESIS, link
from aitbc_contracts.events import decode_event, encode_event
from aitbc_contracts.subjects import (
    HASH_HEADER,
    KEY_CHECKPOINTS_STREAM,
    KEY_CHECKPOINTS_SUBJECTS,
    KEY_EVENTS_STREAM,
    POSITION_HEADER,
    key_event_subject,
)
from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.bus_streams import drop_mirrors, provision
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.main import Service, running_service
from aitbc_keys.outbox import stream_config
from aitbc_keys.schema import checkpoints, events
from aitbc_keys.settings import Settings
from aitbc_runtime.checkpoint_keys import CheckpointSigner, TrustedKey, new_signing_seed
from tests.bus_clients import connected
from tests.integration.keys.caller import Caller, new_account
from tests.key_stream import until_mirrored

EVERY_EVENTS = 4


def credentials(server: NatsServer) -> BusCredentials:
    assert server.credentials is not None
    return server.credentials


@asynccontextmanager
async def keys_service(server: NatsServer, database_url: str) -> AsyncIterator[Service]:
    """The keys service as `just up` runs it: its two roles, and the signing key's file."""
    settings = Settings(
        nats=server.access("keys"),
        nats_writer=server.access("keys-writer"),
        database_url=database_url,
        checkpoint_key_file=str(credentials(server).checkpoint_key),
        checkpoint_every_events=EVERY_EVENTS,
        checkpoint_every_seconds=0.3,
    )
    async with running_service(settings, relay_poll_interval=30) as svc:
        yield svc


async def published(nc: Client, position: int, timeout: float = 10.0) -> wire.Checkpoint:
    """The stream's last checkpoint, once one covers `position` and the events are relayed."""
    js = nc.jetstream()
    async with asyncio.timeout(timeout):
        while True:
            try:
                last = await js.get_last_msg(KEY_CHECKPOINTS_STREAM, KEY_CHECKPOINTS_SUBJECTS)
                relayed = (await js.stream_info(KEY_EVENTS_STREAM)).state.last_seq
            except Exception:  # no stream yet
                await asyncio.sleep(0.05)
                continue
            checkpoint = wire.decode(last.data or b"")
            if checkpoint.position >= position and relayed >= position:
                return checkpoint
            await asyncio.sleep(0.05)


async def stored_checkpoints(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(checkpoints.c.data).order_by(checkpoints.c.number))
        return [data.encode() for data in rows.scalars()]


async def streamed_checkpoints(nc: Client) -> list[bytes]:
    js = nc.jetstream()
    info = await js.stream_info(KEY_CHECKPOINTS_STREAM)
    if info.state.messages == 0:
        return []
    return [
        (await js.get_msg(KEY_CHECKPOINTS_STREAM, seq)).data or b""
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def verify(server: NatsServer, database_url: str) -> tuple[int, dict[str, object], str]:
    """`aitbc events verify` as the auditor, trusting the public key `just up` made."""
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--nats-url",
        server.url,
        "--creds",
        str(credentials(server).file("auditor")),
        "events",
        "verify",
        "--database-url",
        database_url,
        "--checkpoint-key",
        str(credentials(server).checkpoint_public_key),
    ]
    code = await asyncio.to_thread(run, [*argv, "--json"], None, out, err)
    assert not err.getvalue(), err.getvalue()
    text = io.StringIO()
    await asyncio.to_thread(run, argv, None, text, io.StringIO())
    return code, json.loads(out.getvalue()), text.getvalue()


async def test_the_keys_service_signs_stores_and_publishes_checkpoints(
    own_nats: NatsServer, database_url: str, admin: Client
) -> None:
    trusted = TrustedKey.parse(str(credentials(own_nats).checkpoint_public_key))
    async with keys_service(own_nats, database_url) as svc:
        caller = Caller(admin)
        for _ in range(5):  # two events each
            await new_account(caller)
        last = await published(admin, 10)
        assert svc.checkpointer is not None and svc.checkpointer.refused is None
        stored = await stored_checkpoints(svc.engine)
        assert stored == await streamed_checkpoints(admin)
        signed = [wire.decode(data) for data in stored]
        assert [c.number for c in signed] == list(range(1, len(signed) + 1))
        assert all(trusted.check(c) is None for c in signed)
        assert signed[-1] == last and last.position == 10
        [record] = await store.records_after(svc.engine, 9, 1)
        assert last.chain_hash == record.chain_hash
        # Nothing new: no new checkpoint, however long it waits.
        await asyncio.sleep(0.8)
        assert await stored_checkpoints(svc.engine) == stored


async def rewrite(engine: AsyncEngine, server: NatsServer, position: int) -> None:
    """What someone with the database and the bus's admin roles but not the signing key can
    do: alter the event at `position`, recompute every chain hash after it, in the store and
    the stream alike (the log in KEYLOG as its admin; then the readers' mirrors, which would
    keep the old history, made again as the admin: `aitbc-bus-config --remake-mirrors`)."""
    records = await store.records_after(engine, 0, 10_000)
    head, rows = GENESIS, []
    for record in records:
        event = decode_event(record.data)
        if record.position == position:
            event = msgspec.structs.replace(event, name="Mallory Ltd")  # type: ignore[call-arg]
        data = encode_event(msgspec.structs.replace(event, prev_hash=head))
        head = link(head, data)
        rows.append((record, data, head))
    async with engine.begin() as conn:
        for record, data, chain_hash in rows:
            await conn.execute(
                events.update()
                .where(events.c.position == record.position)
                .values(data=data.decode(), chain_hash=chain_hash)
            )
    async with connected(server, "keylog-admin") as keylog:
        js = keylog.jetstream()
        await js.delete_stream(KEY_EVENTS_STREAM)
        await js.add_stream(stream_config())
        for record, data, chain_hash in rows:
            headers = {POSITION_HEADER: str(record.position), HASH_HEADER: chain_hash}
            subject = key_event_subject(record.account_id, record.stream_id)
            await js.publish(subject, data, stream=KEY_EVENTS_STREAM, headers=headers)
    await drop_mirrors(server.access("admin"), [KEY_EVENTS_STREAM])
    await provision(server.access("keylog-admin"), server.access("admin"))
    await until_mirrored(server)


async def test_events_verify_names_the_checkpoints_a_consistent_rewrite_contradicts(
    own_nats: NatsServer, database_url: str, admin: Client
) -> None:
    async with keys_service(own_nats, database_url) as svc:
        # Two halves, each checkpointed before the next: at least two checkpoints, whatever
        # the machine's speed (the checkpointer signs the head it finds, which may be far on)
        for half in (6, 12):
            for _ in range(3):
                await new_account(Caller(admin))
            await published(admin, half)
        engine = svc.engine
        code, honest, text = await verify(own_nats, database_url)
        assert code == 0 and honest["intact"] is True, text
        assert honest["checkpoints"]["problems"] == [], text  # type: ignore[index]
        assert honest["checkpoints"]["warnings"] == [], text  # type: ignore[index]
        assert "the key event log is intact" in text
        signed = await stored_checkpoints(engine)
        assert len(signed) >= 2
        first = wire.decode(signed[0])

    altered = first.position + 1  # the first event after the first checkpoint
    await rewrite(engine, own_nats, altered)  # the service is gone; its engine can reconnect

    code, report, text = await verify(own_nats, database_url)
    assert code == 1 and report["intact"] is False, text
    # The chains alone see nothing: the store and the stream agree with themselves and each other.
    assert [w["intact"] for w in report["witnesses"]] == [True, True]  # type: ignore[attr-defined]
    assert report["differ"] is None
    problems = report["checkpoints"]["problems"]  # type: ignore[index]
    assert problems, text
    assert {p["problem"] for p in problems} == {"rewritten"}
    assert {p["witness"] for p in problems} == {"store", "stream"}
    earliest = min(problems, key=lambda p: p["number"])
    assert earliest["number"] == 2 and earliest["position"] >= altered
    assert f"positions {first.position + 1}.." in earliest["detail"]
    assert f"REWRITTEN at checkpoint 2, position {earliest['position']} (store)" in text
    assert "the key event log is BROKEN" in text

    # Nor will the keys service sign the rewritten history.
    async with keys_service(own_nats, database_url) as svc:
        await new_account(Caller(admin))
        assert svc.checkpointer is not None
        async with asyncio.timeout(10):
            while svc.checkpointer.refused is None:
                await asyncio.sleep(0.05)
        assert "inserted" in svc.checkpointer.refused or "altered" in svc.checkpointer.refused
        assert await stored_checkpoints(svc.engine) == signed
    await engine.dispose()


async def test_events_verify_names_a_checkpoint_forged_without_the_key(
    own_nats: NatsServer, database_url: str, admin: Client, keylog: Client
) -> None:
    async with keys_service(own_nats, database_url) as svc:
        await new_account(Caller(admin))
        last = await published(admin, 2)
        [record] = await store.records_after(svc.engine, 1, 1)
    # Someone with the key log's admin role (no other role may write the checkpoints' stream)
    # signs the same head with a key of their own...
    theirs = CheckpointSigner(new_signing_seed()).sign(
        number=last.number + 1, position=2, chain_hash=record.chain_hash, signed_at=last.signed_at
    )
    forged = wire.checkpoint_subject(theirs.number)
    await keylog.jetstream().publish(forged, wire.encode(theirs), stream=KEY_CHECKPOINTS_STREAM)
    # ... or re-signs nothing and only edits a checkpoint's hash.
    bent = msgspec.structs.replace(last, number=last.number + 2, chain_hash="0" * 64)
    subject = wire.checkpoint_subject(bent.number)
    await keylog.jetstream().publish(subject, wire.encode(bent), stream=KEY_CHECKPOINTS_STREAM)
    await until_mirrored(own_nats, KEY_CHECKPOINTS_STREAM)  # what the auditor's verify reads

    code, report, text = await verify(own_nats, database_url)
    assert code == 1, text
    problems = report["checkpoints"]["problems"]  # type: ignore[index]
    assert [(p["problem"], p["number"], p["witness"]) for p in problems] == [
        ("forged", last.number + 1, "stream"),
        ("forged", last.number + 2, "stream"),
    ], text
    assert "not trusted" in problems[0]["detail"]
    assert "does not verify" in problems[1]["detail"]
    assert f"FORGED at checkpoint {last.number + 1}, position 2 (stream)" in text
    assert f"the store lacks checkpoint(s) {last.number + 1}..{last.number + 2}" in text


async def streams_every_stored_checkpoint(engine: AsyncEngine, nc: Client, least: int) -> None:
    """Until at least `least` checkpoints are stored and the stream holds every one of them."""
    async with asyncio.timeout(10):
        while True:
            stored = await stored_checkpoints(engine)
            with contextlib.suppress(NotFoundError):  # the stream is not there yet
                if len(stored) >= least and set(stored) <= set(await streamed_checkpoints(nc)):
                    return
            await asyncio.sleep(0.05)


async def test_a_lost_checkpoint_stream_is_refilled_and_a_foreign_message_skips_nothing(
    own_nats: NatsServer, database_url: str, admin: Client, keylog: Client
) -> None:
    # The checkpoints' stream itself is in KEYLOG: only its admin may delete it or put a
    # foreign message there, and what the service publishes is checked there.
    async with keys_service(own_nats, database_url) as svc:
        await new_account(Caller(admin))
        await published(admin, 2)
    js = keylog.jetstream()
    await js.delete_stream(KEY_CHECKPOINTS_STREAM)
    async with keys_service(own_nats, database_url) as svc:
        await streams_every_stored_checkpoint(svc.engine, keylog, 1)
    # A message claiming a far number, not signed by the key: the service publishes on.
    await js.publish(wire.checkpoint_subject(1000), b"{}", stream=KEY_CHECKPOINTS_STREAM)
    async with keys_service(own_nats, database_url) as svc:
        await new_account(Caller(admin))
        await streams_every_stored_checkpoint(svc.engine, keylog, 2)
