"""Foreign messages on the key event stream of a whole system with two edges: a `{}`, an event
with a wrong hash, a forged event that continues the chain, and a copy of an event under a
wrong position. A key revoked through one edge after them is refused by both edges within the
usual time, and the forged plan change sticks nowhere.

A system of its own: the forged messages stay in its stream (only the key log's admin may
delete them), and other tests replay and verify the session system's stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import nats
import pytest

from aitbc_contracts.events import PlanChanged
from aitbc_contracts.subjects import (
    HASH_HEADER,
    KEY_EVENTS_STREAM,
    POSITION_HEADER,
    key_event_subject,
)
from tests.e2e.stack import Stack
from tests.key_messages import Chained, Message, headers, with_headers
from tests.scrape import value

USUAL = 15.0  # seconds within which a revocation reaches every edge (tests/e2e/test_isolation.py)


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, list[httpx.Client]]]:
    stack = Stack(tmp_path_factory.mktemp("foreign-events")).start()
    try:
        second = stack.add_edge("api-second").start()
        clients = [httpx.Client(base_url=url, timeout=10) for url in (stack.api_url, second.url)]
        yield stack, clients
        for client in clients:
            client.close()
    finally:
        stack.stop()


async def forge(stack: Stack, account_id: str) -> None:
    """Into the key log itself, as its own admin: garbage, an event with a wrong hash, a forged
    plan change continuing the chain (what anyone who reads the stream can make), and a copy of
    the last genuine event under a wrong position. The log is in the NATS account KEYLOG, where
    no role but its writer and `keylog-admin` can store anything (what
    `admin` publishes there is stored nowhere); the readers get it through their mirror."""
    nc = await nats.connect(**stack.nats.options("keylog-admin"))
    try:
        js = nc.jetstream()
        info = await js.stream_info(KEY_EVENTS_STREAM)
        last = await js.get_msg(KEY_EVENTS_STREAM, seq=info.state.last_seq)
        found = dict(last.headers or {})
        position, head = int(found[POSITION_HEADER]), found[HASH_HEADER]
        forger = Chained(position, head)
        enterprise = PlanChanged(
            event_id="forged",
            stream_id=account_id,
            version=99,
            account_id=account_id,
            occurred_at=datetime.now(UTC),
            plan="enterprise",
            previous_plan="free",
        )
        subject = key_event_subject(account_id, account_id)
        messages: list[tuple[str, Message]] = [
            ("aitbc.keys.events.x", (b"{}", {})),
            (subject, with_headers(forger.forged_next(enterprise), Aitbc_Hash="0" * 64)),
            (subject, forger.forged_next(enterprise)),
            (subject, (last.data or b"", headers(position + 9, head))),
        ]
        for where, (data, their_headers) in messages:
            await js.publish(where, data, headers=their_headers, stream=KEY_EVENTS_STREAM)
    finally:
        await nc.close()


def test_a_revocation_after_forged_events_reaches_both_edges_in_the_usual_time(
    edges: tuple[Stack, list[httpx.Client]],
) -> None:
    stack, clients = edges
    signed_up = clients[0].post("/v1/accounts", json={"name": "e2e"}).json()
    master = signed_up["master_key"]["key"]
    created = clients[0].post(
        "/v1/api-keys", json={"name": "worker"}, headers={"X-API-Key": master}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["key_id"]
    for client in clients:  # each edge has the key in its cache now
        assert client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200

    asyncio.run(forge(stack, signed_up["account_id"]))
    time.sleep(0.5)  # every reader has them by now; they are not what the test waits for
    revoked = clients[0].delete(f"/v1/api-keys/{key_id}", headers={"X-API-Key": master})
    assert revoked.status_code == 200, revoked.text

    started = time.monotonic()
    for client in clients:
        while (answer := client.get("/v1/jobs", headers={"X-API-Key": key})).status_code == 200:
            assert time.monotonic() - started < USUAL, f"{client.base_url} admits a revoked key"
            time.sleep(0.1)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "API_KEY_REVOKED"
    for client in clients:  # the forged enterprise plan is nobody's: the account is on free
        answer = client.get("/v1/jobs", headers={"X-API-Key": master})
        assert answer.status_code == 200
        assert answer.headers["ratelimit-policy"].startswith('"free"')
    readers = {
        "api": "edge-auth-cache",
        "api-second": "edge-auth-cache",
        "usage": "usage-plan-events",
        "keys": "keys-facts-index",
    }
    for name, reader in readers.items():  # every reader refused the garbage, and counted it
        log = (stack.root / f"{name}.log").read_text(errors="replace")
        assert log.count("refused a message on the key event stream") == 2, name
        assert "the key event stream contradicts what it has taken" in log, name
        counted = value(stack.metrics(name), "aitbc_key_events_refused_total", reader=reader)
        assert counted == 2, name
