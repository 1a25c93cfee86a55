"""The key event log: every change to accounts and keys, as versioned, tagged msgspec Structs.

Shipped tags never change meaning. Additive changes only, with defaults; a breaking change is
a new tag (`...v2`) and the old one stays decodable (golden payloads in tests pin them).
Events never carry a plaintext key: only its SHA-256 hash and a short display hint.

Every event also carries `prev_hash`, the chain hash of the event before it in the store's
global order, which makes the log tamper-evident (the rule is in `aitbc_contracts.chain`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

Plan = Literal["free", "pro", "enterprise"]
KeyKind = Literal["master", "standard"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: str
    stream_id: str  # the aggregate: an account id or a key id
    version: int  # (stream_id, version) is unique in the store
    account_id: str
    occurred_at: datetime
    actor: str = ""  # key id that acted, or "operator"
    request_id: str = ""
    # Set by the event store when it appends: the chain hash of the event at position - 1
    # ("" for the first event, and for events appended before the chain existed).
    prev_hash: str = ""


class AccountCreated(Event, frozen=True, tag="account.created.v1"):
    name: str
    plan: Plan


class PlanChanged(Event, frozen=True, tag="account.plan_changed.v1"):
    plan: Plan
    previous_plan: Plan


class KeyCreated(Event, frozen=True, tag="key.created.v1"):
    key_id: str
    name: str
    kind: KeyKind
    secret_hash: str  # hex SHA-256 of the plaintext key
    hint: str  # the first characters of the key, for people to recognise it
    expires_at: datetime | None = None
    rate_limit: int | None = None  # a per-key limit below the plan's, requests per minute


class KeyRestricted(Event, frozen=True, tag="key.restricted.v1"):
    """A key's restrictions (aitbc_contracts.restrictions), each field its whole new value, not
    a difference; the defaults restrict nothing. A key created restricted has this event right
    after its KeyCreated, in the same commit (KeyCreated's shipped encoding stays as it was)."""

    key_id: str
    scopes: tuple[str, ...] = ()  # what it may call; (): everything its kind may
    allowed_ips: tuple[str, ...] = ()  # CIDRs its requests may come from; (): anywhere
    shadow: bool = False  # its limits are counted and reported, never enforced


class KeyRevoked(Event, frozen=True, tag="key.revoked.v1"):
    key_id: str
    reason: str = ""


class KeyRegenerated(Event, frozen=True, tag="key.regenerated.v1"):
    key_id: str
    secret_hash: str
    hint: str
    previous_hash: str
    previous_valid_until: datetime | None = None  # grace period end; None: invalid at once


class MasterKeyDataPlaneChanged(Event, frozen=True, tag="account.master_key_data_plane.v1"):
    """The owner lets the account's master key call the forwarded /v1/... routes, or keeps it
    to managing keys (the edge's MASTER_KEY_DATA_PLANE=0 keeps every master key to that)."""

    data_plane: bool


AnyEvent = (
    AccountCreated
    | PlanChanged
    | KeyCreated
    | KeyRestricted
    | KeyRevoked
    | KeyRegenerated
    | MasterKeyDataPlaneChanged
)

event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
event_encoder = msgspec.json.Encoder()


def encode_event(event: AnyEvent) -> bytes:
    return event_encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    return event_decoder.decode(data)
