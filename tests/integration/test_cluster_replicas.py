"""Every stream and KV bucket of the system replicated on a real 3-node cluster: made with 3
replicas on a new bus (the key log's by the provisioning, the services' by the services with
NATS_REPLICAS=3), and an existing deployment's made R1 brought to R3 in place by provisioning
again, its messages kept: all of them still there once the node leading the key log is lost."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamInfo

from aitbc_api.dashboard.sessions import session_bucket
from aitbc_contracts import messages as m
from aitbc_contracts.keyformat import generate_key, hash_key, hint
from aitbc_contracts.subjects import (
    DASHBOARD_SESSIONS_BUCKET,
    KEY_EVENTS_STREAM,
    KEYS_OPERATOR_COMMANDS,
    MSG_ID_HEADER,
    USAGE_COUNTERS_BUCKET,
    partition_of,
    usage_batch_subject,
    usage_decide_subject,
)
from aitbc_contracts.usage import Decide, DecideBatch, UsageBatch, UsageEvent
from aitbc_infra.bus_accounts import mirror_consumer, mirrors
from aitbc_infra.bus_stores import KEYLOG_ACCOUNT, STORES
from aitbc_infra.bus_streams import ADMINS, STREAMS, jetstream
from aitbc_keys.main import running_service as running_keys
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.commands import KeysCommands
from aitbc_usage.main import running_service as running_usage
from aitbc_usage.settings import Settings as UsageSettings
from tests.nats_cluster import Cluster, cluster_of, current_copies

SESSIONS = f"KV_{DASHBOARD_SESSIONS_BUCKET}"
EXPECTED = {f"{account} {name}" for account, names in STREAMS.items() for name in names}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with cluster_of(tmp_path) as made:
        yield made


@dataclass
class Deployment:
    """The keys and usage services in this process on the cluster, the edge's sessions bucket,
    and an operator's connection."""

    operator: NATS
    edge: NATS

    async def create_account(self) -> str:
        master = generate_key()
        command = m.CreateAccount(master_key_hash=hash_key(master), master_key_hint=hint(master))
        made = await KeysCommands(self.operator, 10.0, KEYS_OPERATOR_COMMANDS).send(command)
        assert isinstance(made, m.AccountView), made
        return made.account_id

    async def use(self, account: str) -> None:
        """A request of `account` as the edge makes it: decided (the counters' snapshot),
        then its usage event published."""
        partition = partition_of(account)
        batch = msgspec.json.encode(DecideBatch([Decide(account, "key_1")]))
        await self.edge.request(usage_decide_subject(partition), batch, timeout=5)
        event = UsageEvent(
            event_id=uuid.uuid4().hex, request_id="r", account_id=account, key_id="key_1",
            method="GET", route="/v1/jobs", status=200, latency_ms=1.0, decision="admitted",
            at=datetime.now(UTC),
        )  # fmt: skip
        await self.edge.jetstream().publish(
            usage_batch_subject(partition),
            msgspec.json.encode(UsageBatch(events=[event])),
            headers={MSG_ID_HEADER: uuid.uuid4().hex},
        )


@asynccontextmanager
async def deployed(cluster: Cluster, root: Path, replicas: int) -> AsyncIterator[Deployment]:
    """Everything that makes a stream or a bucket, told NATS_REPLICAS=`replicas`."""

    def access(role: str) -> BusAccess:
        return replace(cluster.access(role=role), replicas=replicas)

    keys = KeysSettings(
        nats=access("keys"),
        nats_writer=access("keys-writer"),
        database_url=f"sqlite:///{root / 'keys.db'}",
        checkpoint_key_file=str(cluster.credentials.checkpoint_key),
        checkpoint_every_events=1,
    )
    usage = UsageSettings(nats=access("usage"), database_url=f"sqlite:///{root / 'usage.db'}")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running_keys(keys))
        await stack.enter_async_context(running_usage(usage))
        operator = await nats.connect(**cluster.access().options())
        stack.push_async_callback(operator.close)
        edge = await nats.connect(**cluster.access(role="edge").options())
        stack.push_async_callback(edge.close)
        sessions = await session_bucket(edge, 600, 1000, replicas)
        await sessions.put("session-digest", b"a session")
        yield Deployment(operator, edge)


