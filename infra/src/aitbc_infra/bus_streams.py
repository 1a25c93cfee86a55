"""The key event log as the bus serves it: written in the KEYLOG account, read in AITBC from
mirrors of the same names.

A mirror has no subjects, so nothing published in AITBC (by a client, a responder answering a
reply subject the requester chose, or JetStream sending a PubAck there) can be stored in it:
only what the writer stored in KEYLOG reaches the readers, a millisecond or so later. KEYLOG
shares exactly what a mirror needs (docs: "JetStream cross-account mirror"):

- consumer creation on the mirrored streams (imported in AITBC under `$JS.KEYLOG.API`);
- the flow control answers to those consumers (`$JS.FC.<stream>.>`);
- the deliveries, on subjects under `aitbc.keylog.deliver`.

No role of AITBC may publish to any of these or subscribe to the deliveries (bus_roles); only
AITBC's admin, which makes the mirrors.

The bus is provisioned (`provision`) as soon as its server is up, before any service starts:
each KEYLOG stream exists (its writer brings its settings up to date), then its mirror. In
that order, because a mirror whose source is missing tries again only every ten seconds or so.
Provisioning also gives every stream and KV bucket of the system the bus's number of replicas
(`--replicas 3` on a 3-node cluster), in place where they exist: only the admins may change a
stream's settings, so this is where an existing deployment's streams are replicated; the
services make theirs with NATS_REPLICAS while they are missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
from nats.aio.client import Client as NATS
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError

from aitbc_contracts import subjects as s
from aitbc_infra.bus_roles import KEYLOG_ACCOUNT, MAIN_ACCOUNT
from aitbc_infra.readiness import quiet_errors
from aitbc_runtime.bus_access import BusAccess

KEYLOG_API = s.KEYLOG_API  # KEYLOG's consumer API, as AITBC sees it
KEYLOG_DELIVER = s.KEYLOG_DELIVER_PREFIX  # where KEYLOG delivers the mirrors' messages

# The streams of KEYLOG that AITBC reads, by name, with the subjects they hold there.
MIRRORED = {
    s.KEY_EVENTS_STREAM: s.KEY_EVENTS_SUBJECTS,
    s.KEY_CHECKPOINTS_STREAM: s.KEY_CHECKPOINTS_SUBJECTS,
}


# The streams and buckets of AITBC that their services make while they are missing, with their
# own settings and NATS_REPLICAS; the provisioning brings an existing one's replicas to the bus's.
SERVICE_STREAMS = (
    s.USAGE_STREAM,
    f"KV_{s.USAGE_COUNTERS_BUCKET}",
    f"KV_{s.DASHBOARD_SESSIONS_BUCKET}",
    f"KV_{s.USAGE_LEASES_BUCKET}",
    f"KV_{s.KEYS_LEASES_BUCKET}",
)


class ProvisionError(Exception):
    """A stream is there with a shape the bus must not have: say which and what to do."""


def _shared() -> list[tuple[str, str]]:
    """(kind, subject) of everything KEYLOG shares, as KEYLOG names it."""
    consumers = [
        ("service", subject)
        for stream in MIRRORED
        for subject in (f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>")
    ]
    control = [("service", f"$JS.FC.{stream}.>") for stream in MIRRORED]
    return [*consumers, *control, ("stream", f"{KEYLOG_DELIVER}.>")]


def account_links(account: str) -> str:
    """The `exports` (KEYLOG) or `imports` (AITBC) lines of an account's configuration."""
    if account == KEYLOG_ACCOUNT:
        lines = [f'{{ {kind}: "{subj}", accounts: [{MAIN_ACCOUNT}] }}' for kind, subj in _shared()]
        name = "exports"
    elif account == MAIN_ACCOUNT:
        lines = [_import(kind, subject) for kind, subject in _shared()]
        name = "imports"
    else:
        return ""
    body = "".join(f"      {line}\n" for line in lines)
    return f"    {name} = [\n{body}    ]\n"


def _import(kind: str, subject: str) -> str:
    source = f'{{ account: {KEYLOG_ACCOUNT}, subject: "{subject}" }}'
    if subject.startswith("$JS.API."):  # AITBC's own JetStream answers $JS.API itself
        return f'{{ {kind}: {source}, to: "{KEYLOG_API}{subject.removeprefix("$JS.API")}" }}'
    return f"{{ {kind}: {source} }}"


def source_config(stream: str, replicas: int = 1) -> StreamConfig:
    """A KEYLOG stream as the bus first makes it; its writer adds its own settings."""
    return StreamConfig(
        name=stream, subjects=[MIRRORED[stream]], storage=StorageType.FILE, num_replicas=replicas
    )


def mirror_config(stream: str, replicas: int = 1) -> StreamConfig:
    """AITBC's mirror of a KEYLOG stream, under the same name."""
    external = ExternalStream(api=KEYLOG_API, deliver=KEYLOG_DELIVER)
    return StreamConfig(
        name=stream,
        mirror=StreamSource(name=stream, external=external),
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


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


async def _exists(nc: NATS, stream: str) -> StreamConfig | None:
    try:
        return (await nc.jetstream().stream_info(stream)).config
    except NotFoundError:
        return None


async def _replicated(nc: NATS, found: StreamConfig, replicas: int) -> list[str]:
    """An existing stream given `replicas`, in place: its messages stay, and JetStream copies
    them to the new replicas (or drops the extra ones)."""
    if (found.num_replicas or 1) == replicas:
        return []
    await nc.jetstream().update_stream(replace(found, num_replicas=replicas))
    return [f"{found.name}: {found.num_replicas or 1} -> {replicas} replicas"]


async def provision(keylog_admin: BusAccess, admin: BusAccess, replicas: int = 1) -> list[str]:
    """Make what is missing: each KEYLOG stream, then its mirror in AITBC; and give every
    stream and bucket of the system `replicas`, an existing deployment's too. What else exists
    is kept; a stream in AITBC of a mirrored name that is not the mirror is refused. Returns
    what it changed, for the operator."""
    changes = []
    async with _connected(keylog_admin) as nc:
        for stream in MIRRORED:
            found = await _exists(nc, stream)
            if found is None:
                await nc.jetstream().add_stream(source_config(stream, replicas))
                changes.append(f"{KEYLOG_ACCOUNT} {stream}: made")
            else:
                changes += await _replicated(nc, found, replicas)
    async with _connected(admin) as nc:
        for stream in MIRRORED:
            found = await _exists(nc, stream)
            if found is None:
                await nc.jetstream().add_stream(mirror_config(stream, replicas))
                changes.append(f"{MAIN_ACCOUNT} {stream} (mirror): made")
                continue
            if found.mirror is None or found.mirror.name != stream:
                raise ProvisionError(
                    f"{stream} in {MAIN_ACCOUNT} is not the mirror of the key log; delete it as "
                    "`admin` (`nats stream rm`) and provision again: the key log is in KEYLOG"
                )
            changes += await _replicated(nc, found, replicas)
        for stream in SERVICE_STREAMS:  # the services make them: only their replicas are ours
            found = await _exists(nc, stream)
            if found is not None:
                changes += await _replicated(nc, found, replicas)
    return changes
