"""`aitbc events verify`: the hash chain checked in both witnesses of the key event log, the
event store and the JetStream stream, and the two compared position by position.

It names the first event altered, removed, reordered or inserted in each, and exits 1 when
anything is broken. The store is read directly (DATABASE_URL) rather than through the keys
service, so that a service that lies cannot vouch for its own log.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from aitbc_cli import stream
from aitbc_cli.bus import BusError, Send
from aitbc_cli.output import print_json
from aitbc_contracts.chain import Entry, Verifier, compare, describe
from aitbc_contracts.subjects import HASH_HEADER, KEY_EVENTS_SUBJECTS, POSITION_HEADER
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess


def default_database_url() -> str:
    """The keys service's database as `just up` runs it: DATABASE_URL, else DATA_DIR/keys.db."""
    return environment.keys_database_url()


async def check_store(database_url: str) -> Verifier:
    # Imported here: SQLAlchemy takes a third of a second to import, and only verify needs it.
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from aitbc_runtime.sql import normalise_database_url, sqlite_path

    # The keys service's event table, read only: position order is the chain's order.
    events = sa.table("events", sa.column("position"), sa.column("data"), sa.column("chain_hash"))
    url = normalise_database_url(database_url)
    path = sqlite_path(url)
    if path is not None and not path.exists():  # connecting would create an empty one
        raise BusError(
            f"there is no event store at {path} (set DATA_DIR, DATABASE_URL or --database-url)"
        )
    verifier = Verifier()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.stream(
                sa.select(events.c.position, events.c.data, events.c.chain_hash).order_by(
                    events.c.position
                )
            )
            async for position, data, chain_hash in rows:
                verifier.add(Entry(int(position), data.encode(), chain_hash or None))
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise BusError(f"cannot read the event store (is it migrated?): {reason}") from exc
    finally:
        await engine.dispose()
    return verifier


async def check_stream(access: BusAccess, wait: float) -> Verifier:
    verifier = Verifier()

    def sink(sequence: int, _subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        headers = headers or {}
        position = headers.get(POSITION_HEADER, "")
        verifier.add(
            Entry(
                int(position) if position.isdigit() else None,
                data,
                headers.get(HASH_HEADER),
                sequence,
            )
        )

    nc = await stream.connect(access, wait)
    try:
        read = await stream.read(nc, KEY_EVENTS_SUBJECTS, sink)
    finally:
        await nc.close()
    verifier.finish(read.last_sequence)
    return verifier


def _witness(name: str, verifier: Verifier) -> dict[str, Any]:
    found = verifier.first_break
    return {
        "name": name,
        "events": verifier.count,
        "head": verifier.head,
        "intact": found is None,
        "break": None if found is None else found.__dict__,
    }


async def verify_log(args: argparse.Namespace, send: Send, out: TextIO) -> int:
    store = await check_store(args.database_url)
    events = await check_stream(args.bus, args.timeout)
    differ = compare(store, events)
    witnesses = [_witness("store", store), _witness("stream", events)]
    intact = all(w["intact"] for w in witnesses) and differ is None
    if args.json:
        compared = None if differ is None else differ.__dict__
        print_json({"intact": intact, "witnesses": witnesses, "differ": compared}, out)
        return 0 if intact else 1
    for name, verifier in (("store", store), ("stream", events)):
        found = verifier.first_break
        state = f"intact, head {verifier.head[:16] or '-'}" if found is None else describe(found)
        out.write(f"{name + ':':8}{verifier.count} events, {state}\n")
    lag = store.position - events.position
    if differ is not None:
        out.write(f"{'both:':8}{describe(differ)}\n")
    elif lag > 0:
        out.write(f"{'both:':8}agree; the stream is {lag} events behind the store\n")
    else:
        out.write(f"{'both:':8}agree\n")
    out.write("the key event log is intact\n" if intact else "the key event log is BROKEN\n")
    return 0 if intact else 1
