"""NATS plumbing every process needs the same way: connecting, answering, KV buckets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue
from prometheus_client import Counter

from aitbc_runtime.bus_access import INBOX_ROOT, BusAccess

log = logging.getLogger("aitbc.bus")

INBOX = INBOX_ROOT + "."
# The reply subject the server gives a request that came through a service import: the
# answer goes back to whatever the requester named, in the requester's own account.
IMPORTED_REPLY = "_R_."


class RefusedReplies:
    """Requests left unanswered because their reply subject was not an inbox: counted, and
    logged once per request subject and reply subject's first two tokens (a flood of them
    says so once, and a sender cannot grow this without bound)."""

    MAX_KINDS = 1024

    def __init__(self) -> None:
        self.count = 0
        self._seen: set[tuple[str, str]] = set()

    def add(self, subject: str, reply: str) -> None:
        self.count += 1
        kind = (subject, ".".join(reply.split(".", 2)[:2]))
        if kind in self._seen or len(self._seen) >= self.MAX_KINDS:
            return
        self._seen.add(kind)
        log.warning(
            "left a request on %s unanswered: its reply subject %.80s is not an inbox (an "
            "answer there could land anywhere, even in a stream); more like it are only counted",
            subject, reply,
        )  # fmt: skip


refused_replies = RefusedReplies()


def answerable(reply: str | None, subject: str = "") -> bool:
    """Whether a responder may answer a request with this reply subject: only an inbox, or
    the answer subject of a request from another account (`_R_.`).

    The server lets a responder (allow_responses) publish to whatever reply subject the
    requester named, past every deny: a stream's subject, or the JetStream API. So every
    responder asks this first, and drops a request it refuses (counted in `refused_replies`,
    logged once per kind). A request from another account arrives with a reply subject the
    server made, and its answer lands in the requester's account, where the requester could
    have published it itself: what keeps the stores safe from it is that they live in accounts
    of their own (aitbc_infra.bus_roles). A message with no reply subject was published, not
    requested: it is not refused here, and nothing is sent back. A prefix check: free on the
    hot path."""
    if not reply or reply.startswith((INBOX, IMPORTED_REPLY)):
        return True
    refused_replies.add(subject, reply)
    return False


RECONNECTS = Counter(
    "aitbc_nats_reconnects_total",
    "Times a NATS connection was lost and made again, by connection (aitbc-api, aitbc-keys...)",
    ["connection"],
)


def logged_callbacks(
    name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None
) -> dict[str, Any]:
    """A connection's callbacks, as nats.connect takes them: the log says when it is lost and
    when it is back; its errors are for debugging (each reconnect attempt raises one).

    A disconnection is INFO: every clean stop closes the connection too, and nats-py says so
    through the same callback. A loss shows as the WARNING of the reconnection that ends it
    (and, while it lasts, in what the process could not do)."""

    reconnects = RECONNECTS.labels(name)

    async def reconnected() -> None:
        reconnects.inc()
        log.warning("%s reconnected to NATS after losing it", name)
        if on_reconnect is not None:
            await on_reconnect()

    async def disconnected() -> None:
        log.info("%s disconnected from NATS", name)

    async def error(exc: Exception) -> None:
        log.debug("%s NATS error: %s", name, exc)

    return {"reconnected_cb": reconnected, "disconnected_cb": disconnected, "error_cb": error}


# A partition that drops packets without closing anything is seen only by unanswered pings:
# nats-py's default (one every two minutes, two unanswered) would keep an edge trusting its
# cached keys for minutes. One every 5 s, the third unanswered: noticed within 15-20 s.
PING_EVERY = 5
PINGS_UNANSWERED = 2

# An ordered consumer lives on one server. When that server dies while the client's own stays
# up, nothing but its missing heartbeats tells nats-py, which recreates the consumer after
# two of them are missed: with its default (5 s) a revocation or a usage count waited 10 s
# and more on a cluster. One a second costs an idle consumer one small message a second.
ORDERED_HEARTBEAT = 1.0


async def connect(
    access: BusAccess,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    wait: float = 60.0,
) -> NATS:
    """Connect as `access` says, waiting up to `wait` seconds for the server; then reconnect
    forever. Refused credentials are not waited for: they will not get better, nor will a
    credentials or TLS file that cannot be used (BusAccessError, before any attempt)."""
    options = {**access.options(), **logged_callbacks(name, on_reconnect)}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await _first_connection(name, options)
        except Exception as exc:
            if loop.time() > deadline or "Authorization Violation" in str(exc):
                raise
            log.warning("%s waiting for NATS at %s: %s", name, access.where(), exc)
            await asyncio.sleep(0.5)


async def _first_connection(name: str, options: dict[str, Any]) -> NATS:
    """One round of attempts at the servers, then the connection, set to reconnect forever.

    nats-py's unlimited reconnects (max_reconnect_attempts=-1) hold for the first connection
    too: it would retry an unreachable or refusing server forever, silently, whatever
    `connect`'s wait says. So the first is made with them off, and they are turned on after
    (nats-py reads both options at each loss)."""
    failures: list[Exception] = []
    logged = options["error_cb"]

    async def noted(exc: Exception) -> None:
        failures.append(exc)
        await logged(exc)

    try:
        nc = await nats.connect(
            **{**options, "error_cb": noted},
            name=name,
            allow_reconnect=False,  # a refusal raises at once
            max_reconnect_attempts=1,  # a server that cannot be reached is tried twice
            reconnect_time_wait=0.5,
            ping_interval=PING_EVERY,
            max_outstanding_pings=PINGS_UNANSWERED,
        )
    except nats.errors.NoServersError:
        if failures:  # why the servers could not be reached, rather than that they could not
            raise failures[-1] from None
        raise
    nc.options["allow_reconnect"] = True
    nc.options["max_reconnect_attempts"] = -1
    return nc


def reconnects(nc: NATS) -> int:
    """How many times this connection has reconnected: a change means consumers may be gone."""
    return int(nc.stats["reconnects"])


async def until_answered(nc: NATS, subject: str, payload: bytes, within: float = 10.0) -> None:
    """Waits until `subject` has a responder that answers: a service is ready only then.

    A just-made subscription can take a moment to be seen by the server that routes the
    request, so a service asks itself before it says it is ready.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await nc.request(subject, payload, timeout=1.0)
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)


