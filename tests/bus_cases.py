"""The cases of test_bus_permissions.py: every (role, subject) the permission table
(aitbc_infra.bus_roles) must refuse a publish or a subscription on, and what each role does all
the time and must be let do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aitbc_contracts import subjects as s
from aitbc_infra.bus_accounts import mirror_consumer, mirror_delivery, mirrors
from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_stores import (
    ACCOUNTS,
    CHECKPOINTS_STREAM,
    KEY_EVENTS_STREAM,
    STORES,
)

FORGED_EVENT = s.key_event_subject("acc_0000000000000000", "key_0000000000000000")
PRESENCE = s.edge_presence_subject("edge_0000000000000000")
FORGED_CHECKPOINT = f"{s.KEY_CHECKPOINTS_PREFIX}.forged"
KEYLOG = (KEY_EVENTS_STREAM, CHECKPOINTS_STREAM)  # in KEYLOG, and mirrored where read
# What feeds each account's mirrors, and the reset of the consumers that do
DELIVERIES = tuple(mirror_delivery(a, stream) for a in ACCOUNTS for stream in mirrors(a))
RESETS = tuple(
    f"$JS.{STORES[stream].account}.API.CONSUMER.RESET.{stream}.{mirror_consumer(a)}"
    for a in ACCOUNTS
    for stream in mirrors(a)
)
CHANGES = ("DELETE", "PURGE", "MSG.DELETE", "UPDATE")
USERS = [role for role in ROLES.values() if not role.admin]  # admins may do everything


@dataclass(frozen=True)
class Case:
    role: str
    subject: str

    @property
    def id(self) -> str:
        return f"{self.role}:{self.subject}"


def refused_publishes() -> Iterator[Case]:
    """Every (role, subject) the table must refuse a publish on."""
    for role in USERS:
        if role.name != "keys-writer":
            yield Case(role.name, FORGED_EVENT)  # forge a key event
            yield Case(role.name, FORGED_CHECKPOINT)
        yield Case(role.name, s.KEYS_OPERATOR_COMMANDS)  # an operator's powers
        if role.name != "edge":
            yield Case(role.name, s.KEYS_OWNER_COMMANDS)  # an account owner's, via the edge
        for stream in STORES:  # nobody but an admin removes or changes a stream's messages
            for change in CHANGES:
                if not (change == "UPDATE" and role.name == "keys-writer" and stream in KEYLOG):
                    yield Case(role.name, f"$JS.API.STREAM.{change}.{stream}")
        yield Case(role.name, "$JS.API.STREAM.CREATE.CAPTURE")  # a stream of one's choosing
        yield Case(role.name, f"$JS.API.STREAM.CREATE.{s.USAGE_STREAM}")  # the bus makes it
        # what feeds the mirrors: beside each delivery subject, where no consumer's heartbeat
        # comes to the admin's own witness
        yield from (Case(role.name, f"{x}.x") for x in DELIVERIES)
        yield from (Case(role.name, x) for x in RESETS)
        yield Case(role.name, f"$JS.KEYLOG.API.CONSUMER.CREATE.{KEY_EVENTS_STREAM}")
        yield Case(role.name, f"$JS.USAGE.API.CONSUMER.CREATE.{s.USAGE_STREAM}")
        yield Case(role.name, "$JS.USAGE.API.STREAM.INFO.x")  # the admin's import only
    yield Case("edge", f"$KV.{s.USAGE_COUNTERS_BUCKET}.p1")  # another's bucket
    yield Case("usage", f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.session")
    for role in ("keys", "auditor", "analytics"):  # only the edge sends these
        yield Case(role, s.usage_batch_subject(1))
        yield Case(role, s.usage_decide_subject(1))
        yield Case(role, s.usage_settle_subject(1))
    for subject in (s.KEYS_CHECK, s.KEYS_READ_COMMANDS, s.USAGE_QUERY):
        yield Case("analytics", subject)  # it reads the usage stream, nothing else
    # Only an edge says it is alive: a false presence would shrink every edge's fail-open share.
    yield from (Case(user.name, PRESENCE) for user in USERS if user.name != "edge")
    yield Case("auditor", f"$KV.{s.DASHBOARD_SESSIONS_BUCKET}.session")  # it changes nothing
    yield Case("keys", s.KEYS_COMMITTED)  # only the writers (in KEYLOG) tell each other
    yield Case("auditor", f"$JS.API.STREAM.CREATE.{s.USAGE_STREAM}")


def refused_subscriptions() -> Iterator[Case]:
    """Every (role, subject) the table must refuse a subscription to."""
    for role in ("edge", "usage", "auditor", "analytics"):
        yield Case(role, s.KEYS_CHECK)  # answer another service's requests
        yield Case(role, s.KEYS_OWNER_COMMANDS)
    for role in ("edge", "keys", "auditor", "analytics"):
        yield Case(role, s.usage_decide_subject(1))
        yield Case(role, s.USAGE_QUERY)
    yield Case("keys", s.KEYS_COMMITTED)
    for role in USERS:
        yield Case(role.name, FORGED_EVENT)  # take events some other way than the stream
        if role.name != "edge":
            yield Case(role.name, s.EDGE_PRESENCE_SUBJECTS)  # which edges run: edges' business
        yield Case(role.name, "_INBOX.>")  # every reply
        yield Case(role.name, "_R_.>")  # the answers to other accounts' requests
        yield from (Case(role.name, x) for x in DELIVERIES)
        yield from (
            Case(role.name, f"{x}.>") for x in (s.KEYLOG_DELIVER_PREFIX, s.USAGE_DELIVER_PREFIX)
        )
        for other in USERS:  # read another's replies
            if other.account == role.account and other.name != role.name:
                yield Case(role.name, f"_INBOX.{other.name}.>")


# Things each role does all the time: the same checks must see them through (not vacuous).
ALLOWED = [
    Case("edge", s.KEYS_CHECK),
    Case("edge", s.KEYS_OWNER_COMMANDS),
    Case("edge", PRESENCE),
    Case("usage", s.KEYS_READ_COMMANDS),
    Case("keys-writer", FORGED_EVENT),
    Case("keys-writer", s.KEYS_COMMITTED),
    Case("admin", s.KEYS_OPERATOR_COMMANDS),
]