async def settled(cluster: Cluster, replicas: int, within: float = 30.0) -> dict[str, StreamInfo]:
    """Every stream of every account (account-qualified names), once each is listed and has
    `replicas` copies that are all current: a stream whose leader was lost is not listed
    until it has a new one."""
    found: dict[str, StreamInfo] = {}
    for _ in range(int(within / 0.25)):
        try:
            found = {
                f"{account} {name}": info
                for account in ADMINS
                for name, info in (await cluster.streams(account)).items()
            }
        except Exception:  # a node lost: the streams it led are choosing a new leader
            await asyncio.sleep(0.25)
            continue
        if set(found) == EXPECTED and all(current_copies(i) == replicas for i in found.values()):
            return found
        await asyncio.sleep(0.25)
    return found


def names(found: dict[str, StreamInfo]) -> set[str]:
    return set(found)


async def test_a_new_bus_has_every_stream_and_bucket_at_three_replicas(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert await cluster.provision(3)  # the mirrored streams and their mirrors: made
    async with cluster_admin(cluster, "keylog-admin") as keylog:  # made again by the keys
        await keylog.jetstream().delete_stream(KEY_EVENTS_STREAM)  # service's relay
    async with deployed(cluster, tmp_path, replicas=3) as system:
        await system.create_account()
        found = await settled(cluster, 3)
    assert names(found) == EXPECTED
    assert {name: info.config.num_replicas for name, info in found.items()} == dict.fromkeys(
        EXPECTED, 3
    )


async def test_an_r1_deployment_is_replicated_in_place_without_losing_a_message(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.provision(1)
    async with deployed(cluster, tmp_path, replicas=1) as system:
        for _ in range(3):
            await system.use(await system.create_account())
        held = await messages_in_each(cluster)

        changed = await cluster.provision(3)  # while the services run
        assert len(changed) == len(EXPECTED)
        after = await settled(cluster, 3)
        assert {name: info.config.num_replicas for name, info in after.items()} == dict.fromkeys(
            EXPECTED, 3
        )
        assert await mirror_consumers_at(cluster, 3)  # as their sources, once scaled with them
        await system.create_account()  # the log goes on: one more event, and its checkpoint
        with caplog.at_level(logging.WARNING, "aitbc.bus"):  # a service not told yet: it
            await session_bucket(system.edge, 600, 1000, 1)  # keeps the bucket as it is
        assert f"{SESSIONS} has 3 replicas, not the 1 of NATS_REPLICAS" in caplog.text
        assert "could not be changed" not in caplog.text  # and asks no update it may not make

    leader = after[f"{KEYLOG_ACCOUNT} {KEY_EVENTS_STREAM}"].cluster
    assert leader is not None and leader.leader is not None
    lost = next(node for node in cluster.nodes if node.name == leader.leader)
    lost.stop(kill=True)
    survived = await settled(cluster, 2)
    assert names(survived) == EXPECTED
    for name, messages in held.items():
        assert survived[name].state.messages >= messages, name
    async with cluster_admin(cluster, "usage") as usage:  # its writer reads it
        counters = await usage.jetstream().key_value(USAGE_COUNTERS_BUCKET)
        assert await counters.keys()


async def mirror_consumer_copies(cluster: Cluster) -> dict[str, int]:
    """How many copies each mirror's consumer on its source has (the leader's and its
    replicas'), as the source's admin sees it."""
    copies = {}
    for account in ADMINS:
        for stream in mirrors(account):
            source = STORES[stream].account
            async with cluster_admin(cluster, ADMINS[source]) as nc:
                info = await jetstream(nc, source).consumer_info(stream, mirror_consumer(account))
            peers = info.cluster.replicas if info.cluster is not None else None
            copies[f"{account} {stream}"] = 1 + len(peers or [])
    return copies


async def mirror_consumers_at(cluster: Cluster, copies: int, within: float = 30.0) -> bool:
    """Whether every mirror's consumer has `copies` copies within `within` seconds: a consumer
    is scaled after its stream."""
    for _ in range(int(within / 0.5)):
        if set((await mirror_consumer_copies(cluster)).values()) == {copies}:
            return True
        await asyncio.sleep(0.5)
    return False


async def messages_in_each(cluster: Cluster, within: float = 10.0) -> dict[str, int]:
    """How many messages each stream holds, once every one holds some (the counters'
    snapshot and the mirrors come a moment after what they copy)."""
    held: dict[str, int] = {}
    for _ in range(int(within / 0.25)):
        found = await settled(cluster, 1)
        held = {name: info.state.messages for name, info in found.items()}
        if set(held) == EXPECTED and all(held.values()):
            return held
        await asyncio.sleep(0.25)
    raise AssertionError(f"not every stream holds something to keep: {held}")


@asynccontextmanager
async def cluster_admin(cluster: Cluster, role: str) -> AsyncIterator[NATS]:
    nc = await nats.connect(**cluster.access(role=role).options())
    try:
        yield nc
    finally:
        await nc.close()
