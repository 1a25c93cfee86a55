"""`aitbc events verify`: the hash chain checked in both witnesses of the key event log, the
event store and the JetStream stream, and the two compared position by position; then the
signed checkpoints (aitbc_cli.checkpoints), held in both, checked against both chains.

It names the first event altered, removed, reordered or inserted in each, every checkpoint
that is forged or that a rewritten history no longer matches, and exits 1 when anything is
broken. The store is read directly (DATABASE_URL) rather than through the keys service, so
that a service that lies cannot vouch for its own log.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, TextIO

from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from aitbc_cli import stream
from aitbc_cli.bus import BusError, Send
from aitbc_cli.checkpoints import Held, audit, report
from aitbc_cli.output import print_json
from aitbc_contracts.chain import Entry, Verifier, compare, describe
from aitbc_contracts.checkpoints import number_of_subject
from aitbc_contracts.subjects import (
    HASH_HEADER,
    KEY_CHECKPOINTS_STREAM,
    KEY_CHECKPOINTS_SUBJECTS,
    KEY_EVENTS_SUBJECTS,
    POSITION_HEADER,
)
from aitbc_runtime import environment
from aitbc_runtime.bus_access import BusAccess
from aitbc_runtime.checkpoint_keys import CheckpointKeyError, TrustedKey, every_events

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def default_database_url() -> str:
    """The keys service's database as `just up` runs it: DATABASE_URL, else DATA_DIR/keys.db."""
    return environment.keys_database_url()


def default_checkpoint_keys() -> list[str]:
    """KEYS_CHECKPOINT_PUBLIC_KEY (keys or files, comma-separated), else the public key `just
    up` made in DATA_DIR/creds, else none."""
    if os.environ.get("KEYS_CHECKPOINT_PUBLIC_KEY"):
        return [v for v in os.environ["KEYS_CHECKPOINT_PUBLIC_KEY"].split(",") if v.strip()]
    local = environment.data_dir() / "creds" / "checkpoint-key.pub"
    return [str(local)] if local.exists() else []


def trusted_keys(given: list[str] | None) -> list[TrustedKey]:
    try:
        return [TrustedKey.parse(value) for value in given or default_checkpoint_keys()]
    except CheckpointKeyError as exc:
        raise BusError(str(exc)) from exc


def cadence() -> int:
    """How often the keys service signs: KEYS_CHECKPOINT_EVERY_EVENTS, as it is told."""
    try:
        return every_events(os.environ)
    except ValueError as exc:
        raise BusError(str(exc)) from exc


async def check_store(database_url: str) -> Verifier:
    return (await read_store(database_url))[0]


async def read_store(database_url: str) -> tuple[Verifier, list[Held]]:
    # Imported here: SQLAlchemy takes a third of a second to import, and only verify needs it.
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    # The keys service's event table, read only: position order is the chain's order.
    events = sa.table("events", sa.column("position"), sa.column("data"), sa.column("chain_hash"))
    checkpoints = sa.table("checkpoints", sa.column("number"), sa.column("data"))
    verifier = Verifier()
    engine = store_engine(database_url)
    try:
        conn = await connected(engine)
        try:
            rows = await conn.stream(
                sa.select(events.c.position, events.c.data, events.c.chain_hash).order_by(
                    events.c.position
                )
            )
            async for position, data, chain_hash in rows:
                verifier.add(Entry(int(position), data.encode(), chain_hash or None))
            signed = await conn.execute(sa.select(checkpoints.c.number, checkpoints.c.data))
            held = [Held("store", int(n), data.encode()) for n, data in signed.all()]
        finally:
            await conn.close()
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        raise BusError(f"cannot read the event store (is it migrated?): {reason}") from exc
    finally:
        await engine.dispose()
    return verifier, held


def store_engine(database_url: str) -> AsyncEngine:
    """An engine for the event store, or one line saying why the URL will not do. No message
    holds the URL itself: it may hold a password."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from aitbc_runtime.sql import normalise_database_url, sqlite_path

    url = normalise_database_url(database_url)
    path = sqlite_path(url)
    if path is not None and not path.exists():  # connecting would create an empty one
        raise BusError(
            f"there is no event store at {path} (set DATA_DIR, DATABASE_URL or --database-url)"
        )
    try:
        return create_async_engine(url)
    # not a URL, no driver for it, a port that is not a number (ValueError)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise BusError(f"cannot use the event store's database URL: {reason}") from exc


async def connected(engine: AsyncEngine) -> AsyncConnection:
    """A connection to the event store, or one line saying why there is none."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return await engine.connect()
    except OSError as exc:  # its server is away: no such host, nothing listening, no answer
        raise BusError(f"cannot reach the event store's database: {exc}") from exc
    except SQLAlchemyError as exc:  # no such database or user, a password refused
        reason = str(exc).splitlines()[0]
        raise BusError(f"cannot connect to the event store's database: {reason}") from exc
    # the driver refused the URL's options (`?foo=`: TypeError) or its port (OverflowError)
    except (TypeError, OverflowError) as exc:
        raise BusError(f"cannot use the event store's database URL: {exc}") from exc


async def check_stream(access: BusAccess, wait: float) -> Verifier:
    return (await read_stream(access, wait))[0]


async def read_stream(access: BusAccess, wait: float) -> tuple[Verifier, list[Held]]:
    verifier = Verifier()

    def sink(sequence: int, _subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        headers = headers or {}
        position = headers.get(POSITION_HEADER, "")
        verifier.add(
            Entry(
                int(position) if position.isdecimal() else None,
                data,
                headers.get(HASH_HEADER),
                sequence,
            )
        )

    nc = await stream.connect(access, wait)
    try:
        read = await stream.read(nc, KEY_EVENTS_SUBJECTS, sink)
        held = await stream_checkpoints(nc)
    finally:
        await nc.close()
    verifier.finish(read.last_sequence)
    return verifier, held


async def stream_checkpoints(nc: NATS) -> list[Held]:
    """Every message of the checkpoints' stream (none if there is no such stream yet)."""
    held: list[Held] = []

    def sink(_sequence: int, subject: str, data: bytes, _headers: dict[str, str] | None) -> None:
        held.append(Held("stream", number_of_subject(subject), data))

    try:
        await nc.jetstream().stream_info(KEY_CHECKPOINTS_STREAM)
    except NotFoundError:
        return held
    await stream.read(nc, KEY_CHECKPOINTS_SUBJECTS, sink, name=KEY_CHECKPOINTS_STREAM)
    return held


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
    keys = trusted_keys(args.checkpoint_key)
    store, store_checkpoints = await read_store(args.database_url)
    events, held = await read_stream(args.bus, args.timeout)
    differ = compare(store, events)
    logs = {"store": store, "stream": events}
    checked = audit([*store_checkpoints, *held], keys, logs, cadence())
    witnesses = [_witness("store", store), _witness("stream", events)]
    intact = all(w["intact"] for w in witnesses) and differ is None and not checked.problems
    if args.json:
        compared = None if differ is None else differ.__dict__
        signed = {**checked.__dict__, "problems": [p.__dict__ for p in checked.problems]}
        print_json(
            {"intact": intact, "witnesses": witnesses, "differ": compared, "checkpoints": signed},
            out,
        )
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
    out.write("checkpoints: " + "\n".join(report(checked)) + "\n")
    out.write("the key event log is intact\n" if intact else "the key event log is BROKEN\n")
    return 0 if intact else 1
