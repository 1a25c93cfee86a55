"""What the AsyncAPI document says of each channel (subject, stream or bucket): its address,
what it carries, its parameters, its messages (named in aitbc_contracts.asyncapi_catalog) and
its JetStream details. aitbc_contracts.asyncapi builds the document from it."""

from __future__ import annotations

from typing import Any

from aitbc_contracts import presence
from aitbc_contracts import subjects as s
from aitbc_contracts import usage as u


def _leases(bucket: str, holds: str, share: str, more: str = "") -> tuple[Any, ...]:
    """A lease bucket's channel (aitbc_runtime.ownership)."""
    return (
        f"$KV.{bucket}.{{entry}}",
        f"Key/value bucket: {holds}, and the processes' heartbeats (`member.<id>`).{more}",
        {"entry": {"description": f"member.<id> or {share}"}},
        ["LeaseMember", "LeaseShare"],
        {"bucket": bucket, "history": 1},
    )


def _key_log(stream: str, subjects: str, **more: str) -> dict[str, Any]:
    """A stream of the key log: in an account of its own, read elsewhere through a mirror."""
    return {
        "stream": stream,
        "subjects": [subjects],
        "storage": "file",
        "retention": "limits (kept for ever)",
        "account": "KEYLOG: only the keys service's writer (keys-writer) publishes here",
        "mirror": f"{stream} in each other account that reads it (KEYS, USAGE, EDGE, READ, "
        "ADMIN), what every other role reads: no subjects, so it is read by name; it follows "
        f"the log through a durable consumer of its own there (MIRROR_<account>, reset "
        f"through {s.KEYLOG_API}), KEYLOG delivering its messages on "
        f"{s.KEYLOG_DELIVER_PREFIX}.<account>.<stream>",
        **more,
    }


PARTITION = {
    "description": f"usage partition: crc32(account id) % {s.USAGE_PARTITIONS}",
    "enum": [str(p) for p in range(s.USAGE_PARTITIONS)],
}
ACCOUNT = {"description": "account id, acc_ + 16 hex digits"}
USAGE_BATCHES = s.usage_batch_subject(0).replace(".0.", ".{partition}.")
USAGE_PARTITION = s.usage_partition_subjects(0).replace(".0.", ".{partition}.")

