"""After a full run, no plaintext key is in the database, the key event stream or any log."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx

from aitbc_runtime.bus_access import BusAccess
from tests.e2e.stack import Stack
from tests.key_scan import plaintext_keys
from tests.key_stream import key_stream


async def stream_contents(access: BusAccess) -> str:
    messages = await key_stream(access)
    return "\n".join(repr(m.headers) + m.data.decode() for m in messages if m.data)


def database_contents(stack: Stack) -> str:
    path = stack.database_url.split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
        return "\n".join(repr(db.execute(f'select * from "{t}"').fetchall()) for t in tables)


def test_no_plaintext_key_is_stored_published_or_logged(stack: Stack, api: httpx.Client) -> None:
    # A full flow of its own, so the scan has something to find if anything leaks.
    master = api.post("/v1/accounts").json()["master_key"]["key"]
    made = api.post("/v1/api-keys", json={"name": "scan"}, headers={"X-API-Key": master}).json()
    issued = {master, made["key"]}
    assert api.get("/v1/jobs", params={"api_key": made["key"]}).status_code == 200
    fresh = api.post(
        f"/v1/api-keys/{made['key_id']}/regenerate", headers={"X-API-Key": master}
    ).json()
    issued.add(fresh["key"])
    assert api.get("/v1/jobs", params={"api_key": fresh["key"]}).status_code == 200
    assert (
        api.delete(f"/v1/api-keys/{made['key_id']}", headers={"X-API-Key": master}).status_code
        == 200
    )

    stream = asyncio.run(stream_contents(stack.nats.access("auditor")))
    assert made["key_id"] in stream  # the scan looks at the right place
    for place, text in [
        ("database", database_contents(stack)),
        ("stream", stream),
        ("logs", stack.logs()),
    ]:
        assert plaintext_keys(text) == set(), f"plaintext key in the {place}"
        assert not any(key in text for key in issued)
