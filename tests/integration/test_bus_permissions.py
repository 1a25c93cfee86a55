"""Each role can do only what its row of the permission table says, on a real nats-server with
the real configuration (aitbc_infra.bus_roles): everything else is refused by the server.

A refused publish never reaches anyone (witnesses wherever it could go, in the role's account
and through that account's imports, see nothing) and the client is told (nats-py's error
callback); a refused subscription gets nothing published on its subject. JetStream API calls
are publishes too: refusing `$JS.API.STREAM.PURGE.<stream>` is refusing the purge, and every
stream of every account keeps its messages. The tests of the reply-subject tricks are in
test_reply_stores.py and test_reply_tricks.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from aitbc_api.dashboard.sessions import session_bucket
from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import covers, links
from aitbc_infra.bus_config import new_user_seed, write_private
from aitbc_infra.bus_roles import ROLES, Role
from aitbc_infra.bus_stores import (
    KEY_EVENTS_STREAM,
    SESSIONS_STREAM,
    STORES,
)
from aitbc_infra.bus_streams import ADMINS, STREAMS, jetstream
from aitbc_infra.nats_server import NatsServer
from aitbc_infra.readiness import run_to_end
from aitbc_runtime.bus_access import inbox_prefix
from tests.bus_cases import (
    ALLOWED,
    FORGED_CHECKPOINT,
    FORGED_EVENT,
    PRESENCE,
    USERS,
    Case,
    refused_publishes,
    refused_subscriptions,
)
from tests.bus_clients import connected
from tests.conftest import secured_nats


@dataclass
class Bus:
    server: NatsServer
    inboxes: dict[str, str]  # role -> its inbox prefix


def may_subscribe(role: Role, subject: str) -> bool:
    return role.admin or any(covers(x, subject) for x in role.subscribe)


def destinations(account: str, subject: str) -> list[tuple[str, str]]:
    """Where a message published in `account` on `subject` goes: (account, subject there),
    its own and through its service imports."""
    found = [(account, subject)]
    for link in links():
        if link.importer == account and link.kind == "service":
            named = link.to or link.subject
            if covers(named, subject):
                there = link.subject.removesuffix(">") + subject[len(named) - 1 :]
                found.append((link.exporter, there if named.endswith(">") else link.subject))
    return found


async def _fill(server: NatsServer) -> None:
    """One message in every stream, each put there by the role whose it is."""
    async with as_role(server, "keys-writer") as writer:
        await writer.nc.jetstream().publish(FORGED_EVENT, b"{}")
        await writer.nc.jetstream().publish(FORGED_CHECKPOINT, b"{}")
    async with as_role(server, "usage") as usage:
        js = usage.nc.jetstream()
        await (await js.create_key_value(bucket=s.USAGE_COUNTERS_BUCKET)).put("p1", b"1")
        await (await js.create_key_value(bucket=s.USAGE_LEASES_BUCKET)).put("p1", b"1")
    async with as_role(server, "keys") as keys:
        js = keys.nc.jetstream()
        await (await js.create_key_value(bucket=s.KEYS_LEASES_BUCKET)).put("relay", b"1")
    async with as_role(server, "edge") as edge:
        js = edge.nc.jetstream()
        await js.publish(s.usage_batch_subject(1), b"{}")
        await (await js.create_key_value(bucket=s.DASHBOARD_SESSIONS_BUCKET)).put("t", b"{}")
    async with asyncio.timeout(10):  # the mirrors have caught up
        while 0 in (await _stream_sizes(server)).values():
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    server = secured_nats(tmp_path_factory.mktemp("permissions")).start()
    try:
        run_to_end(_fill(server))
        assert server.credentials is not None
        prefixes = {r.name: inbox_prefix(server.credentials.public_key(r.name)) for r in USERS}
        yield Bus(server, prefixes)
    finally:
        server.stop()


@dataclass
class Client:
    nc: NATS
    errors: list[str]

    async def refused(self, within: float = 2.0) -> bool:
        """Whether the server said it refused something (it answers a ping after that)."""
        await self.nc.flush()
        deadline = asyncio.get_running_loop().time() + within
        while not self.errors and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return any("permissions violation" in error.lower() for error in self.errors)


@asynccontextmanager
async def as_role(server: NatsServer, role: str) -> AsyncIterator[Client]:
    errors: list[str] = []
    async with connected(server, role, errors) as nc:
        yield Client(nc, errors)


def _subject(bus: Bus, case: Case) -> str:
    """Inbox cases name a role; the subject is that role's real inbox prefix."""
    if case.subject.startswith("_INBOX.") and case.subject != "_INBOX.>":
        other = case.subject.split(".")[1]
        return f"{bus.inboxes[other]}.>"
    return case.subject


async def _stream_sizes(server: NatsServer) -> dict[str, int]:
    """How many messages each stream of each account holds, as the account's admin sees."""
    sizes = {}
    for account, admin in ADMINS.items():
        async with as_role(server, admin) as client:
            js = jetstream(client.nc, account)
            for stream in STREAMS[account]:
                sizes[f"{account}:{stream}"] = (await js.stream_info(stream)).state.messages
    return sizes


async def _published(bus: Bus, case: Case) -> tuple[bool, bool]:
    """(whether a witness saw the message, whether the server told the client it refused).
    The witnesses: every role that may subscribe to it wherever it could go."""
    subject = _subject(bus, case)
    seen: list[str] = []

    async def saw(msg: Msg) -> None:
        seen.append(msg.subject)

    async with AsyncExitStack() as stack:
        for account, there in destinations(ROLES[case.role].account, subject):
            for role in ROLES.values():
                if role.account == account and may_subscribe(role, there):
                    witness = await stack.enter_async_context(as_role(bus.server, role.name))
                    await witness.nc.subscribe(there, cb=saw)
                    await witness.nc.flush()
        async with as_role(bus.server, case.role) as client:
            await client.nc.publish(subject, b"{}")
            refused = await client.refused(within=0.5)
        await asyncio.sleep(0.05)
    return bool(seen), refused