SETTINGS_TIMEOUT = 2.0  # a refused update is never answered: how long to wait for one


def _asked(config: StreamConfig) -> dict[str, Any]:
    """What `config` sets (left at no default), its name and replicas excepted."""
    return {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name not in ("name", "num_replicas") and getattr(config, f.name) != f.default
    }


async def update_or_keep(nc: NATS, config: StreamConfig) -> None:
    """Bring an existing stream's settings up to what `config` sets, its replicas excepted.
    Only an admin may change a stream (aitbc_infra.bus_roles), so a service whose settings
    changed says so and carries on with the stream as it is, until an admin updates it; the
    replicas of every stream are the bus provisioning's to change (aitbc_infra.bus_streams)."""
    js = nc.jetstream(timeout=SETTINGS_TIMEOUT)
    try:
        found = (await js.stream_info(config.name or "")).config
        if (config.num_replicas or 1) != (found.num_replicas or 1):
            log.warning(
                "stream %s has %s replicas, not the %s of NATS_REPLICAS: provision the bus "
                "again (`aitbc-bus-config SEEDS_DIR --provision URL --replicas %s`)",
                config.name, found.num_replicas or 1, config.num_replicas, config.num_replicas,
            )  # fmt: skip
        changes = {
            name: value for name, value in _asked(config).items() if getattr(found, name) != value
        }
        if changes:
            await js.update_stream(replace(found, **changes))
    except Exception as exc:  # refused (no answer: a timeout), or a change JetStream rejects
        log.warning(
            "stream %s has other settings than this version's and they could not be changed "
            "(%s; an admin may change them): using it as it is",
            config.name, type(exc).__name__,
        )  # fmt: skip


MAKE_WITHIN = 30.0  # seconds a service's start asks JetStream to make a bucket


async def key_value(nc: NATS, config: KeyValueConfig) -> KeyValue:
    """The KV bucket of `config`: made on first use (with its replicas), its TTL and size
    brought up to date after where this role may (update_or_keep). Asked again while JetStream
    does not answer, for up to MAKE_WITHIN: a cluster's meta leader, busy or being elected,
    answers late, and a start should wait for it rather than fail."""
    deadline = asyncio.get_running_loop().time() + MAKE_WITHIN
    while True:
        try:
            return await _made(nc, config)
        except nats.errors.TimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("JetStream did not answer making bucket %s; asking again", config.bucket)


async def _made(nc: NATS, config: KeyValueConfig) -> KeyValue:
    js = nc.jetstream()
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # it exists with other settings (a TTL changed, say)
        wanted = StreamConfig(
            name=f"KV_{config.bucket}",
            max_age=config.ttl or 0,
            max_bytes=config.max_bytes or -1,
            num_replicas=config.replicas,
        )
        await update_or_keep(nc, wanted)
        return await js.key_value(config.bucket)
