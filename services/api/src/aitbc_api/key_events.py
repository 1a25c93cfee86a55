"""Keeps the auth cache true: each key event evicts what it changes."""

from __future__ import annotations

import logging

import msgspec

from aitbc_api.auth_cache import AuthCache

log = logging.getLogger("aitbc.api.key_events")


class _Touched(msgspec.Struct):
    """The only fields of any key event the cache needs (msgspec skips the rest)."""

    type: str
    account_id: str
    key_id: str | None = None


_decode = msgspec.json.Decoder(_Touched).decode


def apply(cache: AuthCache, data: bytes) -> None:
    try:
        event = _decode(data)
    except msgspec.DecodeError:
        log.warning("ignored an undecodable key event")
        return
    if event.key_id is not None:
        cache.evict_key(event.key_id)
    elif event.type.startswith("account.plan_changed"):
        cache.evict_account(event.account_id)
