"""Dashboard sessions: server-side, in this edge's memory, keyed by a random id in a cookie.

A session holds who signed in (the account and its master key's id), the SHA-256 of that
master key, which lets every request be re-checked exactly like an API call with it (revoked,
expired or regenerated ends the session), and a CSRF token. Never the key itself.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def _digest(token: str) -> str:
    # Stored by digest: a dump of this dict holds no usable cookie, and lookups compare
    # digests, not the secret, so their timing tells an attacker nothing.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    account_id: str
    key_id: str  # the master key's id: the actor of every command this session sends
    key_hash: str  # SHA-256 of the master key, as the keys service stores it
    started: float
    seen: float
    digest: str
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    notice: str = ""  # one message for the next page ("Key revoked"); never a secret


class SessionStore:
    """Sessions end after `idle` seconds without a request, `lifetime` after sign-in, at sign
    out, or when `size` newer ones push them out (the oldest first)."""

    def __init__(
        self,
        idle: float,
        lifetime: float,
        size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle, self.lifetime, self.size = idle, lifetime, size
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self, account_id: str, key_id: str, key_hash: str) -> tuple[str, Session]:
        """A new session and the token for its cookie (shown to this browser only)."""
        now = self.clock()
        if len(self._sessions) >= self.size:
            self._purge(now)
        while len(self._sessions) >= self.size:
            self._sessions.pop(next(iter(self._sessions)))
        token = secrets.token_urlsafe(32)
        session = Session(account_id, key_id, key_hash, now, now, _digest(token))
        self._sessions[session.digest] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of this token, which counts as activity; None if there is none."""
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            del self._sessions[digest]
            return None
        session.seen = now
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.digest, None)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle or now - session.started > self.lifetime

    def _purge(self, now: float) -> None:
        for digest in [d for d, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[digest]
