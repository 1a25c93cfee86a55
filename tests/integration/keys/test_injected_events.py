"""Messages put into another process's key event reader, not by the key log's writer but by a
process of the same role, with the server's help: every edge process connects as role `edge`,
so each may subscribe to the inboxes of all (the deliver subject of another edge's consumer
of the key events among them), and may ask JetStream for a message of its own bucket with any
subject as the reply. JetStream then publishes that message, its bytes and its headers as the
edge wrote them, on the other edge's deliver subject: to its reader, a message like any
delivery of its mirror. Against a real nats-server with the real permissions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aitbc_contracts import keyformat
from aitbc_contracts import messages as m
from aitbc_contracts.events import KeyRevoked
from aitbc_contracts.subjects import DASHBOARD_SESSIONS_BUCKET, HASH_HEADER, POSITION_HEADER
from aitbc_infra.nats_server import NatsServer
from aitbc_keys import store
from aitbc_keys.main import Service
from tests.integration.keys.foreign import last_message
from tests.integration.keys.test_forged_events import Edge, all_at, ask, checked, relayed, until
from tests.integration.keys.test_forged_events import service as service  # the fixture
from tests.key_messages import Chained

SESSIONS = f"KV_{DASHBOARD_SESSIONS_BUCKET}"


async def deliver_subject(forger: Client, own_nats: NatsServer, but: str = "") -> str:
    """Another edge's deliver subject (not `but`), as any edge may hear it: the heartbeats of
    its consumer."""
    heard: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def hear(msg: Msg) -> None:
        heartbeat = (msg.headers or {}).get("Status") == "100"
        if heartbeat and msg.subject != but and not heard.done():
            heard.set_result(msg.subject)

    sniffing = await forger.subscribe(own_nats.access("edge").inbox_prefix + ".>", cb=hear)
    try:
        return await asyncio.wait_for(heard, 10)
    finally:
        await sniffing.unsubscribe()


async def slip_in(
    forger: Client, own_nats: NatsServer, message: tuple[bytes, dict[str, str]]
) -> None:
    """The message written into the forger's own bucket, and delivered from there by consumers
    of the forger's making to the other edge's deliver subject. The first one's delivery makes
    the reader's client start its consumer over, on a new subject, counting deliveries from 1
    again; the second one's is delivery 1 there, which the client takes for its own."""
    js = forger.jetstream()
    await js.create_key_value(bucket=DASHBOARD_SESSIONS_BUCKET)  # an edge may make it
    data, headers = message
    ack = await js.publish(f"$KV.{DASHBOARD_SESSIONS_BUCKET}.forged", data, headers=headers)
    to = ""
    for _ in range(2):
        to = await deliver_subject(forger, own_nats, but=to)
        config = ConsumerConfig(
            deliver_subject=to,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=ack.seq,
            ack_policy=AckPolicy.NONE,
        )
        await js.add_consumer(SESSIONS, config)


async def test_an_edge_cannot_slip_a_forged_event_into_another_edges_reader(
    service: Service, admin: Client, keylog: Client, own_nats: NatsServer
) -> None:
    """A forged revocation of an account's master key (which no edge may revoke) that
    continues the chain was taken by the other edge, and its cache refused the master key
    until the log's next event."""
    master = keyformat.generate_key()
    account = await ask(
        admin, m.CreateAccount(master_key_hash=keyformat.hash_key(master), master_key_hint="m")
    )
    assert isinstance(account, m.AccountView)
    await relayed(service)
    victim_nc = await nats.connect(**own_nats.options("edge"))
    forger = await nats.connect(**own_nats.options("edge"))
    victim = Edge(victim_nc)
    victim.reader.start()
    try:
        last = await last_message(keylog)
        position = int(last.headers[POSITION_HEADER])
        await all_at([victim.reader], position)
        digest = bytes.fromhex(keyformat.hash_key(master))
        facts = await checked(service, keyformat.hash_key(master))
        assert isinstance(facts, m.KeyFacts) and not facts.revoked
        victim.cache.put(digest, facts, victim.cache.generation)

        revocation = KeyRevoked(
            event_id="forged", stream_id=account.master_key_id, version=2,
            account_id=account.account_id, occurred_at=datetime.now(UTC),
            key_id=account.master_key_id,
        )  # fmt: skip
        forged = Chained(position, last.headers[HASH_HEADER]).forged_next(revocation)
        await slip_in(forger, own_nats, forged)
        await until(lambda: sum(victim.reader.refused.values()) > 0, "it was never refused")
        assert victim.reader.chain.position == position
        assert victim.cache.get(digest) == facts
        # Its subscription made again, it takes the log's next event, and nothing was reset.
        assert isinstance(await ask(admin, m.SetPlan(account.account_id, "pro")), m.AccountView)
        await relayed(service)
        [genuine] = await store.records_after(service.engine, position, 1)
        await all_at([victim.reader], position + 1, genuine.chain_hash)
        assert victim.reader.resyncs == {}
    finally:
        await victim.reader.stop()
        await victim_nc.close()
        await forger.close()
