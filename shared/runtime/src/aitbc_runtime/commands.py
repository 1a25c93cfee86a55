"""The one typed client for commands to the keys service (edge, usage service, CLI).

A command goes out as msgspec JSON on the command subject of the sender's power
(aitbc_contracts.powers: the edge sends on the owner subject, the usage service on the read
subject, the CLI per command) and its reply comes back decoded into the contract's `Reply`
union. What can go wrong on the way is one exception, `CommandFailed`, with a reason each
caller turns into its own answer (the edge a 503, the CLI a one-line message): the keys
service's own refusals are `Rejected` replies, not exceptions.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from aitbc_contracts import messages as m
from aitbc_runtime import tracing

Why = Literal["no_responders", "timeout", "unreachable", "unreadable"]


class CommandFailed(Exception):
    """No reply could be had, or it could not be read: the keys service is unavailable."""

    def __init__(self, why: Why, message: str) -> None:
        super().__init__(message)
        self.why = why


class KeysCommands:
    """Sends commands on `nc` to `subject`, one of aitbc_contracts.powers.SUBJECTS: the server
    lets a role publish only on those of its powers, and the keys service grants what the
    subject's power covers. Each waits `timeout` seconds at most, and says so in the command
    (`answer_within_ms`), so the keys service never applies a change after its sender gave up
    on it."""

    def __init__(self, nc: NATS, timeout: float, subject: str) -> None:
        self._nc = nc
        self._timeout = timeout
        self.subject = subject

    async def send(self, command: m.AnyCommand) -> m.Reply:
        wait_ms = round(self._timeout * 1000)
        command = msgspec.structs.replace(command, answer_within_ms=wait_ms)
        started = time.monotonic()
        try:
            msg = await self._nc.request(
                self.subject,
                m.encoder.encode(command),
                timeout=self._timeout,
                headers=tracing.headers() if tracing.enabled else None,  # the sender's trace
            )
        except NoRespondersError as exc:
            raise CommandFailed(
                "no_responders", f"no keys service is answering on {self.subject}"
            ) from exc
        except TimeoutError as exc:  # nats-py's TimeoutError is one too
            waited = time.monotonic() - started
            raise CommandFailed(
                "timeout", f"the keys service did not answer within {waited:.3g} s"
            ) from exc
        except NatsError as exc:
            raise CommandFailed("unreachable", f"NATS is unreachable: {exc}") from exc
        try:
            reply: m.Reply = m.reply_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise CommandFailed("unreadable", f"an unreadable reply: {exc}") from exc
        return reply
