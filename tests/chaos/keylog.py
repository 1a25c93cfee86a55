"""The key event log against the event store: every stored event in the stream once, in order,
byte for byte; and every change a client was told succeeded, in the store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from aitbc_contracts.subjects import MSG_ID_HEADER, POSITION_HEADER
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.sql import create_engine
from tests.key_stream import key_stream


@dataclass(frozen=True)
class Logged:
    position: int
    event_id: str
    type: str
    stream_id: str
    data: bytes


async def _store(database_url: str) -> list[Logged]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT position, event_id, type, stream_id, data FROM events ORDER BY position"
                )
            )
            return [Logged(int(p), e, t, s, d.encode()) for p, e, t, s, d in rows.all()]
    finally:
        await engine.dispose()


async def _stream(access: BusAccess) -> list[Logged]:
    return [
        Logged(
            int(m.headers.get(POSITION_HEADER, -1)),
            m.headers.get(MSG_ID_HEADER, ""),
            "",
            "",
            m.data,
        )
        for m in await key_stream(access)
    ]


def stored_events(database_url: str) -> list[Logged]:
    return asyncio.run(_store(database_url))


@dataclass(frozen=True)
class LogCheck:
    lost: int
    duplicated: int
    in_order: bool
    same_bytes: bool
    stored: list[Logged]


def check_key_log(database_url: str, access: BusAccess, timeout: float = 20.0) -> LogCheck:
    """Waits (up to `timeout`) for the relay to publish all that is stored, then compares (the
    stream read as `access`: an auditor's)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_events(database_url)
        logged = asyncio.run(_stream(access))
        if {e.event_id for e in stored} <= {e.event_id for e in logged}:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    ids = Counter(e.event_id for e in logged)
    lost = len({e.event_id for e in stored} - set(ids))
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    in_order = [e.position for e in logged] == list(range(1, len(logged) + 1)) and [
        e.event_id for e in logged
    ] == [e.event_id for e in stored[: len(logged)]]
    by_id = {e.event_id: e.data for e in logged}
    same_bytes = all(by_id.get(e.event_id, e.data) == e.data for e in stored)
    return LogCheck(lost, duplicated, in_order, same_bytes, stored)


@dataclass
class Manager:
    """A client's key-management loop: create a key, regenerate it, revoke it, again. Each call
    is one step; a refused step is tried again. `acked` lists what the edge said was done."""

    master: str
    acked: list[tuple[str, str]] = field(default_factory=list)  # (event type, key id)
    _key_id: str = ""
    _step: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self) -> Callable[[httpx.Client], httpx.Response]:
        def step(client: httpx.Client) -> httpx.Response:
            headers = {"X-API-Key": self.master}
            if self._step == 0:
                response = client.post("/v1/api-keys", json={"name": "chaos"}, headers=headers)
                done = response.status_code == 201
                if done:
                    self._key_id = response.json()["key_id"]
                event = "key.created"
            elif self._step == 1:
                response = client.post(f"/v1/api-keys/{self._key_id}/regenerate", headers=headers)
                done, event = response.status_code == 200, "key.regenerated"
            else:
                response = client.delete(f"/v1/api-keys/{self._key_id}", headers=headers)
                done, event = response.status_code == 200, "key.revoked"
            if done:
                with self._lock:
                    self.acked.append((event, self._key_id))
                self._step = (self._step + 1) % 3
            return response

        return step


def unacknowledged_and_missing(
    stored: list[Logged], managers: list[Manager]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(changes stored that no client was told of, changes acknowledged but not stored)."""
    chaos_keys = {  # the keys the managers made
        e.stream_id for e in stored if e.type.startswith("key.") and b'"name":"chaos"' in e.data
    }
    done = Counter(
        (e.type.rsplit(".", 1)[0], e.stream_id) for e in stored if e.stream_id in chaos_keys
    )
    acked = Counter(ack for manager in managers for ack in manager.acked)
    return list((done - acked).elements()), list((acked - done).elements())
