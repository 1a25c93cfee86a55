"""Who may do what on the bus: one NATS user per role, each with the least it needs, and one
NATS account per writer of stores (aitbc_infra.bus_stores: the accounts, the stores they hold,
and the JetStream API subjects of each power over a stream).

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

No role but an admin may change a stream's configuration (STREAM.UPDATE): whoever can would
make its own stream capture other subjects (`_INBOX.>`: every reply) or republish into others
(verified against nats-server 2.15). A service may create its own buckets while they do not
exist yet (`owns`); once they do, the server refuses a create with another configuration.
The streams others mirror are made by the admins when the bus is provisioned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aitbc_contracts import subjects as s
from aitbc_infra.bus_stores import (
    ADMIN_ACCOUNT,
    BUNDLES,
    CHECKPOINTS_STREAM,
    EDGE_ACCOUNT,
    KEY_EVENTS_STREAM,
    KEYLOG_ACCOUNT,
    KEYS_ACCOUNT,
    READ_ACCOUNT,
    STORES,
    STREAM_INFO,
    USAGE_ACCOUNT,
    bucket,
    pulls,
    reads,
    writes,
)


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
