"""What the AsyncAPI document says, as tables: every message (its payload type, summary and
headers) and every operation, seen from the service that owns the subject; the channels they
name are in aitbc_contracts.asyncapi_channels. aitbc_contracts.asyncapi builds the document
from them."""

from __future__ import annotations

from typing import Any

from aitbc_contracts import checkpoints as c
from aitbc_contracts import messages as m
from aitbc_contracts import presence
from aitbc_contracts import subjects as s
from aitbc_contracts import usage as u
from aitbc_contracts.asyncapi_buckets import AccountSessions, DashboardSession, UsageCounters
from aitbc_contracts.events import AnyEvent
from aitbc_contracts.ownership import LeaseMember, LeaseShare


def _header(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


KEY_EVENT_HEADERS = {
    "type": "object",
    "properties": {
        s.MSG_ID_HEADER: _header("the event id: JetStream drops a re-published duplicate"),
        s.POSITION_HEADER: _header("the event's global position in the event store (1, 2, ...)"),
        s.HASH_HEADER: _header("the event's chain hash: sha256(previous hash + these bytes)"),
        s.EXPECTED_LAST_SEQUENCE_HEADER: _header(
            "set by the relay: the server refuses the message unless it follows this sequence"
        ),
    },
}
CHECKPOINT_HEADERS = {
    "type": "object",
    "properties": {
        s.EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER: _header(
            "0: the server refuses a second message with the same checkpoint number"
        ),
    },
}
USAGE_EVENT_HEADERS = {
    "type": "object",
    "properties": {s.MSG_ID_HEADER: _header("the usage event id: a retried publish counts once")},
}
USAGE_BATCH_HEADERS = {
    "type": "object",
    "properties": {
        s.MSG_ID_HEADER: _header(
            "the batch id: a retry re-publishes the same bytes under it, and counts once"
        )
    },
}


# message name -> (payload type, summary, headers schema or None)
MESSAGES: dict[str, tuple[Any, str, dict[str, Any] | None]] = {
    "CheckKeys": (
        m.CheckKeys,
        f"Are these key hashes known, and what may each do? (at most {m.MAX_CHECK_BATCH})",
        None,
    ),
    "CheckReply": (
        m.CheckReply,
        "Per hash, in order, its key's facts or why not; a Rejected alone: the whole message "
        "was refused (malformed, too large) or the service failed",
        None,
    ),
    "Command": (m.AnyCommand, "A management command, tagged by `command`", None),
    "Reply": (m.Reply, "The command's result, or why it was refused", None),
    "KeyEvent": (AnyEvent, "A change to an account or key, tagged by `type`", KEY_EVENT_HEADERS),
    "KeyCheckpoint": (
        c.Checkpoint,
        "The key event log's chain head at a position, signed with Ed25519 "
        "(aitbc_contracts.checkpoints defines the signed bytes)",
        CHECKPOINT_HEADERS,
    ),
    "DecideBatch": (u.DecideBatch, "Rate-limit decisions to take, in order", None),
    "DecisionBatch": (u.DecisionBatch, "One decision per item, in the same order", None),
    "Settlements": (u.Settlements, "Leases an edge has done with: what each did not use", None),
    "UsageQuestion": (u.UsageQuery | u.LastUsedQuery, "A usage query, tagged by `type`", None),
    "UsageAnswer": (u.UsageSeries | u.LastUsed | m.Rejected, "The answer, or why not", None),
    "UsageBatch": (
        u.UsageBatch,
        "A partition's requests through one edge in one flush, in order",
        USAGE_BATCH_HEADERS,
    ),
    "UsageEvent": (u.UsageEvent, "One request through the edge", USAGE_EVENT_HEADERS),
    "UsageCounters": (UsageCounters, "A partition's counts this minute (and second and day)", None),
    "LeaseMember": (LeaseMember, "A process that may hold shares, alive while rewritten", None),
    "LeaseShare": (LeaseShare, "Which member holds a share; its revision is the epoch", None),
    "Committed": (m.Committed, "What a keys process just committed: streams and versions", None),
    "DashboardSession": (DashboardSession, "Who signed in, and the session's CSRF token", None),
    "EdgePresence": (presence.EdgePresence, "An edge is alive, for `alive_for` seconds", None),
    "DashboardAccountSessions": (
        AccountSessions,
        "An account's dashboard sessions, oldest first: what its cap of sessions reads",
        None,
    ),
}

# operation -> (action, channel, reply channel or None, queue group or None, summary)
OPERATIONS: dict[str, tuple[str, str, str | None, str | None, str]] = {
    "checkKeys": ("receive", "keyCheck", "keyCheckReply", s.KEYS_QUEUE, "keys service"),
    "runReadCommand": (
        "receive",
        "keyReadCommands",
        "keyCommandReply",
        s.KEYS_QUEUE,
        "keys service",
    ),
    "runOwnerCommand": (
        "receive",
        "keyOwnerCommands",
        "keyCommandReply",
        s.KEYS_QUEUE,
        "keys service",
    ),
    "runOperatorCommand": (
        "receive",
        "keyOperatorCommands",
        "keyCommandReply",
        s.KEYS_QUEUE,
        "keys service",
    ),
    "publishKeyEvent": ("send", "keyEvents", None, None, "keys service outbox relay"),
    "publishCheckpoint": ("send", "keyCheckpoints", None, None, "keys service checkpoints"),
    "announceCommit": ("send", "keysCommitted", None, None, "keys service that committed"),
    "decide": ("receive", "usageDecide", "usageDecideReply", None, "usage partition owner"),
    "settleLeases": ("receive", "usageSettle", None, None, "usage partition owner"),
    "queryUsage": ("receive", "usageQuery", "usageQueryReply", s.USAGE_QUEUE, "usage service"),
    "publishUsageBatch": ("send", "usageEvents", None, None, "edge"),
    "snapshotCounters": ("send", "usageCounters", None, None, "usage partition owner"),
    "keepSession": ("send", "dashboardSessions", None, None, "edge (dashboard)"),
    "announceEdge": ("send", "edgePresence", None, None, "edge"),
    "listAccountSessions": ("send", "dashboardAccountSessions", None, None, "edge (dashboard)"),
}
