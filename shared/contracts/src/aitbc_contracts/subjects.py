"""Every NATS subject, stream, queue group and header name, defined once."""

from __future__ import annotations

import zlib

# --- key event log (JetStream) -------------------------------------------------------------
KEY_EVENTS_STREAM = "AITBC_KEY_EVENTS"
KEY_EVENTS_PREFIX = "aitbc.keys.events"
KEY_EVENTS_SUBJECTS = f"{KEY_EVENTS_PREFIX}.>"


def key_event_subject(account_id: str, stream_id: str) -> str:
    """aitbc.keys.events.<account>.<stream>: filterable by account, or by key (the stream)."""
    return f"{KEY_EVENTS_PREFIX}.{account_id}.{stream_id}"


# --- signed checkpoints of the key event log's chain head (JetStream) ------------------------
KEY_CHECKPOINTS_STREAM = "AITBC_KEY_CHECKPOINTS"
KEY_CHECKPOINTS_PREFIX = "aitbc.keys.checkpoints"
KEY_CHECKPOINTS_SUBJECTS = f"{KEY_CHECKPOINTS_PREFIX}.>"

# --- the key log's own NATS account (KEYLOG), and the mirrors of its streams -----------------
# The two streams above live in KEYLOG; every other role reads mirrors of the same names in its
# own account, which hold no subjects (read them by name). A mirror follows KEYLOG's consumer
# API as its account imports it, and KEYLOG delivers the mirrored messages under a prefix of
# their own. The same for the usage stream (below), in the usage service's account USAGE
# (aitbc_infra.bus_accounts derives these names from the accounts').
KEYLOG_API = "$JS.KEYLOG.API"
KEYLOG_DELIVER_PREFIX = "aitbc.keylog.deliver"
USAGE_API = "$JS.USAGE.API"
USAGE_DELIVER_PREFIX = "aitbc.usage.deliver"
# A keys process committed events (Committed): the one running the outbox relay (the holder of
# KEYS_LEASES_BUCKET's `relay`) looks at once rather than at its next poll, and the others know
# which of their facts are behind until the stream brings the events. In KEYLOG, between the
# keys services' writers alone: nobody else can send it or read it.
KEYS_COMMITTED = "aitbc.keys.committed"  # Committed, published, no reply

# --- keys service request/reply ------------------------------------------------------------
KEYS_CHECK = "aitbc.keys.check"  # CheckKeys -> CheckedKeys | Rejected
# Commands -> Reply. The subject a command arrives on is its sender's power, granted by the
# server's permissions (infra bus roles), never a field the sender fills in:
KEYS_READ_COMMANDS = "aitbc.keys.commands.read"  # look-ups only (usage service, auditors)
KEYS_OWNER_COMMANDS = "aitbc.keys.commands.owner"  # an account's owner, through the edge
KEYS_OPERATOR_COMMANDS = "aitbc.keys.commands.operator"  # operators (the admin CLI)
KEYS_COMMANDS_SUBJECTS = "aitbc.keys.commands.*"
KEYS_QUEUE = "aitbc-keys"  # queue group: any number of keys services share the work

# --- headers -------------------------------------------------------------------------------
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream de-duplication
EXPECTED_LAST_SEQUENCE_HEADER = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_HEADER = "Nats-Expected-Last-Subject-Sequence"
POSITION_HEADER = "Aitbc-Position"  # the event's global position in the event store
HASH_HEADER = "Aitbc-Hash"  # the event's chain hash (aitbc_contracts.chain)

# --- usage: rate-limit decisions, partitioned by account -----------------------------------
USAGE_PARTITIONS = 16  # fixed for the system: a partition is the unit a usage process owns
USAGE_DECIDE_PREFIX = "aitbc.usage.decide"  # .<partition>: DecideBatch -> DecisionBatch
USAGE_SETTLE_PREFIX = "aitbc.usage.settle"  # .<partition>: Settlements, published, no reply
USAGE_QUERY = "aitbc.usage.query"  # UsageQuery | LastUsedQuery -> UsageSeries | LastUsed | Rejected
USAGE_QUEUE = "aitbc-usage"

# --- usage stream (JetStream): every request, in batches, for analytics ---------------------
USAGE_STREAM = "AITBC_USAGE"
USAGE_EVENTS_PREFIX = "aitbc.usage.events"  # .<partition>.batch, and .<partition>.<account> (old)
USAGE_EVENTS_SUBJECTS = f"{USAGE_EVENTS_PREFIX}.>"
USAGE_AGGREGATOR_DURABLE = "usage-aggregator"  # -<partition>: the aggregates' cursor names


def partition_of(account_id: str, partitions: int = USAGE_PARTITIONS) -> int:
    """A stable hash (CRC32, not Python's salted hash) so every process agrees."""
    return zlib.crc32(account_id.encode()) % partitions


def usage_decide_subject(partition: int) -> str:
    return f"{USAGE_DECIDE_PREFIX}.{partition}"


def usage_settle_subject(partition: int) -> str:
    return f"{USAGE_SETTLE_PREFIX}.{partition}"


def usage_batch_subject(partition: int) -> str:
    """Where the edge publishes a partition's UsageBatch messages ("batch" is never an account
    id: those are acc_ + 16 hex digits)."""
    return f"{USAGE_EVENTS_PREFIX}.{partition}.batch"


def usage_partition_subjects(partition: int) -> str:
    """Everything the usage stream holds for one partition: its batches and older single
    events. An account's events are found here, filtered by account id."""
    return f"{USAGE_EVENTS_PREFIX}.{partition}.>"


def usage_event_subject(account_id: str) -> str:
    """Where single events (usage.request.v1, one message per request) were published."""
    return f"{USAGE_EVENTS_PREFIX}.{partition_of(account_id)}.{account_id}"


USAGE_COUNTERS_BUCKET = "aitbc_usage_counters"  # KV: the current minute's counts per partition
USAGE_LEASES_BUCKET = "aitbc_usage_leases"  # KV: which usage process holds which partition
KEYS_LEASES_BUCKET = "aitbc_keys_leases"  # KV: which keys process runs the outbox relay
DASHBOARD_SESSIONS_BUCKET = "aitbc_dashboard_sessions"  # KV: signed-in dashboard sessions

# --- edges' presence: how many edges share an account's limit when they fail open -----------
EDGE_PRESENCE_PREFIX = "aitbc.edges.presence"  # .<edge id>: EdgePresence, published, no reply
EDGE_PRESENCE_SUBJECTS = f"{EDGE_PRESENCE_PREFIX}.*"


def edge_presence_subject(edge_id: str) -> str:
    return f"{EDGE_PRESENCE_PREFIX}.{edge_id}"
