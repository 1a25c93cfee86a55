"""Keeps the auth cache true: the auth cache's view of the key event log.

Each event evicts what it changes, on this edge as soon as it is read: a key's events the key
(a new secret, new restrictions: the next request is checked by its new facts),
a plan change or the master key's data plane setting every key of the account. A revocation is
final, so it is not evicted but kept as such: the key is refused from the cache, even while the
keys service cannot be asked (an edge that reads a revocation published while it was away,
say). The events come from the one key event reader (aitbc_runtime.key_events), which decodes
and checks them first.
"""

from __future__ import annotations

from aitbc_contracts.events import (
    AnyEvent,
    KeyRegenerated,
    KeyRestricted,
    KeyRevoked,
    MasterKeyDataPlaneChanged,
    PlanChanged,
)
from aitbc_gate.auth_cache import AuthCache


class CacheInvalidation:
    """A KeyEventView (aitbc_contracts.keys) over the auth cache."""

    def __init__(self, cache: AuthCache) -> None:
        self.cache = cache

    def process(self, event: AnyEvent, position: int) -> None:
        # A key's creation changes nothing cached: no answer about a key id can predate it.
        # (Evicting anyway cost availability: the event a reader anchors at after a reset
        # is often the last key created, and an evicted entry cannot serve while the keys
        # service is still away.)
        if isinstance(event, KeyRevoked):
            self.cache.revoke_key(event.key_id)
        elif isinstance(event, KeyRegenerated | KeyRestricted):
            self.cache.evict_key(event.key_id)
        elif isinstance(event, PlanChanged | MasterKeyDataPlaneChanged):
            self.cache.evict_account(event.account_id)

    def reset(self) -> None:
        """Events may have passed unseen (a reconnect the reader could not resume from): every
        entry is checked again."""
        self.cache.clear()
