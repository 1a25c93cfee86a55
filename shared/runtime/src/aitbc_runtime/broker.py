"""The FastStream broker of a service (keys, usage: the services that depend on FastStream)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.security import NatsNKey, NatsSecurity

from aitbc_runtime import tracing
from aitbc_runtime.bus import answerable, logged_callbacks
from aitbc_runtime.bus_access import BusAccess


async def undecoded(message: NatsMessage) -> bytes:
    """Bodies as they came: the handlers decode them (msgspec, into the contract's types).
    FastStream's default JSON-decodes every body first: wasted work on the hot path, and a deeply
    nested body made it raise before any handler could reply, so the caller only timed out."""
    return message.body


# FastStream's own lines go through this process's logging (its format, no colour codes of
# FastStream's own handler), and only from WARNING: below that it notes its internals, a line
# "callback for Task-N is being executed" each time a subscriber's task ends, at every stop.
faststream_log = logging.getLogger("aitbc.faststream")
faststream_log.setLevel(logging.WARNING)


class AnswerableOnly(BaseMiddleware):
    """Every FastStream subscriber's guard: a request whose reply subject is not an inbox is
    dropped unhandled and unanswered (aitbc_runtime.bus.answerable says why). FastStream sends
    a handler's result to the message's `reply_to`: emptied, nothing is sent."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        if answerable(msg.reply_to, msg.raw_message.subject):
            return await call_next(msg)
        msg.reply_to = ""
        return None


class Traced(BaseMiddleware):
    """With tracing on, each message handled in a span of its own, a child of its sender's
    (aitbc_runtime.tracing.serving): keys commands, usage queries."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        if not tracing.enabled:
            return await call_next(msg)
        with tracing.active(tracing.serving(msg.raw_message.subject, msg.headers)):
            return await call_next(msg)


def _security(access: BusAccess) -> NatsSecurity | None:
    """The same credentials and TLS as `access.options()`, in FastStream's terms."""
    context = access.tls_context()
    first = context is not None  # TLS from the first byte, as BusAccess.options says
    if access.public_key is not None:
        return NatsNKey(access.creds, ssl_context=context, tls_handshake_first=first)
    return None if context is None else NatsSecurity(ssl_context=context, tls_handshake_first=first)


def service_broker(access: BusAccess, name: str) -> NatsBroker:
    """The service's one connection (its bare hot-path subscriptions use `broker.connection`):
    it tells the log when it is lost and back, as `aitbc_runtime.bus.connect`'s do."""
    return NatsBroker(
        access.servers,
        security=_security(access),
        inbox_prefix=access.inbox_prefix,
        name=name,
        decoder=undecoded,
        middlewares=[AnswerableOnly, Traced],
        max_reconnect_attempts=-1,  # keep serving what is cached; reconnect for ever
        reconnect_time_wait=1,
        **logged_callbacks(name),
        # FastStream logs every message it handles at this level: DEBUG keeps them out of INFO
        # logs, where they would cost more than the handling itself.
        log_level=logging.DEBUG,
        logger=faststream_log,
    )
