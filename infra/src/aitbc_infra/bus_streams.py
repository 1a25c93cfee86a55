"""The streams the bus is provisioned with: the ones others mirror (the key log and its
checkpoints in KEYLOG, the usage stream in USAGE), and the mirrors of them in every account that
reads them (aitbc_infra.bus_accounts), under the same names.

A mirror has no subjects, so nothing published in its account (by a client, a responder
answering a reply subject the requester chose, or JetStream sending a PubAck there) can be
stored in it: only what the writer stored in the source's account reaches the readers, a
millisecond or so later.

The bus is provisioned (`provision`) as soon as its server is up, before any service starts:
the key log's streams as `keylog-admin` (their writer brings their settings up to date), then
as `admin` the usage stream in USAGE and the mirrors in every account, through ADMIN's imports
of their JetStream APIs. Sources first, because a mirror whose source is missing tries again
only every ten seconds or so. Provisioning also gives every stream and KV bucket of the system
the bus's number of replicas (`--replicas 3` on a 3-node cluster), in place where they exist:
only the admins may change a stream's settings, so this is where an existing deployment's
streams are replicated; the services make their buckets with NATS_REPLICAS while they are
missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ExternalStream, RetentionPolicy, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError

from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import api_prefix, deliver_prefix, mirrors
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


class ProvisionError(Exception):
    """A stream is there with a shape the bus must not have: say which and what to do."""


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


def mirror_config(stream: str, replicas: int = 1) -> StreamConfig:
    """A mirror of a stream of another account, under the same name."""
    source = STORES[stream].account
    external = ExternalStream(api=api_prefix(source), deliver=deliver_prefix(source))
    return StreamConfig(
        name=stream,
        mirror=StreamSource(name=stream, external=external),
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


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


async def _exists(js: JetStreamContext, stream: str) -> StreamConfig | None:
    try:
        return (await js.stream_info(stream)).config
    except NotFoundError:
        return None


async def _replicated(js: JetStreamContext, found: StreamConfig, replicas: int) -> list[str]:
    """An existing stream given `replicas`, in place: its messages stay, and JetStream copies
    them to the new replicas (or drops the extra ones)."""
    if (found.num_replicas or 1) == replicas:
        return []
    await js.update_stream(replace(found, num_replicas=replicas))
    return [f"{found.name}: {found.num_replicas or 1} -> {replicas} replicas"]


async def _provision(js: JetStreamContext, account: str, replicas: int) -> list[str]:
    """An account's sources made, then its mirrors; every stream of it at `replicas`. A
    stream of a mirror's name that is not that mirror is refused."""
    changes = []
    for stream in STREAMS[account]:
        found = await _exists(js, stream)
        mirror = stream in mirrors(account)
        if found is None and (mirror or stream in SOURCES.get(account, ())):
            await js.add_stream((mirror_config if mirror else source_config)(stream, replicas))
            changes.append(f"{account} {stream}{' (mirror)' if mirror else ''}: made")
            continue
        if found is None:  # a bucket its service makes
            continue
        if mirror and (found.mirror is None or found.mirror.name != stream):
            raise ProvisionError(
                f"{stream} in {account} is not the mirror of {STORES[stream].account}'s; "
                "delete it as `admin` (`nats stream rm`, through "
                f"{jetstream_api(account)}) and provision again"
            )
        changes += await _replicated(js, found, replicas)
    return changes


def jetstream_api(account: str) -> str:
    """How an admin reaches `account`'s JetStream API, for people."""
    if account in (ADMIN_ACCOUNT, KEYLOG_ACCOUNT):
        return "its own JetStream API"
    return f"--js-api-prefix {api_prefix(account)}"


async def drop_mirrors(admin: BusAccess, streams: Iterable[str] = ()) -> list[str]:
    """Delete the mirrors of `streams` (all of them: none given) in every account, as the
    admin, for provisioning to make them again: a mirror keeps what it holds and takes from
    its source only what comes after its own last sequence, so one whose source's sequences
    changed (the log rebuilt) must be made anew."""
    wanted = set(streams) or MIRRORED
    dropped = []
    async with _connected(admin) as nc:
        for account, role in ADMINS.items():
            if role != "admin":
                continue
            js = jetstream(nc, account)
            for stream in mirrors(account):
                if stream in wanted and await _exists(js, stream) is not None:
                    await js.delete_stream(stream)
                    dropped.append(f"{account} {stream} (mirror): deleted")
    return dropped


async def provision(keylog_admin: BusAccess, admin: BusAccess, replicas: int = 1) -> list[str]:
    """Make what is missing: the key log's streams in KEYLOG, the usage stream in USAGE, and the
    mirrors of them in every account that reads them; and give every stream and bucket of the
    system `replicas`, an existing deployment's too. What else exists is kept. Returns what it
    changed, for the operator."""
    changes = []
    sources_first = sorted(ADMINS, key=lambda account: account not in SOURCES)
    async with _connected(keylog_admin) as keylog, _connected(admin) as main:
        connection = {"keylog-admin": keylog, "admin": main}
        for account in sources_first:
            js = jetstream(connection[ADMINS[account]], account)
            changes += await _provision(js, account, replicas)
    return changes
