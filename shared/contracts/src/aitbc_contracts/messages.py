"""Request/reply messages between the edge, the CLI and the services.

Replies that can fail are unions with `Rejected`: no exception crosses the wire.
Commands never carry a plaintext key: the caller generates the key, sends its hash and
hint, and alone returns the plaintext to the person who asked for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from aitbc_contracts.events import AnyEvent, KeyKind, Plan
from aitbc_contracts.identity import REQUEST_ID_PATTERN

# The actor recorded for commands from the `aitbc` command line. An actor is who acted, kept in
# the events for the audit trail, never a power: that is the subject's (aitbc_contracts.powers).
OPERATOR = "operator"


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str  # a `Code`
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    """Every HTTP failure's body, `{"error": {"code", "message"}}`, on every listener."""

    error: ErrorDetail


class Code:
    """Stable error codes, shared by the wire and the HTTP error body."""

    MISSING_API_KEY = "MISSING_API_KEY"
    INVALID_API_KEY = "INVALID_API_KEY"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    TOO_MANY_INVALID_KEYS = "TOO_MANY_INVALID_KEYS"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"  # the client sent its headers or body too slowly
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"  # request line and headers over the limit (431)
    INTERNAL_ERROR = "INTERNAL_ERROR"
    HTTPS_REQUIRED = "HTTPS_REQUIRED"  # plain HTTP to a service that answers over HTTPS only
    # Hostile clients at the edge (sign-up and sign-in budgets):
    TOO_MANY_SIGNUPS = "TOO_MANY_SIGNUPS"  # over an address's or the edge's sign-up budget
    TOO_MANY_SIGN_INS = "TOO_MANY_SIGN_INS"  # over a budget of dashboard sign-in attempts
    # Hostile clients at the edge (forwarding, credentials, the upstream's identity, sizes):
    INVALID_PATH = "INVALID_PATH"  # a forwarded path that could leave /v1 (dots, encoded /)
    CONFLICTING_API_KEYS = "CONFLICTING_API_KEYS"  # a header key and a different query key
    API_KEY_IN_QUERY_DISABLED = "API_KEY_IN_QUERY_DISABLED"  # api_key in the query, turned off
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # a request body over the edge's limit (413)
    INVALID_IDENTITY = "INVALID_IDENTITY"  # the upstream: an unsigned, forged or stale identity
    # Who may manage and call what:
    MASTER_KEY_IN_GRACE = "MASTER_KEY_IN_GRACE"  # a replaced master secret manages nothing
    MASTER_KEY_MANAGEMENT_ONLY = "MASTER_KEY_MANAGEMENT_ONLY"  # not on forwarded /v1/... routes
    TOO_MANY_KEYS = "TOO_MANY_KEYS"  # the account holds MAX_KEYS_PER_ACCOUNT live keys
    # Keys that can do less (aitbc_contracts.restrictions):
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"  # the key's scopes do not include the route's
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"  # the client's address is outside the key's allow-list


class Rejected(msgspec.Struct, frozen=True, tag="rejected"):
    code: str
    message: str


# --- auth check ----------------------------------------------------------------------------


MAX_CHECK_BATCH = 1000  # key hashes in one CheckKeys: bounds the work one message can ask for


class CheckKeys(msgspec.Struct, frozen=True):
    """Key hashes to check: the cache misses of one burst on an edge, sent as one message."""

    key_hashes: Annotated[list[str], msgspec.Meta(max_length=MAX_CHECK_BATCH)]


# gc=False: it holds only scalars, so it needs no GC header (16 B on each key an edge caches)
class KeyFacts(msgspec.Struct, frozen=True, tag="key_facts", gc=False):
    """What the edge needs to authenticate a key, cached until an event says otherwise."""

    key_id: str
    account_id: str
    kind: KeyKind
    plan: Plan
    revoked: bool
    expires_at: datetime | None = None
    secret_valid_until: datetime | None = None  # set for a replaced secret in its grace period
    rate_limit: int | None = None
    data_plane: bool = True  # False: a master key its account keeps to managing keys
    scopes: tuple[str, ...] = ()  # () : everything its kind may call
    allowed_ips: tuple[str, ...] = ()  # CIDRs; () : from anywhere
    shadow: bool = False  # its limits are counted and reported, never enforced


class CheckedKeys(msgspec.Struct, frozen=True, tag="checked_keys"):
    """One reply per hash, in order: the key's facts, or why not (unknown, malformed hash)."""

    replies: list[KeyFacts | Rejected]


# Rejected: the message was malformed or too large, or the service failed (no hash answered)
CheckReply = CheckedKeys | Rejected

# --- management commands -------------------------------------------------------------------


