"""The one way the CLI talks to the services: a command over NATS request/reply."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError

from aitbc_contracts import messages
from aitbc_contracts.messages import AnyCommand, Reply
from aitbc_contracts.subjects import KEYS_COMMANDS

DEFAULT_NATS_URL = "nats://127.0.0.1:4322"
DEFAULT_TIMEOUT = 5.0

# What a command group is given to reach the keys service; tests pass a fake.
Send = Callable[[AnyCommand], Awaitable[Reply]]


class BusError(Exception):
    """The services could not be reached or answered nonsense: a one-line message for people."""


def default_nats_url() -> str:
    return os.environ.get("NATS_URL", DEFAULT_NATS_URL)


async def _quiet(_: Exception) -> None:
    """nats-py logs every connection error with a traceback; the CLI reports one line instead."""


async def connect(nats_url: str, wait: float = DEFAULT_TIMEOUT, client: NATS | None = None) -> NATS:
    """One connection for one command: fail fast, with a one-line reason, when NATS is away."""
    nc = client or NATS()
    options: dict[str, Any] = {  # as nats.connect() takes them (Client.connect types them int)
        "servers": [url.strip() for url in nats_url.split(",")],  # a cluster: any of them
        "connect_timeout": min(wait, 2.0),
        "allow_reconnect": False,
        # max_reconnect_attempts=0 would mean "forever" to nats-py: 1 gives up after a retry.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "error_cb": _quiet,
    }
    try:
        await asyncio.wait_for(nc.connect(**options), wait)
        return nc
    except (TimeoutError, NoServersError, OSError, NatsTimeoutError) as exc:
        raise BusError(
            f"cannot reach NATS at {nats_url} (is it running? set NATS_URL or --nats-url)"
        ) from exc
    except Exception as exc:  # a malformed URL, a refused handshake, ...
        raise BusError(f"cannot reach NATS at {nats_url}: {exc}") from exc


async def request(
    nats_url: str,
    command: AnyCommand,
    subject: str = KEYS_COMMANDS,
    wait: float = DEFAULT_TIMEOUT,
) -> Reply:
    nc = await connect(nats_url, wait)
    try:
        msg = await nc.request(subject, messages.encoder.encode(command), timeout=wait)
    except NoRespondersError as exc:
        raise BusError(f"no keys service is answering on {subject} (is it running?)") from exc
    except (TimeoutError, NatsTimeoutError) as exc:
        raise BusError(f"the keys service did not answer within {wait:g} s") from exc
    finally:
        await nc.close()
    try:
        reply: Reply = messages.reply_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise BusError(f"the keys service sent a reply the CLI cannot read: {exc}") from exc
    return reply


def sender(nats_url: str, wait: float = DEFAULT_TIMEOUT) -> Send:
    async def send(command: AnyCommand) -> Reply:
        return await request(nats_url, command, wait=wait)

    return send
