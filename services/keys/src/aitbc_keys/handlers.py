"""Bus subscribers: decode, load, decide, append, reply. No exception ever crosses the wire."""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from faststream.nats import NatsBroker
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from aitbc_contracts import messages as m
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.subjects import KEYS_COMMANDS, KEYS_QUEUE
from aitbc_keys import domain, projections, store
from aitbc_keys.domain import KeysError, NotFound, State
from aitbc_keys.facts import FactsIndex

log = logging.getLogger(__name__)

T = TypeVar("T")
COMMAND_RETRIES = 3  # a command that loses an optimistic-concurrency race is decided again
# A change commits within this share of the time its sender waits, or not at all: the rest is
# for the commit itself and the answer's way back (see Command.answer_within_ms).
COMMIT_WITHIN_SHARE = 0.75


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_account_id() -> str:
    return "acc_" + secrets.token_hex(8)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def new_event_id() -> str:
    return uuid.uuid4().hex


def _rejected(code: str, message: str) -> bytes:
    return m.encoder.encode(m.Rejected(code=code, message=message))


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or cannot take the change now (down, restarting, its
    connections cut, locked): the caller should try again later, it is not a bug of ours."""
    if isinstance(exc, sa_exc.DBAPIError):
        # statement None: the error came while connecting
        return (
            exc.connection_invalidated
            or exc.statement is None
            or isinstance(exc, sa_exc.OperationalError)
        )
    return isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError)


_UNAVAILABLE = "the keys database is unavailable; try again"


def _unavailable() -> bytes:
    return _rejected(m.Code.SERVICE_UNAVAILABLE, _UNAVAILABLE)


_HASH = re.compile("[0-9a-f]{64}")  # hex SHA-256, as the edge sends it
_MALFORMED_HASH = m.Rejected(m.Code.VALIDATION_ERROR, "malformed key hash: not 64 hex digits")
_UNKNOWN_KEY = m.Rejected(m.Code.INVALID_API_KEY, "unknown API key")


@dataclass(frozen=True, slots=True)
class StoredCheck:
    """A check the facts index could not settle alone: None where the database must say."""

    key_hashes: list[str]
    replies: list[m.KeyFacts | m.Rejected | None]


class Handlers:
    """The keys service's request handlers, independent of the transport (tests call them)."""

    def __init__(
        self,
        engine: AsyncEngine,
        on_append: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        index: FactsIndex | None = None,
    ) -> None:
        self.engine = engine
        self.on_append = on_append  # wakes the relay: a revocation should reach edges at once
        self.clock = clock
        self.index = index or FactsIndex()  # empty: every check asks the database

    # --- auth check (hot path) ---------------------------------------------------------------

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
            return _rejected(m.Code.VALIDATION_ERROR, f"malformed key check: {exc}")
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
                unknown = m.Rejected(m.Code.SERVICE_UNAVAILABLE, _UNAVAILABLE)
            else:
                log.exception("key check failed")
                unknown = m.Rejected(m.Code.INTERNAL_ERROR, "the key check failed; try again")
        replies = [
            reply if reply is not None else found.get(key_hash, unknown)
            for key_hash, reply in pairs
        ]
        return m.encoder.encode(m.CheckedKeys(replies))

    # --- management commands -----------------------------------------------------------------

    async def command(self, data: bytes) -> bytes:
        received = time.monotonic()
        try:
            command = m.command_decoder.decode(data)
        except msgspec.MsgspecError as exc:
            log.warning("malformed command: %s", exc)
            return _rejected(m.Code.VALIDATION_ERROR, f"malformed command: {exc}")
        deadline = None
        if command.answer_within_ms is not None:
            deadline = received + command.answer_within_ms / 1000 * COMMIT_WITHIN_SHARE
        try:
            reply = await self.execute(command, deadline)
        except KeysError as exc:
            log.info(
                "%s refused: %s (request %s)", type(command).__name__, exc.code, command.request_id
            )
            return _rejected(exc.code, exc.message)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning(
                    "%s: the database is unavailable: %s (request %s)",
                    type(command).__name__, type(exc).__name__, command.request_id,
                )  # fmt: skip
                return _unavailable()
            log.exception("%s failed (request %s)", type(command).__name__, command.request_id)
            return _rejected(m.Code.INTERNAL_ERROR, "the keys service failed; try again")
        return m.encoder.encode(reply)

    async def execute(self, command: m.AnyCommand, deadline: float | None = None) -> m.Reply:
        """Carries out the command; a change not ready to commit by `deadline`
        (time.monotonic()) is not applied (store.TooLate)."""
        now = self.clock()
        match command:
            case m.CreateAccount():
                account_id, key_id = new_account_id(), new_key_id()
                new = domain.create_account(command, now, account_id, key_id, new_event_id)
                await self._append([(account_id, 0, new[:1]), (key_id, 0, new[1:])], deadline)
                return await self._account(account_id)
            case m.SetPlan():
                await self._update(
                    command.account_id,
                    lambda s: domain.set_plan(s, command, now, new_event_id),
                    deadline,
                )
                return await self._account(command.account_id)
            case m.GetAccount():
                return await self._account(command.account_id)
            case m.CreateKey():
                account = domain.fold(await store.load(self.engine, command.account_id))
                key_id = new_key_id()
                new = domain.create_key(account, command, now, key_id, new_event_id)
                await self._append([(key_id, 0, new)], deadline)
                return await self._key(key_id, now)
            case m.ListKeys():
                async with self.engine.connect() as conn:
                    if await projections.account_view(conn, command.account_id) is None:
                        raise NotFound(f"account {command.account_id} not found")
                    return m.KeyList(
                        keys=await projections.key_views(conn, command.account_id, now)
                    )
            case m.GetKey():
                state = domain.fold(await store.load(self.engine, command.key_id))
                domain.visible_key(state, command.key_id, command.account_id)
                return await self._key(command.key_id, now)
            case m.RevokeKey():
                await self._update(
                    command.key_id,
                    lambda s: domain.revoke_key(s, command, now, new_event_id),
                    deadline,
                )
                return await self._key(command.key_id, now)
            case m.RegenerateKey():
                await self._update(
                    command.key_id,
                    lambda s: domain.regenerate_key(s, command, now, new_event_id),
                    deadline,
                )
                return await self._key(command.key_id, now)
            case m.ListKeyEvents():
                history = await store.load(self.engine, command.key_id)
                domain.visible_key(domain.fold(history), command.key_id, command.account_id)
                return m.KeyHistory(events=history)
            case m.RebuildProjections():
                if command.actor != m.OPERATOR:
                    raise domain.Forbidden("only an operator may rebuild the read models")
                # One write transaction: readers keep seeing the old rows until it commits.
                return m.Rebuilt(events=await projections.rebuild(self.engine))
        raise domain.ValidationError(f"unsupported command {type(command).__name__}")

    async def _append(self, batches: Sequence[store.Batch], deadline: float | None) -> None:
        await store.append(self.engine, batches, deadline)
        for _, _, new in batches:
            for event in new:
                self.index.apply(event)  # before the reply: this process's next check knows
        self.on_append()

    async def _update(
        self,
        stream_id: str,
        decide: Callable[[State | None], list[AnyEvent]],
        deadline: float | None,
    ) -> None:
        """Load, decide, append; decide again on a fresh load when a concurrent write won."""
        for attempt in range(COMMAND_RETRIES):
            history = await store.load(self.engine, stream_id)
            new = decide(domain.fold(history))
            if not new:
                return
            try:
                await self._append([(stream_id, len(history), new)], deadline)
                return
            except store.ConcurrencyError:
                if attempt == COMMAND_RETRIES - 1:
                    raise

    async def _account(self, account_id: str) -> m.AccountView:
        async with self.engine.connect() as conn:
            view = await projections.account_view(conn, account_id)
        if view is None:
            raise NotFound(f"account {account_id} not found")
        return view

    async def _key(self, key_id: str, now: datetime) -> m.KeyView:
        async with self.engine.connect() as conn:
            view = await projections.key_view(conn, key_id, now)
        if view is None:
            raise NotFound(f"key {key_id} not found")
        return view


def subscribe(broker: NatsBroker, handlers: Handlers) -> None:
    """Register the command handler on the broker, in the queue group shared by every keys
    service. Auth checks have a bare subscription of their own (aitbc_keys.responder)."""

    @broker.subscriber(KEYS_COMMANDS, queue=KEYS_QUEUE, max_workers=16)
    async def on_command(body: bytes) -> bytes:
        return await guard(handlers.command, body)


async def guard(handle: Callable[[T], Awaitable[bytes]], request: T) -> bytes:
    """The last line of defence: whatever happens, the caller gets a Rejected, not silence."""
    try:
        return await handle(request)
    except Exception:
        log.exception("unhandled error in a keys handler")
        return _rejected(m.Code.INTERNAL_ERROR, "the keys service failed; try again")
