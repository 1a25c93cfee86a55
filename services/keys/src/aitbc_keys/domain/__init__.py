"""What the keys service decides: a command and the state of its stream -> new events; no I/O.

The state is the one fold of the key events (aitbc_contracts.keys): every view of the events,
and these decisions, take their meaning from it. `rules` holds what the decisions share (errors,
validation, the fold as they see it); `accounts` and `keys` the decisions themselves."""

from aitbc_keys.domain.accounts import (
    create_account,
    replace_master_key,
    set_master_key_data_plane,
    set_plan,
)
from aitbc_keys.domain.keys import create_key, regenerate_key, revoke_key
from aitbc_keys.domain.restrictions import managing_key, owning_key, restrict_key
from aitbc_keys.domain.rules import (
    GRACE_MAX,
    MAX_KEYS_PER_ACCOUNT,
    NAME_MAX,
    PLANS,
    Clock,
    Forbidden,
    IdFactory,
    KeyRevokedError,
    KeysError,
    NotFound,
    TooManyKeys,
    ValidationError,
    existing_account,
    fold_streams,
    key_view,
    secrets_of,
    utcnow,
    visible_key,
)

__all__ = [
    "GRACE_MAX",
    "MAX_KEYS_PER_ACCOUNT",
    "NAME_MAX",
    "PLANS",
    "Clock",
    "Forbidden",
    "IdFactory",
    "KeyRevokedError",
    "KeysError",
    "NotFound",
    "TooManyKeys",
    "ValidationError",
    "create_account",
    "create_key",
    "existing_account",
    "fold_streams",
    "key_view",
    "managing_key",
    "owning_key",
    "regenerate_key",
    "replace_master_key",
    "restrict_key",
    "revoke_key",
    "secrets_of",
    "set_master_key_data_plane",
    "set_plan",
    "utcnow",
    "visible_key",
]
