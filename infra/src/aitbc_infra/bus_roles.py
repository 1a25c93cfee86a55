"""Who may do what on the bus: one NATS user per role, each with the least it needs.

This table is the whole policy. `aitbc_infra.bus_config` turns it into the nats-server
configuration that `just up`, the tests and `infra/nats/` run; docs/security.md shows it as
a table (tests/unit/test_bus_roles.py keeps the two the same).

What is not listed is refused by the server. Besides its row, every role may subscribe to its
own inbox prefix only (`_INBOX.<its public key's first 16 characters>`, aitbc_runtime.bus_access),
so no role reads another's replies. Responders get `allow_responses`: they may publish to the
reply subject of a request they received, once; they also check that it is an inbox
(aitbc_runtime.bus.answerable), because the server would let such an answer go anywhere the
requester names. Nobody but an admin may delete or purge a stream or a bucket.

Two NATS accounts. The key event log and its checkpoints live in `KEYLOG`, whose only users are
their writer and an admin: no message anyone else publishes, answers or has JetStream send (a
PubAck to a reply subject the publisher chose) can reach them, since subjects do not cross
accounts. Everyone else is in `AITBC` and reads the log from mirrors of the same names there
(aitbc_infra.bus_streams): a mirror has no subjects, so nothing can be published into it.

No role but an admin may change a stream's configuration (STREAM.UPDATE): whoever can would
make its own stream capture other subjects (`_INBOX.>`: every reply) or republish into others
(verified against nats-server 2.15). A service may create its own streams while they do not
exist yet (`owns`); once they do, the server refuses a create with another configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc_contracts import subjects as s

MAIN_ACCOUNT = "AITBC"
KEYLOG_ACCOUNT = "KEYLOG"  # the key event log and its checkpoints: written by keys-writer only

KEY_EVENTS_STREAM = s.KEY_EVENTS_STREAM  # in KEYLOG; a mirror of the same name in AITBC
CHECKPOINTS_STREAM = s.KEY_CHECKPOINTS_STREAM  # likewise
SESSIONS_STREAM = f"KV_{s.DASHBOARD_SESSIONS_BUCKET}"
COUNTERS_STREAM = f"KV_{s.USAGE_COUNTERS_BUCKET}"

# What a JetStream client asks before it uses a stream it names by subject (js.subscribe
# without a stream name looks the stream up: the usage stream's tail in the CLI).
JS_COMMON = ("$JS.API.STREAM.NAMES",)
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
    account: str = MAIN_ACCOUNT

    def summary(self) -> str:
        """The role's row for the documentation (docs/security.md): its subjects as they are,
        and its JetStream subjects by stream, named after the bundles below that they make up
        (`reads`, `owns`, `pulls`; whatever no bundle covers is listed as it is)."""
        if self.admin:
            return f"| `{self.name}` | {self.account} | {self.who} | everything | everything | no |"
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
            described.append(f"`{stream}`: {' + '.join(widest)}")
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
                f"{s.USAGE_EVENTS_PREFIX}.*.batch",
                s.USAGE_QUERY,
                s.EDGE_PRESENCE_SUBJECTS,  # it is alive (fail-open limits: one share each)
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.DASHBOARD_SESSIONS_BUCKET),
            ),
            subscribe=(s.EDGE_PRESENCE_SUBJECTS,),  # how many edges are
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
                *owns(s.USAGE_STREAM),
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.USAGE_COUNTERS_BUCKET),
                *bucket(s.USAGE_LEASES_BUCKET),
            ),
            subscribe=(f"{s.USAGE_DECIDE_PREFIX}.*", f"{s.USAGE_SETTLE_PREFIX}.*", s.USAGE_QUERY),
            responds=True,
        ),
        Role(
            "auditor",
            "an operator's read-only CLI: `keys show`, `events replay`, `events verify`, usage",
            publish=(
                s.USAGE_QUERY,
                s.KEYS_READ_COMMANDS,
                *JS_COMMON,
                *reads(KEY_EVENTS_STREAM),
                *reads(CHECKPOINTS_STREAM),
                *reads(s.USAGE_STREAM),
            ),
        ),
        Role(
            "analytics",
            "an analytics consumer: reads the usage stream, nothing else",
            publish=(*JS_COMMON, *reads(s.USAGE_STREAM), *pulls(s.USAGE_STREAM)),
        ),
        Role("admin", "an operator's CLI with every power, deleting streams included", admin=True),
        Role(
            "keylog-admin",
            "an operator repairing the key event log itself (the mirrors' admin is `admin`)",
            admin=True,
            account=KEYLOG_ACCOUNT,
        ),
    )
}
