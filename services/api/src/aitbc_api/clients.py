"""Typed request/reply over NATS: the edge's only way to talk to the services."""

from __future__ import annotations

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from aitbc_contracts import messages as m
from aitbc_contracts.subjects import KEYS_CHECK, KEYS_COMMANDS

from aitbc_api.errors import ApiError, from_rejection


def unavailable(service: str) -> ApiError:
    return ApiError(
        503, m.Code.SERVICE_UNAVAILABLE, f"The {service} service is unavailable; try again shortly"
    )


class KeysClient:
    """Auth checks and management commands, answered by any keys service in the queue group."""

    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def _request(self, subject: str, payload: bytes) -> bytes:
        try:
            reply = await self._nc.request(subject, payload, timeout=self._timeout)
        except (NatsError, TimeoutError) as exc:  # no responders, timeout, disconnected
            raise unavailable("keys") from exc
        return reply.data

    async def check(self, key_hash: str) -> m.CheckReply:
        data = await self._request(KEYS_CHECK, m.encoder.encode(m.CheckKey(key_hash)))
        try:
            return m.check_reply_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise unavailable("keys") from exc

    async def command(self, command: m.AnyCommand) -> m.AccountView | m.KeyView | m.KeyList:
        data = await self._request(KEYS_COMMANDS, m.encoder.encode(command))
        try:
            reply = m.reply_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise unavailable("keys") from exc
        if isinstance(reply, m.Rejected):
            raise from_rejection(reply)
        return reply
