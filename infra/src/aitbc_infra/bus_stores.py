"""The bus's accounts and the stores they hold: one NATS account per writer of stores.

Accounts, because NATS cannot restrict reply subjects. Whoever may publish anything can have
the server publish, in its own account, to any subject it names as the reply: JetStream's
PubAck of a publish into a stream, the JetStream API's answer to any request (a pull delivers
a stream's messages there), a responder's answer (one behind an import sees only the `_R_.`
subject the server made for it, whatever the requester named). Subjects do not cross
accounts but through imports. So each store (`STORES`: a stream or a KV bucket with subjects)
lives in the account of the one role that writes it, alone there, and an account imports a
store's subjects only where each of its users may write that store (ADMIN, which holds the
admin alone):

- KEYLOG: the key event log and its checkpoints; `keys-writer`, and `keylog-admin`;
- KEYS: the keys services' lease bucket; `keys`;
- USAGE: the usage counters, the usage services' lease bucket and the usage stream (the edges
  publish every request's event into it through a service import); `usage`;
- EDGE: the dashboard's sessions; `edge`;
- READ: no store; the read-only operators, `auditor` and `analytics`;
- ADMIN: no store; `admin`, with every service, every store and the JetStream API of the
  accounts it `manages` imported (under `$JS.<ACCOUNT>.API`).

Whoever reads a stream of another account reads a mirror of the same name in its own
(aitbc_infra.bus_streams): a mirror has no subjects, so nothing can be published into it. A
role that asks a service of another account (a subject a role there subscribes to) reaches it
through a service export and import, which the answer comes back through.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc_contracts import subjects as s

KEYLOG_ACCOUNT = "KEYLOG"  # the key event log and its checkpoints: written by keys-writer only
KEYS_ACCOUNT = "KEYS"
USAGE_ACCOUNT = "USAGE"
EDGE_ACCOUNT = "EDGE"
READ_ACCOUNT = "READ"  # read-only operators: mirrors only
ADMIN_ACCOUNT = "ADMIN"  # the admin alone
ACCOUNTS = (
    KEYLOG_ACCOUNT,
    KEYS_ACCOUNT,
    USAGE_ACCOUNT,
    EDGE_ACCOUNT,
    READ_ACCOUNT,
    ADMIN_ACCOUNT,
)

KEY_EVENTS_STREAM = s.KEY_EVENTS_STREAM
CHECKPOINTS_STREAM = s.KEY_CHECKPOINTS_STREAM
SESSIONS_STREAM = f"KV_{s.DASHBOARD_SESSIONS_BUCKET}"
COUNTERS_STREAM = f"KV_{s.USAGE_COUNTERS_BUCKET}"


@dataclass(frozen=True)
class Store:
    """A stream with subjects (a KV bucket is one): what publishes on them is stored."""

    stream: str
    subjects: str
    account: str  # its writer's, where nobody else may publish anything


def kv(bucket: str, account: str) -> Store:
    return Store(f"KV_{bucket}", f"$KV.{bucket}.>", account)


STORES: dict[str, Store] = {
    store.stream: store
    for store in (
        Store(KEY_EVENTS_STREAM, s.KEY_EVENTS_SUBJECTS, KEYLOG_ACCOUNT),
        Store(CHECKPOINTS_STREAM, s.KEY_CHECKPOINTS_SUBJECTS, KEYLOG_ACCOUNT),
        kv(s.KEYS_LEASES_BUCKET, KEYS_ACCOUNT),
        kv(s.USAGE_COUNTERS_BUCKET, USAGE_ACCOUNT),
        kv(s.USAGE_LEASES_BUCKET, USAGE_ACCOUNT),
        Store(s.USAGE_STREAM, s.USAGE_EVENTS_SUBJECTS, USAGE_ACCOUNT),
        kv(s.DASHBOARD_SESSIONS_BUCKET, EDGE_ACCOUNT),
    )
}

# Denied to every role but the admins, even where an allow of its row would match.
DESTRUCTIVE = ("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>")


def reads(stream: str) -> tuple[str, ...]:
    """Follow a stream with consumers of one's own (ephemeral or ordered, push): create and
    delete them, ask for the stream's and their info, answer flow control, and get single
    messages (KV gets are direct gets)."""
    return (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",  # ephemeral, unnamed (nats-py's ordered consumers)
        f"$JS.API.CONSUMER.CREATE.{stream}.>",  # named, with or without a filter
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",  # flow control answers
    )


def pulls(stream: str) -> tuple[str, ...]:
    """Durable pull consumers, for an analytics job that resumes where it stopped: fetch and
    acknowledge (an acknowledgement removes nothing from a stream with limits retention)."""
    return (
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def owns(stream: str) -> tuple[str, ...]:
    """Create a stream while it does not exist, and read it (no update, delete or purge)."""
    return (f"$JS.API.STREAM.CREATE.{stream}", *reads(stream))


def writes(stream: str) -> tuple[str, ...]:
    """Own a stream alone in its account: also bring its settings up to date."""
    return (*owns(stream), f"$JS.API.STREAM.UPDATE.{stream}")


STREAM_INFO = "$JS.API.STREAM.INFO."
# How the documentation names a role's powers on a stream; the wider ones first ("owns"
# includes "reads": a row says only the wider).
BUNDLES = (("writes", writes), ("owns", owns), ("reads", reads), ("pulls", pulls))


def bucket(name: str) -> tuple[str, ...]:
    """Own a KV bucket: make it, and put, get and delete its keys (a delete is a marker
    published on the key's subject; only an admin removes the bucket or purges its stream)."""
    return (*owns(f"KV_{name}"), f"$KV.{name}.>")
