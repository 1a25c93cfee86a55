"""A signed-in owner: the account's key manager (the same commands and rules as the REST
routes), plus the session it acts through.

The dashboard acts without the master key: it names the account and, as the actor, the master
key's id, exactly what the API sends after checking the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc_api.dashboard.sessions import Session, SessionStore
from aitbc_api.owners.key_manager import KeyManager
from aitbc_api.owners.views import ApiKeyWithSecret
from aitbc_contracts.keyformat import hash_key


@dataclass(frozen=True, slots=True)
class Owner(KeyManager):
    """The account behind a live session, re-checked and counted for this request."""

    session: Session
    sessions: SessionStore
    notice: str = ""  # left by the previous request for this page ("Key revoked")

    async def tell(self, notice: str) -> None:
        """A message for the next page this session shows (after a redirect)."""
        self.session.notice = notice
        await self.sessions.save(self.session)

    async def regenerate_key(self, key_id: str, grace_seconds: int) -> ApiKeyWithSecret:
        regenerated = await KeyManager.regenerate_key(self, key_id, grace_seconds)
        if regenerated.key_id == self.session.key_id:
            # A new master key: this session follows it; sessions signed in with the old one
            # end when it stops working (at once, or when the grace period ends).
            self.session.key_hash = hash_key(regenerated.key)
            await self.sessions.save(self.session)
        return regenerated
