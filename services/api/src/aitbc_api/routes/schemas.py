"""HTTP bodies of the management routes (msgspec), and their mapping from the wire replies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from aitbc_contracts.messages import KeyView

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
RateLimit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class SignUp(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(max_length=100)] = ""


class NewKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Name
    expires_at: datetime | None = None
    rate_limit: RateLimit | None = None


class Regenerate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    grace_period_seconds: GraceSeconds = 0


class ApiKey(msgspec.Struct, frozen=True):
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


class ApiKeyWithSecret(ApiKey, frozen=True):
    key: str = ""  # the plaintext key: in this response only, never again


class ApiKeys(msgspec.Struct, frozen=True):
    keys: list[ApiKey]


class MasterKey(msgspec.Struct, frozen=True):
    key_id: str
    key: str  # shown once


class Account(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    plan: str
    created_at: datetime
    master_key: MasterKey


def api_key(view: KeyView, last_used_at: datetime | None = None) -> ApiKey:
    return ApiKey(
        key_id=view.key_id,
        name=view.name,
        kind=view.kind,
        hint=view.hint,
        status=view.status,
        created_at=view.created_at,
        expires_at=view.expires_at,
        revoked_at=view.revoked_at,
        regenerated_at=view.regenerated_at,
        rate_limit=view.rate_limit,
        last_used_at=last_used_at or view.last_used_at,
    )


def with_secret(view: KeyView, key: str) -> ApiKeyWithSecret:
    return ApiKeyWithSecret(**msgspec.structs.asdict(api_key(view)), key=key)
