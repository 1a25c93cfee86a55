"""The bus entry point of the keys commands: decode, call the service layer with the power of
the subject the command came on, encode. No exception ever crosses the wire. Key checks have a
bare subscription (aitbc_keys.responder).

The subject is the sender's power because the NATS server lets only the right roles publish
there (aitbc_infra.bus_roles); nothing in the message itself grants any power."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import msgspec
from faststream.nats import NatsBroker
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.events import KeyKind
from aitbc_contracts.keys import KeyEventView
from aitbc_contracts.powers import SUBJECTS, Power
from aitbc_contracts.subjects import KEYS_QUEUE
from aitbc_keys import metrics, store
from aitbc_keys.domain import MAX_KEYS_PER_ACCOUNT, KeysError, utcnow
from aitbc_keys.facts import FactsIndex
from aitbc_keys.failures import FAILED, UNAVAILABLE, database_unavailable, guard, rejected
from aitbc_keys.service_layer.handlers import handle
from aitbc_keys.service_layer.unit_of_work import SqlUnitOfWork
from aitbc_runtime import logs, tracing

log = logging.getLogger("aitbc_keys.entrypoint")

# A change commits within this share of the time its sender waits, or not at all: the rest is
# for the commit itself and the answer's way back (see Command.answer_within_ms).
COMMIT_WITHIN_SHARE = 0.75


async def _nothing() -> None:
    return None


class CommandEndpoint:
    """Answers command messages with reply messages, independent of the transport."""

    def __init__(
        self,
        engine: AsyncEngine,
        index: KeyEventView | None = None,
        on_commit: Callable[[Sequence[store.Record]], None] = lambda _: None,
        clock: Callable[[], datetime] = utcnow,
        max_keys: int = MAX_KEYS_PER_ACCOUNT,
        told: Callable[[], Awaitable[None]] = _nothing,
        kinds: Callable[[str], KeyKind | None] = lambda _: None,
    ) -> None:
        self.engine = engine
        self.index = index if index is not None else FactsIndex()
        self.kinds = kinds  # the keys' kinds the facts index holds: a master actor is not loaded
        self.on_commit = on_commit  # tells the other keys processes, wakes the outbox relay
        self.clock = clock
        self.max_keys = max_keys  # live keys an account may hold
        self.told = told  # until the other keys processes have been told of its commits

    async def answer(self, data: bytes, power: Power) -> bytes:
        """The encoded reply to a command from a sender with `power`, counted and timed by
        command and outcome (aitbc_keys.metrics)."""
        received = time.monotonic()
        try:
            command = m.command_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("malformed command: %s", exc)
            metrics.MALFORMED.inc()
            return rejected(m.Code.VALIDATION_ERROR, f"malformed command: {exc}")
        if _holds_nul(command):  # PostgreSQL's text cannot: it would fail there, not here
            metrics.MALFORMED.inc()
            return rejected(m.Code.VALIDATION_ERROR, "no field of a command may hold a NUL")
        if tracing.enabled:  # the message's span (aitbc_runtime.broker.Traced)
            tracing.note("aitbc.command", type(command).__name__)
        series = metrics.BY_COMMAND[type(command)]
        outcome, reply = await self._carried_out(command, power, received, series)
        outcome.inc()
        series.seconds.observe(time.monotonic() - received)
        return reply

    async def _carried_out(
        self, command: m.AnyCommand, power: Power, received: float, series: metrics.CommandSeries
    ) -> tuple[Counter, bytes]:
        """The reply to a decoded command, and the outcome to count it under."""
        deadline = None
        if command.answer_within_ms is not None:
            deadline = received + command.answer_within_ms / 1000 * COMMIT_WITHIN_SHARE
        with logs.handling(command.request_id):
            return await self._answer(command, power, deadline, series)

    async def _answer(
        self,
        command: m.AnyCommand,
        power: Power,
        deadline: float | None,
        series: metrics.CommandSeries,
    ) -> tuple[Counter, bytes]:
        try:
            reply = await self.execute(command, power, deadline)
        except KeysError as exc:
            log.info(
                "%s refused: %s (request %s, %s subject)",
                type(command).__name__, exc.code, command.request_id, power.value,
            )  # fmt: skip
            return series.rejected, rejected(exc.code, exc.message)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning(
                    "%s: the database is unavailable: %s (request %s)",
                    type(command).__name__, type(exc).__name__, command.request_id,
                )  # fmt: skip
                return series.error, rejected(m.Code.SERVICE_UNAVAILABLE, UNAVAILABLE)
            log.exception("%s failed (request %s)", type(command).__name__, command.request_id)
            return series.error, FAILED
        await self.told()
        return series.ok, m.encoder.encode(reply)

    async def execute(
        self, command: m.AnyCommand, power: Power, deadline: float | None = None
    ) -> m.Reply:
        """Carries out the command for a sender with `power`; a change not ready to commit by
        `deadline` (time.monotonic()) is not applied (store.TooLate)."""
        uow = SqlUnitOfWork(
            self.engine, self.index, self.on_commit, self.clock(), deadline, self.max_keys,
            self.kinds,
        )  # fmt: skip
        return await handle(command, uow, power)


def _holds_nul(command: m.AnyCommand) -> bool:
    """Whether a text field of the command, or of a list in it, holds a NUL character."""
    for value in msgspec.structs.astuple(command):
        texts = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            return True
    return False


def subscribe(broker: NatsBroker, endpoint: CommandEndpoint) -> None:
    """Register the command endpoint on the broker, one subscriber per power's subject, in the
    queue group shared by every keys service."""
    for power, subject in SUBJECTS.items():
        broker.subscriber(subject, queue=KEYS_QUEUE, max_workers=16)(_answering(endpoint, power))


def _answering(endpoint: CommandEndpoint, power: Power) -> Callable[[bytes], Awaitable[bytes]]:
    """The handler of one subject: each knows its own power (a closure per subject, not a
    loop variable that every handler would share)."""

    async def on_command(body: bytes) -> bytes:
        return await guard(lambda data: endpoint.answer(data, power), body)

    return on_command
