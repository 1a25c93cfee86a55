"""The mirrors of the streams others read, each following a durable consumer on its source.

A mirror that made its own consumer on the source (nats-server's default, an ephemeral one)
asks for a new one when it loses it, and a source whose leader is gone answers nothing: the
mirror waits 30 s for that answer and tries again 10 s later, holding nothing new meanwhile
(about 45 s after a node is lost: bench/results/ANALYSIS.md, docs/architecture.md "A mirror
that stops is an outage too"). A mirror that follows a durable consumer provisioning made
(nats-server 2.14+, ADR-60) only asks for that consumer to be reset, and gives up on an
answer after 5 s: it follows again about 10 s after the kill (tests/cluster/faults.py).

Each mirror has a consumer of its own on its source, `MIRROR_<account>`, in the source's
account, acknowledged by the mirror's flow control answers (`flow_control` ack policy) and
delivered where only that account receives it (aitbc_infra.bus_accounts.mirror_delivery). A
consumer is made with its mirror, from the source's first message: a mirror made again (its
source rebuilt, `delete_mirrors`) starts over. A consumer that went missing under a mirror is
made again from the mirror's next sequence. A mirror made before mirrors followed durable
consumers is made again: a mirror's source cannot be changed in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamConsumerSource,
    StreamInfo,
    StreamSource,
)
from nats.js.errors import NotFoundError

from aitbc_infra.bus_accounts import api_prefix, mirror_consumer, mirror_delivery, mirrors
from aitbc_infra.bus_stores import ADMIN_ACCOUNT, KEYLOG_ACCOUNT, STORES

HEARTBEAT = 1.0  # seconds: the one heartbeat nats-server takes for a flow-control consumer
MAX_PENDING = 10_000  # messages delivered to a mirror and not yet acknowledged by its answers


class ProvisionError(Exception):
    """A stream is there with a shape the bus must not have: say which and what to do."""


def mirror_config(account: str, stream: str, replicas: int = 1) -> StreamConfig:
    """`account`'s mirror of a stream of another account, under the same name."""
    source = StreamSource(
        name=stream,
        external=ExternalStream(api=api_prefix(STORES[stream].account)),
        consumer=StreamConsumerSource(
            name=mirror_consumer(account), deliver_subject=mirror_delivery(account, stream)
        ),
    )
    return StreamConfig(name=stream, mirror=source, storage=StorageType.FILE, num_replicas=replicas)


def consumer_config(account: str, stream: str, start: int = 1) -> ConsumerConfig:
    """The durable consumer `account`'s mirror of `stream` follows, from sequence `start`; its
    replicas are its stream's."""
    name = mirror_consumer(account)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        deliver_subject=mirror_delivery(account, stream),
        deliver_policy=DeliverPolicy.ALL if start <= 1 else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start if start > 1 else None,
        ack_policy=AckPolicy.FLOW_CONTROL,
        flow_control=True,
        idle_heartbeat=HEARTBEAT,
        max_ack_pending=MAX_PENDING,
        max_deliver=-1,
    )


def jetstream_api(account: str) -> str:
    """How an admin reaches `account`'s JetStream API, for people."""
    if account in (ADMIN_ACCOUNT, KEYLOG_ACCOUNT):
        return "its own JetStream API"
    return f"--js-api-prefix {api_prefix(account)}"


async def stream_info(js: JetStreamContext, stream: str) -> StreamInfo | None:
    try:
        return await js.stream_info(stream)
    except NotFoundError:
        return None


async def _has_consumer(js: JetStreamContext, stream: str, name: str) -> bool:
    try:
        await js.consumer_info(stream, name)
    except NotFoundError:
        return False
    return True


async def _fresh_consumer(source: JetStreamContext, account: str, stream: str) -> None:
    """The mirror's consumer made anew, from the source's first message."""
    if await _has_consumer(source, stream, mirror_consumer(account)):
        await source.delete_consumer(stream, mirror_consumer(account))
    await source.add_consumer(stream, consumer_config(account, stream))


async def provision_mirrors(
    js_of: Mapping[str, JetStreamContext], account: str, replicas: int
) -> list[str]:
    """`account`'s mirrors and their consumers made where missing; what changed. `js_of`:
    each account's JetStream API, as its admin reaches it."""
    js, changes = js_of[account], []
    for stream in mirrors(account):
        source = js_of[STORES[stream].account]
        found = await stream_info(js, stream)
        mirror = found.config.mirror if found is not None else None
        if found is not None and (mirror is None or mirror.name != stream):
            raise ProvisionError(
                f"{stream} in {account} is not the mirror of {STORES[stream].account}'s; "
                f"delete it as `admin` (`nats stream rm`, through {jetstream_api(account)}) "
                "and provision again"
            )
        if mirror is not None and mirror.consumer is None:  # an ephemeral consumer's: anew
            await js.delete_stream(stream)
            found = None
        if found is None:
            await _fresh_consumer(source, account, stream)
            await js.add_stream(mirror_config(account, stream, replicas))
            changes.append(f"{account} {stream} (mirror): made")
        elif not await _has_consumer(source, stream, mirror_consumer(account)):
            start = found.state.last_seq + 1
            await source.add_consumer(stream, consumer_config(account, stream, start))
            changes.append(f"{account} {stream} (mirror): its consumer made again")
    return changes


async def delete_mirrors(
    js_of: Mapping[str, JetStreamContext], streams: Iterable[str]
) -> list[str]:
    """The mirrors of `streams` deleted in every account of `js_of`, for provisioning to make
    them again (with their consumers, from the start)."""
    wanted, dropped = set(streams), []
    for account, js in js_of.items():
        for stream in mirrors(account):
            if stream in wanted and await stream_info(js, stream) is not None:
                await js.delete_stream(stream)
                dropped.append(f"{account} {stream} (mirror): deleted")
    return dropped
