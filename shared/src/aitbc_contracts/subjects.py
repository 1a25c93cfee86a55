"""Every NATS subject, stream, queue group and header name, defined once."""

from __future__ import annotations

# --- key event log (JetStream) -------------------------------------------------------------
KEY_EVENTS_STREAM = "AITBC_KEY_EVENTS"
KEY_EVENTS_PREFIX = "aitbc.keys.events"
KEY_EVENTS_SUBJECTS = f"{KEY_EVENTS_PREFIX}.>"


def key_event_subject(account_id: str, stream_id: str) -> str:
    """aitbc.keys.events.<account>.<stream>: filterable by account, or by key (the stream)."""
    return f"{KEY_EVENTS_PREFIX}.{account_id}.{stream_id}"


# --- keys service request/reply ------------------------------------------------------------
KEYS_CHECK = "aitbc.keys.check"  # CheckKey -> KeyFacts | Rejected
KEYS_COMMANDS = "aitbc.keys.commands"  # Command -> Reply
KEYS_QUEUE = "aitbc-keys"  # queue group: any number of keys services share the work

# --- headers -------------------------------------------------------------------------------
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream de-duplication
EXPECTED_LAST_SEQUENCE_HEADER = "Nats-Expected-Last-Sequence"
POSITION_HEADER = "Aitbc-Position"  # the event's global position in the event store
