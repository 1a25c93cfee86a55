"""HTTP bodies of the owners' routes (msgspec): what they take, and what wraps what they give."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from aitbc_api.owners.views import ApiKey, KeyEvent
from aitbc_contracts import restrictions
from aitbc_contracts.names import check_name

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
RateLimit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Scopes = Annotated[
    list[str],
    msgspec.Meta(
        max_length=restrictions.MAX_SCOPES,
        description="What the key may call (resource:action, e.g. jobs:read); none: everything",
        examples=[["jobs:read"]],
    ),
]
AllowedIps = Annotated[
    list[str],
    msgspec.Meta(
        max_length=restrictions.MAX_NETWORKS,
        description="CIDRs (IPv4 or IPv6) its requests may come from; none: anywhere",
        examples=[["203.0.113.0/24", "2001:db8::/32"]],
    ),
]


def checked_restrictions(scopes: list[str] | None, allowed_ips: list[str] | None) -> None:
    """400 for scopes or networks the keys service would refuse anyway, saying which."""
    if scopes is not None:
        restrictions.scopes(scopes)  # InvalidRestriction is a ValueError: a validation error
    if allowed_ips is not None:
        restrictions.allowed_ips(allowed_ips)


class SignUp(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""

    def __post_init__(self) -> None:
        check_name(self.name)  # 400, as the keys service would refuse it anyway


class NewKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Name
    expires_at: datetime | None = None
    rate_limit: RateLimit | None = None
    scopes: Scopes = msgspec.field(default_factory=list)
    allowed_ips: AllowedIps = msgspec.field(default_factory=list)
    shadow: bool = False  # its limits are counted and reported, never enforced

    def __post_init__(self) -> None:
        check_name(self.name)
        checked_restrictions(self.scopes, self.allowed_ips)


class KeyChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """New restrictions for a key: each field given replaces its value, each left out stays."""

    scopes: Scopes | None = None
    allowed_ips: AllowedIps | None = None
    shadow: bool | None = None

    def __post_init__(self) -> None:
        checked_restrictions(self.scopes, self.allowed_ips)


class Regenerate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    grace_period_seconds: GraceSeconds = 0


class AccountChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # False: the master key manages keys and calls no forwarded /v1/... route
    master_key_data_plane: bool


class AccountInfo(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    plan: str
    master_key_id: str
    created_at: datetime
    master_key_data_plane: bool


class ApiKeys(msgspec.Struct, frozen=True):
    keys: list[ApiKey]


class KeyEvents(msgspec.Struct, frozen=True):
    events: list[KeyEvent]


class MasterKey(msgspec.Struct, frozen=True):
    key_id: str
    key: str  # shown once


class Account(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    plan: str
    created_at: datetime
    master_key: MasterKey
