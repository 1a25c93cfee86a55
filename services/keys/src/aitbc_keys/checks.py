"""Auth checks: the facts index first, the SQL read model for the hashes it does not know."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_keys import projections
from aitbc_keys.domain import utcnow
from aitbc_keys.facts import FactsIndex
from aitbc_keys.failures import UNAVAILABLE, database_unavailable, rejected
from aitbc_keys.metrics import CHECK_BATCH_SIZE

log = logging.getLogger("aitbc_keys.checks")

_HASH = re.compile("[0-9a-f]{64}")  # hex SHA-256, as the edge sends it
_MALFORMED_HASH = m.Rejected(m.Code.VALIDATION_ERROR, "malformed key hash: not 64 hex digits")
_UNKNOWN_KEY = m.Rejected(m.Code.INVALID_API_KEY, "unknown API key")


@dataclass(frozen=True, slots=True)
class StoredCheck:
    """A check the facts index could not settle alone: None where the database must say."""

    key_hashes: list[str]
    replies: list[m.KeyFacts | m.Rejected | None]


class KeyChecks:
    """Answers CheckKeys messages, independent of the transport (aitbc_keys.responder)."""

    def __init__(
        self,
        engine: AsyncEngine,
        index: FactsIndex | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.index = index or FactsIndex()  # empty: every check asks the database
        self.clock = clock

    async def check(self, data: bytes) -> bytes:
        answer = self.check_indexed(data)
        return answer if isinstance(answer, bytes) else await self.check_stored(answer)

    def check_indexed(self, data: bytes) -> bytes | StoredCheck:
        """The reply when the message and the facts index settle every hash; otherwise what
        is left for the database (`check_stored`). It never awaits: the bus subscription
        answers these inline, one after the other, and gives only the database's share a task."""
        try:
            request = m.check_decoder.decode(data)
        except msgspec.MsgspecError as exc:  # too many hashes, or not a CheckKeys at all
            log.warning("malformed key check: %s", exc)
            return rejected(m.Code.VALIDATION_ERROR, f"malformed key check: {exc}")
        if request.key_hashes:  # an empty one is a readiness probe, no check
            CHECK_BATCH_SIZE.observe(len(request.key_hashes))
        now = self.clock()
        facts = self.index.facts
        replies: list[m.KeyFacts | m.Rejected | None] = []
        stored = False
        for key_hash in request.key_hashes:
            reply: m.KeyFacts | m.Rejected | None = facts(key_hash, now)
            if reply is None:
                if _HASH.fullmatch(key_hash) is None:
                    reply = _MALFORMED_HASH
                else:
                    stored = True  # not in the index: maybe created a moment ago elsewhere
            replies.append(reply)
        if stored:
            return StoredCheck(request.key_hashes, replies)
        return m.encoder.encode(m.CheckedKeys(replies))  # type: ignore[arg-type]

    async def check_stored(self, check: StoredCheck) -> bytes:
        """The hashes the index does not know, asked of the database in one query. When it
        fails, those hashes alone get a Rejected: the others' answers stand."""
        pairs = list(zip(check.key_hashes, check.replies, strict=True))
        missing = [key_hash for key_hash, reply in pairs if reply is None]
        found: dict[str, m.KeyFacts] = {}
        unknown = _UNKNOWN_KEY
        try:
            async with self.engine.connect() as conn:
                found = await projections.key_facts(conn, missing, self.clock())
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("key check: the database is unavailable: %s", type(exc).__name__)
                unknown = m.Rejected(m.Code.SERVICE_UNAVAILABLE, UNAVAILABLE)
            else:
                log.exception("key check failed")
                unknown = m.Rejected(m.Code.INTERNAL_ERROR, "the key check failed; try again")
        replies = [
            reply if reply is not None else found.get(key_hash, unknown)
            for key_hash, reply in pairs
        ]
        return m.encoder.encode(m.CheckedKeys(replies))
