"""Turning replies into results or errors: a Rejected reply or a surprise ends the command."""

from __future__ import annotations

from typing import TypeVar

from aitbc_cli.bus import BusError
from aitbc_contracts.messages import Rejected, Reply

T = TypeVar("T")


class CommandRejected(Exception):
    """The service said no: shown to the operator as `CODE: message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def expect(reply: Reply, kind: type[T]) -> T:
    if isinstance(reply, Rejected):
        raise CommandRejected(reply.code, reply.message)
    if not isinstance(reply, kind):
        raise BusError(f"expected a {kind.__name__} reply, got {type(reply).__name__}")
    return reply
