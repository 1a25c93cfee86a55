"""The bare auth-check subscription over a real nats-server: every check gets a reply (even when
a handler raises), those already taken are answered on shutdown, and a restart of the server
does not lose the subscription."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK
from aitbc_infra.nats_server import NatsServer
from aitbc_keys.responder import CheckResponder

INDEXED, STORED, BROKEN = b"indexed", b"stored", b"broken"


class SlowChecks:
    """Answers b"indexed" inline; b"stored" after `release`; raises on b"broken"."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.looking_up = 0

    def check_indexed(self, data: bytes) -> bytes | str:
        if data == BROKEN:
            raise RuntimeError("a bug")
        return b"facts" if data == INDEXED else data.decode()

    async def check_stored(self, request: str) -> bytes:
        self.looking_up += 1
        await self.release.wait()
        if request == "stored-broken":
            raise RuntimeError("another bug")
        return b"from the database"


@pytest.fixture
async def nc(own_nats: NatsServer) -> AsyncIterator[Client]:
    # The keys service's role: it answers checks, and may send one (it asks itself when it
    # starts), so one connection plays both sides.
    client = await nats.connect(**own_nats.options("keys"), reconnect_time_wait=0.1)
    yield client
    await client.close()


async def responder(nc: Client, checks: SlowChecks, max_lookups: int = 64) -> CheckResponder:
    subscription = CheckResponder(checks, max_lookups)  # type: ignore[arg-type]
    await subscription.start(nc)
    return subscription


async def until(condition: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_every_check_gets_a_reply_even_when_a_handler_raises(nc: Client) -> None:
    fake = SlowChecks()
    fake.release.set()
    checks = await responder(nc, fake)
    replies = [
        (await nc.request(KEYS_CHECK, payload, timeout=5)).data
        for payload in (INDEXED, STORED, BROKEN, b"stored-broken")
    ]
    assert replies[:2] == [b"facts", b"from the database"]
    for data in replies[2:]:
        rejected = m.check_reply_decoder.decode(data)
        assert isinstance(rejected, m.Rejected) and rejected.code == m.Code.INTERNAL_ERROR
    await checks.stop()


async def test_database_lookups_are_bounded_and_indexed_checks_keep_flowing(nc: Client) -> None:
    fake = SlowChecks()
    checks = await responder(nc, fake, max_lookups=2)
    slow = [asyncio.ensure_future(nc.request(KEYS_CHECK, STORED, timeout=5)) for _ in range(2)]
    await until(lambda: fake.looking_up == 2)
    assert (await nc.request(KEYS_CHECK, INDEXED, timeout=5)).data == b"facts"
    third = asyncio.ensure_future(nc.request(KEYS_CHECK, STORED, timeout=5))
    await asyncio.sleep(0.2)
    assert fake.looking_up == 2  # the third waits for a free lookup
    fake.release.set()
    assert {(await r).data for r in [*slow, third]} == {b"from the database"}
    await checks.stop()


async def test_checks_taken_before_shutdown_are_answered(nc: Client) -> None:
    fake = SlowChecks()
    checks = await responder(nc, fake)
    pending = [asyncio.ensure_future(nc.request(KEYS_CHECK, STORED, timeout=5)) for _ in range(3)]
    await until(lambda: fake.looking_up == 3)
    stopping = asyncio.ensure_future(checks.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waits for the lookups it took
    fake.release.set()
    await stopping
    assert [(await r).data for r in pending] == [b"from the database"] * 3
    with pytest.raises(nats.errors.NoRespondersError):  # and takes no more
        await nc.request(KEYS_CHECK, INDEXED, timeout=2)


async def test_the_subscription_survives_a_server_restart(nc: Client, own_nats: NatsServer) -> None:
    checks = await responder(nc, SlowChecks())
    own_nats.restart()
    async with asyncio.timeout(20):
        while True:
            try:
                reply = await nc.request(KEYS_CHECK, INDEXED, timeout=1)
                break
            except nats.errors.Error:
                await asyncio.sleep(0.1)
    assert reply.data == b"facts"
    await checks.stop()