# channel -> (address, description, parameters, message names, JetStream details or None)
CHANNELS: dict[str, tuple[str | None, str, dict[str, Any], list[str], dict[str, Any] | None]] = {
    "keyCheck": (
        s.KEYS_CHECK,
        "Auth checks from the edge, the cache misses of a burst in one message (request/reply).",
        {},
        ["CheckKeys"],
        None,
    ),
    "keyCheckReply": (None, "The reply inbox of a key check.", {}, ["CheckReply"], None),
    # The subject a command comes on is its sender's power (aitbc_contracts.powers): the NATS
    # server lets only the roles named here publish on it (aitbc_infra.bus_roles).
    "keyReadCommands": (
        s.KEYS_READ_COMMANDS,
        "Look-ups of any account (get_account, list_keys, get_key, list_key_events), "
        "request/reply; any other command is refused (FORBIDDEN). Published by the usage "
        "service (plans) and the `aitbc` command line with the auditor's or the admin's "
        f"credentials. One of the three command subjects ({s.KEYS_COMMANDS_SUBJECTS}).",
        {},
        ["Command"],
        None,
    ),
    "keyOwnerCommands": (
        s.KEYS_OWNER_COMMANDS,
        "An account owner's commands, sent by the edge for a caller it authenticated "
        "(request/reply): sign-up on the free plan, look-ups, and creating, revoking (not the "
        "master key) and regenerating keys, each naming the caller's account. Operator "
        "commands (set_plan, rebuild_projections), a missing account_id, and the actor "
        "'operator' are refused (FORBIDDEN). Published by the edge only.",
        {},
        ["Command"],
        None,
    ),
    "keyOperatorCommands": (
        s.KEYS_OPERATOR_COMMANDS,
        "Every command, on any account (request/reply). Published by the `aitbc` command line "
        "with the admin's credentials only.",
        {},
        ["Command"],
        None,
    ),
    "keyCommandReply": (None, "The reply inbox of a command.", {}, ["Reply"], None),
    "keyEvents": (
        s.key_event_subject("{account_id}", "{stream_id}"),
        "The key event log: every committed event, in global position order, published "
        "verbatim from the event store by its outbox relay. stream_id is the aggregate: the "
        "account id for account events, the key id for key events. Replay it with "
        "`aitbc events replay`; check it with `aitbc events verify`.",
        {"account_id": ACCOUNT, "stream_id": {"description": "account id or key id"}},
        ["KeyEvent"],
        _key_log(
            s.KEY_EVENTS_STREAM,
            s.KEY_EVENTS_SUBJECTS,
            order="stream sequence = global position; each event's prev_hash is the hash of "
            "the one before it (aitbc_contracts.chain)",
        ),
    ),
    "keyCheckpoints": (
        f"{s.KEY_CHECKPOINTS_PREFIX}.{{number}}",
        "Signed checkpoints of the key event log: every N events or T seconds when anything "
        "is new, the keys service signs the chain head (position and chain hash) with its "
        "checkpoint key, stores it and publishes it here. `aitbc events verify` checks each "
        "signature under the trusted public key and each hash against the chain recomputed "
        "from the store and from the stream.",
        {"number": {"description": "the checkpoint's number: 1, 2, 3 ..."}},
        ["KeyCheckpoint"],
        _key_log(s.KEY_CHECKPOINTS_STREAM, s.KEY_CHECKPOINTS_SUBJECTS),
    ),
    "usageDecide": (
        f"{s.USAGE_DECIDE_PREFIX}.{{partition}}",
        "Rate-limit decisions, batched by the edge, answered by the one usage process that "
        "owns the partition (request/reply).",
        {"partition": PARTITION},
        ["DecideBatch"],
        None,
    ),
    "usageDecideReply": (None, "The reply inbox of a decision batch.", {}, ["DecisionBatch"], None),
    "usageSettle": (
        f"{s.USAGE_SETTLE_PREFIX}.{{partition}}",
        "Leases an edge settles on their own, when no decision of the account carries the "
        "settlement: far from its limit, a decision may lend the edge units (Decision.lease) "
        f"that it admits from for at most {u.LEASE_SECONDS} s; the unused go back here. A "
        f"lease not settled {u.LEASE_DUE_SECONDS} s after it was lent counts as wholly used.",
        {"partition": PARTITION},
        ["Settlements"],
        None,
    ),
    "usageQuery": (s.USAGE_QUERY, "Usage queries (request/reply).", {}, ["UsageQuestion"], None),
    "usageQueryReply": (None, "The reply inbox of a usage query.", {}, ["UsageAnswer"], None),
    "usageEvents": (
        USAGE_BATCHES,
        "Every request through the edge, for analytics, never a key (only its id): one "
        "UsageBatch per partition per flush of an edge. A consumer reads this and the older "
        "single events with aitbc_contracts.usage.usage_events_of; an account's events are "
        f"in its partition's subjects ({USAGE_PARTITION}).",
        {"partition": PARTITION},
        ["UsageBatch"],
        {
            "stream": s.USAGE_STREAM,
            "subjects": [s.USAGE_EVENTS_SUBJECTS],
            "storage": "file",
            "retention": "limits, 7 days",
            "account": "USAGE: the edges (edge) publish here through a service import, and "
            "the usage service reads it in its own account",
            "mirror": f"{s.USAGE_STREAM} in READ and ADMIN, what their readers read: no "
            "subjects, so it is read by name; it follows the stream through a durable "
            f"consumer of its own there (MIRROR_<account>, reset through {s.USAGE_API}), "
            f"USAGE delivering its messages on {s.USAGE_DELIVER_PREFIX}.<account>.<stream>",
            "consumers": "the usage service aggregates all its partitions with one ordered "
            "consumer on the stream, resuming from each partition's position stored with the "
            f"aggregates (as {s.USAGE_AGGREGATOR_DURABLE}-<partition>); analytics consumers add "
            "their own",
        },
    ),
    "usageSingleEvents": (
        f"{s.USAGE_EVENTS_PREFIX}.{{partition}}.{{account_id}}",
        "One event per request, as edges published them before batches; a stream may still "
        "hold them, in the same stream and partitions as the batches.",
        {"partition": PARTITION, "account_id": ACCOUNT},
        ["UsageEvent"],
        {"stream": s.USAGE_STREAM, "subjects": [s.USAGE_EVENTS_SUBJECTS]},
    ),
    "usageCounters": (
        f"$KV.{s.USAGE_COUNTERS_BUCKET}.p{{partition}}",
        "Key/value bucket: each usage partition's counts for the current minute, so a "
        "restarted usage process neither forgets nor double-counts admissions.",
        {"partition": PARTITION},
        ["UsageCounters"],
        {"bucket": s.USAGE_COUNTERS_BUCKET, "history": 1, "ttl_seconds": 2 * u.WINDOW_SECONDS},
    ),
    "usageLeases": _leases(
        s.USAGE_LEASES_BUCKET,
        "which usage process holds which partition (`share.p<n>`)",
        "share.p<partition>",
        " A partition's holder is its only decider; the revision that gave it the partition "
        "is its epoch, sent with every DecisionBatch.",
    ),
    "keysLeases": _leases(
        s.KEYS_LEASES_BUCKET,
        "which keys process runs the outbox relay (`share.relay`)",
        "share.relay",
    ),
    "keysCommitted": (
        s.KEYS_COMMITTED,
        "After each commit, from the keys process that made it to the others, before the key "
        "event stream brings the events: the holder of `share.relay` relays them now rather "
        "than at its next poll (one second), so a revocation reaches the stream as soon from "
        "any keys process; every other process answers checks of the changed streams' keys "
        "from the database until its facts index has caught up, so no keys process vouches "
        "for a key another has just revoked. Nothing depends on it arriving. In the key log's "
        "account (KEYLOG): published and read by the keys services' writers (keys-writer) only.",
        {},
        ["Committed"],
        None,
    ),
    "dashboardSessions": (
        f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.{{digest}}",
        "Key/value bucket: dashboard sessions, so any edge serves any signed-in browser. The "
        "key is the SHA-256 of the session cookie's token; sign-out deletes the entry.",
        {"digest": {"description": "sha256 of the session token, hex"}},
        ["DashboardSession"],
        {
            "bucket": s.DASHBOARD_SESSIONS_BUCKET,
            "history": 1,
            "ttl_seconds": "DASHBOARD_SESSION_LIFETIME (43200)",
        },
    ),
    "edgePresence": (
        s.edge_presence_subject("{edge_id}"),
        f"Each edge says it is alive every {presence.PRESENCE_EVERY:g} s, under an id of its own "
        f"(alive_for {presence.ALIVE_FOR:g} s; 0 when it stops), and counts the edges it hears "
        f"({s.EDGE_PRESENCE_SUBJECTS}): with the usage service away, each admits an account's "
        "limit over that many. Published and read by edges only.",
        {"edge_id": {"description": "edge_ + 16 hex digits, new at each start"}},
        ["EdgePresence"],
        None,
    ),
    "dashboardAccountSessions": (
        f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.account.{{account_id}}",
        "Key/value bucket (the sessions' own): each account's sessions, so that a sign-in on "
        "any edge past DASHBOARD_SESSIONS_PER_ACCOUNT ends the account's oldest session.",
        {"account_id": ACCOUNT},
        ["DashboardAccountSessions"],
        {
            "bucket": s.DASHBOARD_SESSIONS_BUCKET,
            "history": 1,
            "ttl_seconds": "DASHBOARD_SESSION_LIFETIME (43200)",
        },
    ),
}