# No line breaks or escapes slipped into the keys service's logs and events (or none at all)
RequestId = Annotated[str, msgspec.Meta(pattern=f"^(?:{REQUEST_ID_PATTERN})?$")]


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    actor: str = OPERATOR
    request_id: RequestId = ""
    # How long the sender waits for the answer (None: as long as it takes). A change the keys
    # service could not commit well within it is not applied: by then the sender has given up
    # and told its client the change failed (503), so it must not happen after all.
    answer_within_ms: int | None = None


class CreateAccount(Command, frozen=True, tag="create_account"):
    master_key_hash: str
    master_key_hint: str
    name: str = ""
    plan: Plan = "free"


class SetPlan(Command, frozen=True, tag="set_plan"):
    account_id: str
    plan: Plan


class GetAccount(Command, frozen=True, tag="get_account"):
    account_id: str


class CreateKey(Command, frozen=True, tag="create_key"):
    account_id: str
    name: str
    secret_hash: str
    hint: str
    expires_at: datetime | None = None
    rate_limit: int | None = None
    scopes: tuple[str, ...] = ()
    allowed_ips: tuple[str, ...] = ()
    shadow: bool = False


class RestrictKey(Command, frozen=True, tag="restrict_key"):
    """New restrictions for a key; a field left None keeps its current value."""

    account_id: str | None
    key_id: str
    scopes: tuple[str, ...] | None = None
    allowed_ips: tuple[str, ...] | None = None
    shadow: bool | None = None


class ListKeys(Command, frozen=True, tag="list_keys"):
    account_id: str


class GetKey(Command, frozen=True, tag="get_key"):
    account_id: str | None  # None: any account's (read and operator subjects only)
    key_id: str


class RevokeKey(Command, frozen=True, tag="revoke_key"):
    account_id: str | None
    key_id: str
    reason: str = ""


class RegenerateKey(Command, frozen=True, tag="regenerate_key"):
    account_id: str | None
    key_id: str
    secret_hash: str
    hint: str
    grace_seconds: int = 0


class ListKeyEvents(Command, frozen=True, tag="list_key_events"):
    """A key's own events, oldest first: its audit trail."""

    account_id: str | None  # None: any account's (read and operator subjects only)
    key_id: str


class RebuildProjections(Command, frozen=True, tag="rebuild_projections"):
    """Drop every read model and refold it from the event log (operators only)."""


class SetMasterKeyDataPlane(Command, frozen=True, tag="set_master_key_data_plane"):
    """Whether the account's master key may call the forwarded /v1/... routes (an owner's
    setting; False keeps it to managing keys)."""

    account_id: str
    data_plane: bool


class ReplaceMasterKey(Command, frozen=True, tag="replace_master_key"):
    """Account recovery (operators only): a new master key for the account, whose master keys
    until now are revoked. The reply is the new key."""

    account_id: str
    secret_hash: str
    hint: str
    reason: str = ""  # recorded in the old master key's revocation


AnyCommand = (
    CreateAccount
    | SetPlan
    | GetAccount
    | CreateKey
    | ListKeys
    | GetKey
    | RevokeKey
    | RegenerateKey
    | RestrictKey
    | ListKeyEvents
    | RebuildProjections
    | ReplaceMasterKey
    | SetMasterKeyDataPlane
)

# --- replies -------------------------------------------------------------------------------


class AccountView(msgspec.Struct, frozen=True, tag="account"):
    account_id: str
    name: str
    plan: Plan
    master_key_id: str
    created_at: datetime
    master_key_data_plane: bool = True  # False: the master key manages keys and calls nothing


class KeyView(msgspec.Struct, frozen=True, tag="key"):
    key_id: str
    account_id: str
    name: str
    kind: KeyKind
    hint: str
    status: str  # "active" | "revoked" | "expired"
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    regenerated_at: datetime | None = None
    rate_limit: int | None = None
    last_used_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    allowed_ips: tuple[str, ...] = ()
    shadow: bool = False


class KeyList(msgspec.Struct, frozen=True, tag="key_list"):
    keys: list[KeyView]


class KeyHistory(msgspec.Struct, frozen=True, tag="key_history"):
    events: list[AnyEvent]


class Rebuilt(msgspec.Struct, frozen=True, tag="rebuilt"):
    events: int  # how many events the read models were refolded from


Reply = AccountView | KeyView | KeyList | KeyHistory | Rebuilt | Rejected

# --- between keys processes ----------------------------------------------------------------


class Committed(msgspec.Struct, frozen=True):
    """What a keys process just committed, sent to the others before the key event stream
    brings it: each changed stream (an account or key id) and its version after the commit.
    The outbox relay's holder looks for the events now; every other process answers checks of
    those streams' keys from the database until its facts index has the versions."""

    origin: str  # the sending process: it knows its own commits already
    versions: dict[str, int]


encoder = msgspec.json.Encoder()
check_decoder: msgspec.json.Decoder[CheckKeys] = msgspec.json.Decoder(CheckKeys)
check_reply_decoder: msgspec.json.Decoder[CheckReply] = msgspec.json.Decoder(CheckReply)
command_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)
reply_decoder: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)
