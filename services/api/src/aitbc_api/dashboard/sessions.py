"""Dashboard sessions: server-side, in a NATS KV bucket every edge shares, keyed by the digest
of a random token in a cookie. Behind a load balancer, any edge serves any signed-in browser.

A session holds who signed in (the account and its master key's id), the SHA-256 of that
master key, which lets every request be re-checked exactly like an API call with it (revoked,
expired or regenerated ends the session), and a CSRF token. Never the key itself.

An account has at most `per_account` sessions (DASHBOARD_SESSIONS_PER_ACCOUNT): the bucket
also lists each account's sessions (key `account.<account id>`, updated with compare-and-set,
so edges signing the same account in at once do not lose each other's), and a sign-in past
the cap ends the account's oldest session. Sign-ins never fill the bucket from one account.

A full bucket refuses new sign-ins, and the touches of sessions in use, with 503. It does not
make room by ending the oldest sessions: the bucket would drop whatever was written longest
ago, an account's list as soon as a session, and an account whose list is gone escapes its
cap. Rather, the overall sign-up and sign-in budgets are the whole system's
(aitbc_gate.throttle), and the bucket is sized so that the sessions they allow in a lifetime
fit (SESSION_ROOM).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

# An account's list of sessions has no more to it than the document says: one type for both.
from aitbc_contracts.asyncapi_buckets import AccountSessions, Listed
from aitbc_contracts.messages import Code
from aitbc_contracts.subjects import DASHBOARD_SESSIONS_BUCKET
from aitbc_gate.errors import ApiError
from aitbc_runtime.bus import key_value

MAX_TOKEN = 128
TOUCH_EVERY = 15.0  # seconds: how stale a session's last-seen time may be stored (one write)
ACCOUNT_LIST = "account."  # + account id: the key of an account's list of sessions
LIST_ATTEMPTS = 8  # compare-and-set rounds against other edges' sign-ins to the same account
# Bytes of bucket per session of DASHBOARD_MAX_SESSIONS. A session is ~470 bytes stored and its
# account's list up to ~170 more; a session still in use at the end of its lifetime was written
# then, so the bucket keeps it one lifetime more unless it is read again (and ended). The
# sessions started in a lifetime may thus hold twice their room and their lists: ~1.1 KiB each.
SESSION_ROOM = 1536


def _digest(token: str) -> str:
    # Stored by digest: a dump of the bucket holds no usable cookie, and lookups compare
    # digests, not the secret, so their timing tells an attacker nothing.
    return hashlib.sha256(token.encode()).hexdigest()


class Session(msgspec.Struct, kw_only=True):
    account_id: str
    key_id: str  # the master key's id: the actor of every command this session sends
    key_hash: str  # SHA-256 of the master key, as the keys service stores it
    started: float  # wall-clock seconds: edges share sessions, not monotonic clocks
    seen: float
    digest: str
    csrf_token: str = msgspec.field(default_factory=lambda: secrets.token_urlsafe(32))
    notice: str = ""  # one message for the next page ("Key revoked"); never a secret


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode
_decode_list = msgspec.json.Decoder(AccountSessions).decode


def expired(session: Session, now: float, idle: float, lifetime: float) -> bool:
    return now - session.seen > idle or now - session.started > lifetime


def _unavailable() -> ApiError:
    return ApiError(
        503, Code.SERVICE_UNAVAILABLE, "Dashboard sessions are unavailable; try again shortly"
    )


def _listed(entry: KeyValue.Entry | None) -> list[Listed]:
    try:
        return _decode_list(entry.value).sessions if entry and entry.value else []
    except msgspec.DecodeError:
        return []  # unreadable: start the list again (the sessions still end on their own)


class SessionStore:
    """Sessions end after `idle` seconds without a request, `lifetime` after sign-in, at sign
    out, or when their account's `per_account`-th newer one starts. The bucket forgets every
    entry `lifetime` after it was last written and is capped at `max_bytes`: when it is full, a
    new sign-in is refused (503) rather than ending someone else's session."""

    def __init__(
        self,
        bucket: KeyValue,
        idle: float,
        lifetime: float,
        per_account: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.idle, self.lifetime = idle, lifetime
        self.per_account = max(1, per_account)
        self.clock = clock

    async def start(self, account_id: str, key_id: str, key_hash: str) -> tuple[str, Session]:
        """A new session and the token for its cookie (shown to this browser only)."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = Session(
            account_id=account_id,
            key_id=key_id,
            key_hash=key_hash,
            started=now,
            seen=now,
            digest=_digest(token),
        )
        await self.save(session)  # first: a listed session exists, so no edge drops it as ended
        try:
            ended = await self._list(session)
        except ApiError:
            await self._delete(session.digest)  # unlisted, it would escape the cap
            raise
        for digest in ended:  # past the cap: the account's oldest end
            await self._delete(digest)
        return token, session

    async def _list(self, session: Session) -> list[str]:
        """Adds `session` to its account's list; returns the digests of the sessions it ends."""
        key = ACCOUNT_LIST + session.account_id
        for _ in range(LIST_ATTEMPTS):
            try:
                entry = await self.bucket.get(key)
            except KeyNotFoundError:
                entry = None
            except (NatsError, TimeoutError) as exc:
                raise _unavailable() from exc
            live = [s for s in _listed(entry) if session.started - s.started <= self.lifetime]
            if len(live) >= self.per_account:
                live = [s for s in live if await self._open(s.digest)]
            excess = max(0, len(live) + 1 - self.per_account)
            kept = [*live[excess:], Listed(session.digest, session.started)]
            value = _encode(AccountSessions(kept))
            try:
                if entry is None:
                    await self.bucket.create(key, value)
                else:
                    await self.bucket.update(key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # another edge signed this account in meanwhile: read its list again
            except (NatsError, TimeoutError) as exc:
                raise _unavailable() from exc
            return [s.digest for s in live[:excess]]
        raise _unavailable()

    async def _open(self, digest: str) -> bool:
        """Whether the session of `digest` is still there and has not expired."""
        session = await self._stored(digest)
        return session is not None and not expired(session, self.clock(), self.idle, self.lifetime)

    async def _stored(self, digest: str) -> Session | None:
        """The session stored under `digest`; None when there is none (deleted: signed out) or
        it cannot be read."""
        try:
            entry = await self.bucket.get(digest)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as exc:
            raise _unavailable() from exc
        try:
            return _decode(entry.value or b"")
        except msgspec.DecodeError:
            return None

    async def get(self, token: str | None) -> Session | None:
        """The live session of this token, which counts as activity; None if there is none."""
        if not token or len(token) > MAX_TOKEN:
            return None
        digest = _digest(token)
        session = await self._stored(digest)
        if session is None:
            return None
        now = self.clock()
        if expired(session, now, self.idle, self.lifetime) or session.digest != digest:
            await self.end(session)
            return None
        if now - session.seen > TOUCH_EVERY:
            session.seen = now
            await self.save(session)
        return session

    async def save(self, session: Session) -> None:
        """Stores a new or changed session (a notice for the next page, a new master key)."""
        try:
            await self.bucket.put(session.digest, _encode(session))
        except (NatsError, TimeoutError) as exc:  # down, or the bucket is full
            raise _unavailable() from exc

    async def end(self, session: Session) -> None:
        await self._delete(session.digest)

    async def _delete(self, digest: str) -> None:
        try:
            await self.bucket.delete(digest)
        except (NatsError, TimeoutError) as exc:
            raise _unavailable() from exc


async def session_bucket(
    nc: NATS, lifetime: float, max_sessions: int, replicas: int = 1
) -> KeyValue:
    """The sessions' bucket, made with `replicas` while it is missing."""
    return await key_value(
        nc,
        KeyValueConfig(
            bucket=DASHBOARD_SESSIONS_BUCKET,
            history=1,
            ttl=lifetime,
            max_bytes=max_sessions * SESSION_ROOM,
            storage=StorageType.FILE,  # sessions outlive a NATS restart
            replicas=replicas,
        ),
    )
