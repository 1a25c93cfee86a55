"""Dashboard sessions: server-side, in a NATS KV bucket every edge shares, keyed by the digest
of a random token in a cookie. Behind a load balancer, any edge serves any signed-in browser.

A session holds who signed in (the account and its master key's id), the SHA-256 of that
master key, which lets every request be re-checked exactly like an API call with it (revoked,
expired or regenerated ends the session), and a CSRF token. Never the key itself.
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
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from aitbc_api.errors import ApiError
from aitbc_contracts.messages import Code
from aitbc_contracts.subjects import DASHBOARD_SESSIONS_BUCKET
from aitbc_runtime.bus import key_value

MAX_TOKEN = 128
TOUCH_EVERY = 15.0  # seconds: how stale a session's last-seen time may be stored (one write)


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


def expired(session: Session, now: float, idle: float, lifetime: float) -> bool:
    return now - session.seen > idle or now - session.started > lifetime


def _unavailable() -> ApiError:
    return ApiError(
        503, Code.SERVICE_UNAVAILABLE, "Dashboard sessions are unavailable; try again shortly"
    )


class SessionStore:
    """Sessions end after `idle` seconds without a request, `lifetime` after sign-in, or at
    sign out. The bucket forgets every entry at `lifetime` and is capped at `max_bytes`: when
    it is full, a new sign-in is refused (503) rather than ending someone else's session."""

    def __init__(
        self, bucket: KeyValue, idle: float, lifetime: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket = bucket
        self.idle, self.lifetime = idle, lifetime
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
        await self.save(session)
        return token, session

    async def get(self, token: str | None) -> Session | None:
        """The live session of this token, which counts as activity; None if there is none."""
        if not token or len(token) > MAX_TOKEN:
            return None
        digest = _digest(token)
        try:
            entry = await self.bucket.get(digest)
        except KeyNotFoundError:  # also: deleted (signed out)
            return None
        except (NatsError, TimeoutError) as exc:
            raise _unavailable() from exc
        try:
            session = _decode(entry.value or b"")
        except msgspec.DecodeError:
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
        try:
            await self.bucket.delete(session.digest)
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
            max_bytes=max_sessions * 1024,  # a session is ~400 bytes stored
            storage=StorageType.FILE,  # sessions outlive a NATS restart
            replicas=replicas,
        ),
    )
