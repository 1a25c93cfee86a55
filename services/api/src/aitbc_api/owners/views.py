"""What an owner is shown of a key and of its history (msgspec), mapped from the keys service's
replies: the REST routes and the dashboard show the same."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from aitbc_contracts.events import AnyEvent
from aitbc_contracts.messages import KeyView


class ApiKey(msgspec.Struct, frozen=True):
    """A key as the API shows it. Its own list of fields, not the keys service's KeyView: a
    field that view gains stays off the public API until it is chosen here."""

    key_id: str
    name: str
    kind: str
    hint: str
    status: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    regenerated_at: datetime | None = None
    rate_limit: int | None = None
    last_used_at: datetime | None = None
    scopes: list[str] = msgspec.field(default_factory=list)  # none: everything its kind may
    allowed_ips: list[str] = msgspec.field(default_factory=list)  # CIDRs; none: anywhere
    shadow: bool = False  # its limits are counted and reported, never enforced


class ApiKeyWithSecret(ApiKey, frozen=True):
    key: str = ""  # the plaintext key: in this response only, never again


class KeyEvent(msgspec.Struct, frozen=True):
    """One change to a key: what happened, when, by which key, in which request."""

    event_id: str
    type: str  # the event's tag, e.g. key.revoked.v1
    version: int  # the key's version after this event
    occurred_at: datetime
    actor: str  # the key id that acted, "operator" (the aitbc command line) or "signup"
    request_id: str
    details: dict[str, Any]  # what changed: name, kind, hint, expires_at, rate_limit, reason...


def api_key(view: KeyView, last_used_at: datetime | None = None) -> ApiKey:
    """The key as the API shows it: the view's fields but its account (the caller's own), with
    its last use as the usage service knows it, when it does."""
    shown = {name: getattr(view, name) for name in ApiKey.__struct_fields__}
    shown["last_used_at"] = last_used_at or view.last_used_at
    shown["scopes"], shown["allowed_ips"] = list(view.scopes), list(view.allowed_ips)
    return ApiKey(**shown)


# An allow list, not a deny list: a field added to an event later stays private until it is
# judged safe to show here. Secret hashes never are.
EVENT_DETAILS = frozenset(
    {
        "name",
        "kind",
        "hint",
        "expires_at",
        "rate_limit",
        "reason",
        "previous_valid_until",
        "scopes",
        "allowed_ips",
        "shadow",
    }
)


def key_event(event: AnyEvent) -> KeyEvent:
    data = msgspec.to_builtins(event)
    return KeyEvent(
        event_id=event.event_id,
        type=str(event.__struct_config__.tag),
        version=event.version,
        occurred_at=event.occurred_at,
        actor=event.actor,
        request_id=event.request_id,
        details={name: value for name, value in data.items() if name in EVENT_DETAILS},
    )


def with_secret(view: KeyView, key: str) -> ApiKeyWithSecret:
    return ApiKeyWithSecret(**msgspec.structs.asdict(api_key(view)), key=key)