@pytest.mark.parametrize("case", list(refused_publishes()), ids=lambda case: case.id)
async def test_a_publish_outside_the_roles_row_is_refused(bus: Bus, case: Case) -> None:
    changes_a_stream = case.subject.startswith("$JS.API.STREAM.")
    before = await _stream_sizes(bus.server) if changes_a_stream else None
    seen, refused = await _published(bus, case)
    assert not seen, f"{case.role} published on {case.subject}"
    assert refused, "the client was not told"
    if changes_a_stream:
        assert await _stream_sizes(bus.server) == before


@pytest.mark.parametrize("case", ALLOWED, ids=lambda case: case.id)
async def test_what_the_row_allows_goes_through(bus: Bus, case: Case) -> None:
    seen, refused = await _published(bus, case)
    assert seen and not refused


@pytest.mark.parametrize("case", list(refused_subscriptions()), ids=lambda case: case.id)
async def test_a_subscription_outside_the_roles_row_gets_nothing(bus: Bus, case: Case) -> None:
    subject = _subject(bus, case)
    received: list[str] = []
    async with as_role(bus.server, case.role) as client:

        async def got(msg: Msg) -> None:
            received.append(msg.subject)

        await client.nc.subscribe(subject, cb=got)
        refused = await client.refused()
        concrete = subject.replace(">", "x").replace("*", "1")
        for role in ROLES.values():  # the others of its account publish there where they may,
            if role.account == ROLES[case.role].account and role.name != case.role:
                async with as_role(bus.server, role.name) as other:
                    await other.nc.publish(concrete, b"{}")
                    infos = [x for x in role.publish if x.startswith("$JS.API.STREAM.INFO.")]
                    info = (infos or [f"$JS.API.STREAM.INFO.{KEY_EVENTS_STREAM}"])[0]
                    await other.nc.request(info, b"", timeout=5)  # and get answers
        await client.nc.publish(concrete, b"{}")  # itself, where it may
        await asyncio.sleep(0.1)
    assert refused, "the client was not told"
    assert received == []


async def test_an_edge_hears_the_others_presence(bus: Bus) -> None:
    heard: list[bytes] = []
    async with as_role(bus.server, "edge") as listener, as_role(bus.server, "edge") as other:

        async def got(msg: Msg) -> None:
            heard.append(msg.data)

        await listener.nc.subscribe(s.EDGE_PRESENCE_SUBJECTS, cb=got)
        await listener.nc.flush()
        async with asyncio.timeout(10):  # said again until heard: a loaded machine's delay
            while not heard:
                await other.nc.publish(PRESENCE, b"{}")
                await other.nc.flush()
                await asyncio.sleep(0.2)
        assert not listener.errors and not other.errors
    assert heard and set(heard) == {b"{}"}


async def test_an_anonymous_client_is_refused(bus: Bus) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(bus.server.url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_a_stranger_with_a_key_of_its_own_is_refused(bus: Bus, tmp_path: Path) -> None:
    seed = tmp_path / "stranger.nk"
    write_private(seed, new_user_seed())
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            bus.server.url, nkeys_seed=str(seed), allow_reconnect=False, max_reconnect_attempts=0
        )


async def test_a_service_finding_its_bucket_with_other_settings_keeps_it_as_it_is(
    own_nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Only an admin changes a stream's settings: an edge started with a longer session
    lifetime uses the bucket as it is, and says so."""
    async with connected(own_nats, "edge") as edge:
        await session_bucket(edge, 600, 1000)
        with caplog.at_level(logging.WARNING, "aitbc.bus"):
            bucket = await session_bucket(edge, 1200, 1000)
        await bucket.put("k", b"v")
        info = await edge.jetstream().stream_info(SESSIONS_STREAM)
    assert info.config.max_age == 600
    assert f"stream {SESSIONS_STREAM} has other settings" in caplog.text


async def test_the_admin_reaches_every_store_of_the_accounts_it_manages(
    own_nats: NatsServer,
) -> None:
    """From its own account, through its imports: it writes a key of each bucket, reads it,
    and purges the bucket; and publishes into the usage stream (what an operator repairs)."""
    for role, bucket in (
        ("keys", s.KEYS_LEASES_BUCKET),
        ("usage", s.USAGE_COUNTERS_BUCKET),
        ("usage", s.USAGE_LEASES_BUCKET),
        ("edge", s.DASHBOARD_SESSIONS_BUCKET),
    ):
        async with as_role(own_nats, role) as owner:
            await owner.nc.jetstream().create_key_value(bucket=bucket)
    async with as_role(own_nats, "admin") as admin:
        for store in STORES.values():
            if ADMINS[store.account] != "admin":
                continue
            js = jetstream(admin.nc, store.account)
            if store.stream.startswith("KV_"):
                kv = await js.key_value(store.stream.removeprefix("KV_"))
                await kv.put("repaired", b"1")
                assert (await kv.get("repaired")).value == b"1"
            else:
                await js.publish(s.usage_batch_subject(1), b"{}")
            assert (await js.stream_info(store.stream)).state.messages == 1, store.stream
            await js.purge_stream(store.stream)
            assert (await js.stream_info(store.stream)).state.messages == 0, store.stream
        assert not admin.errors
