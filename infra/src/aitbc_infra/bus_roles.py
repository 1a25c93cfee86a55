"""Who may do what on the bus: one NATS user per role, each with the least it needs.

This table is the whole policy. `aitbc_infra.bus_config` turns it into the nats-server
configuration that `just up`, the tests and `infra/nats/` run; docs/security.md shows it as
a table (tests/unit/test_bus_roles.py keeps the two the same).

What is not listed is refused by the server. Besides its row, every role may subscribe to its
own inbox prefix only (`_INBOX.<its public key's first 16 characters>`, aitbc_runtime.bus_access),
so no role reads another's replies. Responders get `allow_responses`: they may publish to the
reply subject of a request they received, once; they also check that it is an inbox
(aitbc_runtime.bus.answerable), because the server would let such an answer go anywhere the
requester names. Nobody but `admin` may delete or purge a stream or a bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc_contracts import subjects as s

KEY_EVENTS_STREAM = s.KEY_EVENTS_STREAM
CHECKPOINTS_STREAM = s.KEY_CHECKPOINTS_STREAM
SESSIONS_STREAM = f"KV_{s.DASHBOARD_SESSIONS_BUCKET}"
COUNTERS_STREAM = f"KV_{s.USAGE_COUNTERS_BUCKET}"

# What the JetStream client asks the server for every stream it uses at all.
JS_COMMON = ("$JS.API.INFO", "$JS.API.STREAM.NAMES")
DESTRUCTIVE = ("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>")


def reads(stream: str) -> tuple[str, ...]:
    """Follow a stream with consumers of its own (ephemeral, ordered or durable): create and
    delete them, ask for info, answer flow control, ack, fetch, and get single messages."""
    return (
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def owns(stream: str) -> tuple[str, ...]:
    """Create a stream and keep its configuration up to date, and read it (no delete, purge)."""
    return (f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.UPDATE.{stream}", *reads(stream))


def bucket(name: str) -> tuple[str, ...]:
    """Own a KV bucket: its stream, and put, get and delete its keys."""
    return (*owns(f"KV_{name}"), f"$KV.{name}.>")


@dataclass(frozen=True)
class Role:
    name: str
    who: str  # for people: which process connects as this role
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    responds: bool = False  # allow_responses: it answers requests
    admin: bool = False  # everything, deleting and purging included

    def summary(self) -> str:
        """The role's row for the documentation."""
        return (
            f"| `{self.name}` | {self.who} | {', '.join(f'`{x}`' for x in self.publish)} | "
            f"{', '.join(f'`{x}`' for x in self.subscribe)} | {'yes' if self.responds else 'no'} |"
        )


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
                *JS_COMMON,
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.DASHBOARD_SESSIONS_BUCKET),
            ),
        ),
        Role(
            "keys",
            "the keys service (aitbc-keys): answers checks and commands",
            publish=(s.KEYS_CHECK, *JS_COMMON, *reads(KEY_EVENTS_STREAM)),
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
            "the keys service's event publisher: the only writer of the key event stream",
            publish=(
                f"{s.KEY_EVENTS_PREFIX}.>",
                f"{s.KEY_CHECKPOINTS_PREFIX}.>",
                *JS_COMMON,
                *owns(KEY_EVENTS_STREAM),
                *owns(CHECKPOINTS_STREAM),
            ),
        ),
        Role(
            "usage",
            "the usage service (aitbc-usage)",
            publish=(
                s.USAGE_QUERY,
                f"{s.USAGE_DECIDE_PREFIX}.*",  # it asks itself before it says it is ready
                s.KEYS_READ_COMMANDS,
                *JS_COMMON,
                *owns(s.USAGE_STREAM),
                *reads(KEY_EVENTS_STREAM),
                *bucket(s.USAGE_COUNTERS_BUCKET),
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
            publish=(*JS_COMMON, *reads(s.USAGE_STREAM)),
        ),
        Role("admin", "an operator's CLI with every power, deleting streams included", admin=True),
    )
}
