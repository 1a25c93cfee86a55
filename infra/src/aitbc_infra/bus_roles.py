"""Who may do what on the bus: one NATS user per role, each with the least it needs, and one
NATS account per writer of stores.

This table is the whole policy. `aitbc_infra.bus_config` turns it into the nats-server
configuration that `just up`, the tests and `infra/nats/` run (the accounts' links from
`aitbc_infra.bus_accounts`); docs/security.md shows it as a table (tests/unit/test_bus_roles.py
keeps the two the same).

What is not listed is refused by the server, and what a role has the server send for it (on a
reply subject it names, below) stores nothing where its row does not let it write (tested for
every role and store: tests/integration/test_reply_stores.py). Besides its row, every role
may subscribe to its own inbox prefix only (`_INBOX.<its public key's first 16 characters>`,
aitbc_runtime.bus_access), so no role reads another's replies. Responders get
`allow_responses`: they may publish to the reply subject of a request they received, once;
they also check that it is an inbox or an import's answer subject
(aitbc_runtime.bus.answerable). Nobody but an admin may delete or purge a stream or a bucket.

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
- USAGE: the usage counters and the usage services' lease bucket; `usage`;
- EDGE: the usage stream (the edges publish every request's event) and the dashboard's sessions;
  `edge`;
- READ: no store; the read-only operators, `auditor` and `analytics`;
- ADMIN: no store; `admin`, with every service, every store and the JetStream API of the
  accounts it `manages` imported (under `$JS.<ACCOUNT>.API`).

Whoever reads a stream of another account reads a mirror of the same name in its own
(aitbc_infra.bus_streams): a mirror has no subjects, so nothing can be published into it. A
role that asks a service of another account (a subject a role there subscribes to) reaches it
through a service export and import, which the answer comes back through.

No role but an admin may change a stream's configuration (STREAM.UPDATE): whoever can would
make its own stream capture other subjects (`_INBOX.>`: every reply) or republish into others
(verified against nats-server 2.15). A service may create its own buckets while they do not
exist yet (`owns`); once they do, the server refuses a create with another configuration.
The streams others mirror are made by the admins when the bus is provisioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Role:
    name: str
    who: str  # for people: which process connects as this role
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    responds: bool = False  # allow_responses: it answers requests
    admin: bool = False  # everything in its account, deleting and purging included
    account: str = field(kw_only=True)  # always named: which stores its users can reach
    # An admin's: the accounts whose services, stores and JetStream API its account imports
    manages: tuple[str, ...] = ()

    def summary(self) -> str:
        """The role's row for the documentation (docs/security.md): its subjects as they are,
        and its JetStream subjects by stream, named after the bundles below that they make up
        (`reads`, `owns`, `pulls`; whatever no bundle covers is listed as it is); a stream of
        another account is its account's mirror."""
        if self.admin:
            reach = "everything"
            read = [x.removeprefix(STREAM_INFO) for x in self.publish if x.startswith(STREAM_INFO)]
            if read:
                reach += f" (mirrors of {', '.join(f'`{x}`' for x in read)})"
            if self.manages:
                names = ", ".join(self.manages)
                reach += (
                    f"; through imports, in {names}: what their roles subscribe to, their "
                    "stores' subjects, and the JetStream API (`$JS.<ACCOUNT>.API.>`)"
                )
            return f"| `{self.name}` | {self.account} | {self.who} | {reach} | everything | no |"
        plain = [f"`{x}`" for x in self.publish if not x.startswith("$JS.")]
        subscribe = ", ".join(f"`{x}`" for x in self.subscribe) or "its inbox only"
        return (
            f"| `{self.name}` | {self.account} | {self.who} | "
            f"{', '.join(plain + self._streams()) or 'nothing'} | "
            f"{subscribe} | {'yes' if self.responds else 'no'} |"
        )

    def _streams(self) -> list[str]:
        granted = set(self.publish)
        covered: set[str] = set()
        described = []
        streams = [x.removeprefix(STREAM_INFO) for x in self.publish if x.startswith(STREAM_INFO)]
        for stream in streams:
            held = {name: set(b(stream)) for name, b in BUNDLES if set(b(stream)) <= granted}
            widest = [name for name, x in held.items() if not any(x < y for y in held.values())]
            covered.update(*held.values())
            store = STORES.get(stream)
            mirror = " (mirror)" if store is not None and store.account != self.account else ""
            described.append(f"`{stream}`{mirror}: {' + '.join(widest)}")
        rest = [f"`{x}`" for x in self.publish if x.startswith("$JS.") and x not in covered]
        return described + rest


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "edge",
            "the edge (aitbc-api), each process",
            publish=(
                s.KEYS_CHECK,
                s.KEYS_OWNER_COMMANDS,
                f"{s.USAGE_DECIDE_PREFIX}.*",
                f"{s.USAGE_SETTLE_PREFIX}.*",
                f"{s.USAGE_EVENTS_PREFIX}.*.batch",  # into the usage stream, USAGE's: imported
                s.USAGE_QUERY,
                s.EDGE_PRESENCE_SUBJECTS,  # it is alive (fail-open limits: one share each)
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.DASHBOARD_SESSIONS_BUCKET),
            ),
            subscribe=(s.EDGE_PRESENCE_SUBJECTS,),  # how many edges are
            account=EDGE_ACCOUNT,
        ),
        Role(
            "keys",
            "the keys service (aitbc-keys): answers checks and commands",
            publish=(
                s.KEYS_CHECK,  # it asks itself: ready?
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.KEYS_LEASES_BUCKET),  # which process runs the relay
            ),
            subscribe=(
                s.KEYS_CHECK,
                s.KEYS_READ_COMMANDS,
                s.KEYS_OWNER_COMMANDS,
                s.KEYS_OPERATOR_COMMANDS,
            ),
            responds=True,
            account=KEYS_ACCOUNT,
        ),
        Role(
            "keys-writer",
            "the keys service's event publisher: the only writer of the key event log",
            publish=(
                f"{s.KEY_EVENTS_PREFIX}.>",
                f"{s.KEY_CHECKPOINTS_PREFIX}.>",
                *writes(KEY_EVENTS_STREAM),  # alone in its account, it may update them too
                *writes(CHECKPOINTS_STREAM),
                s.KEYS_COMMITTED,  # what it committed: the relay's holder looks now
            ),
            subscribe=(s.KEYS_COMMITTED,),  # the others' commits, before the stream has them
            account=KEYLOG_ACCOUNT,
        ),
        Role(
            "usage",
            "the usage service (aitbc-usage)",
            publish=(
                s.USAGE_QUERY,  # it asks itself before it says it is ready
                f"{s.USAGE_DECIDE_PREFIX}.*",  # likewise
                s.KEYS_READ_COMMANDS,
                # What it counts, in its own account: read with no mirror between, so that a
                # node's loss delays no count; the stream's only other writers are the edges.
                s.USAGE_EVENTS_SUBJECTS,
                *reads(s.USAGE_STREAM),
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.USAGE_COUNTERS_BUCKET),
                *bucket(s.USAGE_LEASES_BUCKET),
            ),
            subscribe=(f"{s.USAGE_DECIDE_PREFIX}.*", f"{s.USAGE_SETTLE_PREFIX}.*", s.USAGE_QUERY),
            responds=True,
            account=USAGE_ACCOUNT,
        ),
        Role(
            "auditor",
            "an operator's read-only CLI: `keys show`, `events replay`, `events verify`, usage",
            publish=(
                s.USAGE_QUERY,
                s.KEYS_READ_COMMANDS,
                *reads(KEY_EVENTS_STREAM),
                *reads(CHECKPOINTS_STREAM),
                *reads(s.USAGE_STREAM),
            ),
            account=READ_ACCOUNT,
        ),
        Role(
            "analytics",
            "an analytics consumer: reads the usage stream, nothing else",
            publish=(*reads(s.USAGE_STREAM), *pulls(s.USAGE_STREAM)),
            account=READ_ACCOUNT,
        ),
        Role(
            "admin",
            "an operator's CLI with every power, deleting streams included",
            # What the CLI reads, mirrored in its account as in the auditor's
            publish=(*reads(KEY_EVENTS_STREAM), *reads(CHECKPOINTS_STREAM), *reads(s.USAGE_STREAM)),
            admin=True,
            manages=(KEYS_ACCOUNT, USAGE_ACCOUNT, EDGE_ACCOUNT, READ_ACCOUNT),
            account=ADMIN_ACCOUNT,  # alone: nobody else can have the server send on its imports
        ),
        Role(
            "keylog-admin",
            "an operator repairing the key event log itself (its mirrors' admin is `admin`)",
            admin=True,
            account=KEYLOG_ACCOUNT,
        ),
    )
}
