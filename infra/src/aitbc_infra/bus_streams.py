"""The streams the bus is provisioned with: the ones others mirror (the key log and its
checkpoints in KEYLOG, the usage stream in USAGE), and the mirrors of them in every account that
reads them (aitbc_infra.bus_accounts), under the same names, each following a durable consumer
of its own on its source (aitbc_infra.bus_mirrors).

A mirror has no subjects, so nothing published in its account (by a client, a responder
answering a reply subject the requester chose, or JetStream sending a PubAck there) can be
stored in it: only what the writer stored in the source's account reaches the readers, a
millisecond or so later.

The bus is provisioned (`provision`) as soon as its server is up, before any service starts: the
key log's streams as `keylog-admin` (their writer brings their settings up to date), then as
`admin` the usage stream in USAGE; then, with every source there, the mirrors' consumers on them
and the mirrors in every account (through ADMIN's imports of their JetStream APIs). Provisioning
also gives every stream and KV bucket of the system the bus's number of replicas (`--replicas 3`
on a 3-node cluster), in place where they exist: only the admins may change a stream's settings,
so this is where an existing deployment's streams are replicated; the services make their
buckets with NATS_REPLICAS while they are missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import api_prefix, mirrors
from aitbc_infra.bus_mirrors import delete_mirrors, provision_mirrors, stream_info
from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_stores import ACCOUNTS, ADMIN_ACCOUNT, KEYLOG_ACCOUNT, STORES
from aitbc_infra.readiness import quiet_errors
from aitbc_runtime.bus_access import BusAccess

# The streams made by provisioning (their writers' roles may not create them), by account.
SOURCES = {
    KEYLOG_ACCOUNT: (s.KEY_EVENTS_STREAM, s.KEY_CHECKPOINTS_STREAM),
    STORES[s.USAGE_STREAM].account: (s.USAGE_STREAM,),
}
# Every stream of the system, by account: stores, then mirrors.
STREAMS = {
    account: tuple(x.stream for x in STORES.values() if x.account == account) + mirrors(account)
    for account in ACCOUNTS
}
MIRRORED = {stream for account in ACCOUNTS for stream in mirrors(account)}
# Who provisions and repairs each account: the key log's own admin, and the admin, who
# reaches the accounts it manages through its imports of their JetStream APIs (`jetstream`).
ADMINS = {
    KEYLOG_ACCOUNT: "keylog-admin",
    **{account: "admin" for account in ROLES["admin"].manages},
    ADMIN_ACCOUNT: "admin",
}
USAGE_STREAM_DAYS = 7  # analytics read it; the usage service counts it as it comes


def source_config(stream: str, replicas: int = 1) -> StreamConfig:
    """A stream others mirror, as the bus first makes it (the key log's writer adds its own
    settings to the key log's)."""
    config = StreamConfig(
        name=stream,
        subjects=[STORES[stream].subjects],
        storage=StorageType.FILE,
        num_replicas=replicas,
    )
    if stream == s.USAGE_STREAM:
        return replace(
            config,
            retention=RetentionPolicy.LIMITS,  # analytics read it too: keep, don't work-queue
            max_age=USAGE_STREAM_DAYS * 24 * 3600,
            duplicate_window=120,  # a retried publish with the same batch id is stored once
        )
    return config


def jetstream(nc: NATS, account: str) -> JetStreamContext:
    """An admin's JetStream API of `account`: its own, or another's as ADMIN imports it."""
    if account in (ADMIN_ACCOUNT, KEYLOG_ACCOUNT):
        return nc.jetstream()
    return nc.jetstream(prefix=api_prefix(account))


@contextlib.asynccontextmanager
async def _connected(access: BusAccess) -> AsyncIterator[NATS]:
    nc = await nats.connect(
        **access.options(),
        name="aitbc-bus-setup",
        allow_reconnect=False,
        connect_timeout=2,
        max_reconnect_attempts=1,
        error_cb=quiet_errors,
    )
    try:
        yield nc
    finally:
        await nc.close()


async def _replicated(js: JetStreamContext, found: StreamConfig, replicas: int) -> list[str]:
    """An existing stream given `replicas`, in place: its messages stay, and JetStream copies
    them to the new replicas (or drops the extra ones)."""
    if (found.num_replicas or 1) == replicas:
        return []
    await js.update_stream(replace(found, num_replicas=replicas))
    return [f"{found.name}: {found.num_replicas or 1} -> {replicas} replicas"]


async def _provision(js: JetStreamContext, account: str, replicas: int) -> list[str]:
    """An account's sources made; every stream of it at `replicas`, its mirrors included."""
    changes = []
    for stream in STREAMS[account]:
        found = await stream_info(js, stream)
        if found is None and stream in SOURCES.get(account, ()):
            await js.add_stream(source_config(stream, replicas))
            changes.append(f"{account} {stream}: made")
        elif found is not None:  # else a bucket its service makes, or a mirror not made yet
            changes += await _replicated(js, found.config, replicas)
    return changes


async def drop_mirrors(admin: BusAccess, streams: Iterable[str] = ()) -> list[str]:
    """Delete the mirrors of `streams` (all of them: none given) in every account, as the
    admin, for provisioning to make them again: a mirror keeps what it holds and takes from
    its source only what comes after its own last sequence, so one whose source's sequences
    changed (the log rebuilt) must be made anew."""
    async with _connected(admin) as nc:
        js_of = {a: jetstream(nc, a) for a, role in ADMINS.items() if role == "admin"}
        return await delete_mirrors(js_of, set(streams) or MIRRORED)


async def provision(keylog_admin: BusAccess, admin: BusAccess, replicas: int = 1) -> list[str]:
    """Make what is missing: the key log's streams in KEYLOG, the usage stream in USAGE, and the
    mirrors of them in every account that reads them; and give every stream and bucket of the
    system `replicas`, an existing deployment's too. What else exists is kept. Returns what it
    changed, for the operator."""
    changes = []
    async with _connected(keylog_admin) as keylog, _connected(admin) as main:
        connection = {"keylog-admin": keylog, "admin": main}
        js_of = {account: jetstream(connection[role], account) for account, role in ADMINS.items()}
        for account in ADMINS:
            changes += await _provision(js_of[account], account, replicas)
        for account in ADMINS:  # once every source is there, with their consumers
            changes += await provision_mirrors(js_of, account, replicas)
    return changes
