"""What the accounts of the bus share with each other, derived from the policy table
(aitbc_infra.bus_roles): the `exports` and `imports` of each account's configuration.

Three kinds of links, and nothing else crosses an account's border:

- **services**: a role that publishes a subject a role of another account subscribes to (a
  request to the keys or the usage service, a settlement) imports it from there; the answer
  comes back through the import. The responder sees an answer subject the server made
  (`_R_.`), never the one the requester named, which stays in the requester's account.
- **mirrors**: a role that reads a stream of another account reads a mirror of the same name in
  its own (`mirrors`), which follows its source through a durable consumer there, one per
  mirror (`mirror_consumer`, made by provisioning: aitbc_infra.bus_mirrors), and what the
  source's account shares for it: the reset of that one consumer (imported as
  `$JS.<SOURCE>.API.CONSUMER.RESET.<stream>.<consumer>`), the flow control answers to it
  (`$JS.FC.<stream>.>`), and its deliveries, under `aitbc.<source>.deliver.<account>`
  (`mirror_delivery`), which no other account receives. No role may publish to any of these
  or subscribe to the deliveries.
- **an admin's**: the ADMIN account imports, from each account its admin `manages`, what the
  roles there subscribe to, the subjects of the stores there, and the whole JetStream API
  (`$JS.<ACCOUNT>.API.>`), so that an operator does there what the roles may and more
  (create the mirrors, delete, purge). The admin is alone in its account: nobody else can make
  the server send anything on these.

An account imports a store's subjects only where each of its users may write that store
(tests/unit/test_bus_roles.py keeps it so): anything published in an account, by a role or by
the server for it (a PubAck, a JetStream API answer, a responder's answer), on a subject the
account imports, goes through (verified against nats-server 2.15).
"""

from __future__ import annotations

from dataclasses import dataclass

from aitbc_infra.bus_roles import ROLES, Role
from aitbc_infra.bus_stores import ACCOUNTS, STORES, STREAM_INFO

ALL_OF_JS = "$JS.API.>"


def api_prefix(account: str) -> str:
    """Where an account's JetStream API is imported (`$JS.KEYLOG.API`, `$JS.EDGE.API`...)."""
    return f"$JS.{account}.API"


def deliver_prefix(account: str) -> str:
    """Where an account delivers its streams' messages to the mirrors of other accounts."""
    return f"aitbc.{account.lower()}.deliver"


def covers(pattern: str, subject: str) -> bool:
    """Whether the NATS subject pattern `pattern` (`*`, `>`) matches every subject `subject`
    (itself a pattern) may stand for."""
    parts, wanted = pattern.split("."), subject.split(".")
    for index, part in enumerate(parts):
        if part == ">":
            return len(wanted) > index
        if index >= len(wanted) or wanted[index] == ">":
            return False
        if part not in ("*", wanted[index]):
            return False
    return len(parts) == len(wanted)


def members(account: str) -> list[Role]:
    return [role for role in ROLES.values() if role.account == account]


def read_streams(role: Role) -> list[str]:
    return [x.removeprefix(STREAM_INFO) for x in role.publish if x.startswith(STREAM_INFO)]


def mirrors(account: str) -> tuple[str, ...]:
    """The streams of other accounts that roles of `account` read: mirrored there, under the
    same names (in STORES' order)."""
    read = {stream for role in members(account) for stream in read_streams(role)}
    return tuple(x.stream for x in STORES.values() if x.stream in read and x.account != account)


def managed_by(account: str) -> set[str]:
    return {managed for role in members(account) for managed in role.manages}


@dataclass(frozen=True, order=True)
class Link:
    """`exporter` shares `subject` with `importer`, which may name it `to` instead."""

    kind: str  # "service" or "stream"
    exporter: str
    subject: str
    importer: str
    to: str = ""


def _asked(role: Role) -> list[Link]:
    """The services of other accounts the role asks, and the stores there it writes."""
    found = []
    for subject in role.publish:
        if subject.startswith("$"):
            continue
        for other in ROLES.values():
            if other.account != role.account and any(covers(x, subject) for x in other.subscribe):
                found.append(Link("service", other.account, subject, role.account))
        for store in STORES.values():
            if store.account != role.account and covers(store.subjects, subject):
                found.append(Link("service", store.account, subject, role.account))
    return found


def _managed(admin: Role) -> list[Link]:
    found = []
    for account in admin.manages:
        subjects = [x for role in members(account) for x in role.subscribe]
        subjects += [x.subjects for x in STORES.values() if x.account == account]
        found += [Link("service", account, x, admin.account) for x in subjects]
        to = f"{api_prefix(account)}.>"
        found.append(Link("service", account, ALL_OF_JS, admin.account, to))
    return found


def mirror_consumer(account: str) -> str:
    """The durable consumer, on a stream of another account, that `account`'s mirror follows."""
    return f"MIRROR_{account}"


def mirror_delivery(account: str, stream: str) -> str:
    """Where the source's account delivers `stream` to `account`'s mirror of it."""
    return f"{deliver_prefix(STORES[stream].account)}.{account.lower()}.{stream}"


def _mirrored(account: str) -> list[Link]:
    found = []
    for stream in mirrors(account):
        source = STORES[stream].account
        reset = f"$JS.API.CONSUMER.RESET.{stream}.{mirror_consumer(account)}"
        if source not in managed_by(account):  # else the whole API is imported already
            to = api_prefix(source) + reset.removeprefix("$JS.API")
            found.append(Link("service", source, reset, account, to))
        found.append(Link("service", source, f"$JS.FC.{stream}.>", account))
        own = mirror_delivery(account, stream).rsplit(".", 1)[0]
        found.append(Link("stream", source, f"{own}.>", account))
    return found


def links() -> list[Link]:
    """Every link between two accounts, once each, in a stable order."""
    found: set[Link] = set()
    for account in ACCOUNTS:
        found.update(_mirrored(account))
        for role in members(account):
            found.update(_managed(role) if role.admin else _asked(role))
    return sorted(found)


def account_links(account: str) -> str:
    """The `exports` and `imports` lines of an account's configuration."""
    every = links()
    exports: dict[tuple[str, str], list[str]] = {}
    for link in every:
        if link.exporter == account:
            exports.setdefault((link.kind, link.subject), []).append(link.importer)
    lines = {
        "exports": [
            f'{{ {kind}: "{subject}", accounts: [{", ".join(sorted(importers))}] }}'
            for (kind, subject), importers in exports.items()
        ],
        "imports": [_import(link) for link in every if link.importer == account],
    }
    text = ""
    for name, entries in lines.items():
        if entries:
            body = "".join(f"      {entry}\n" for entry in entries)
            text += f"    {name} = [\n{body}    ]\n"
    return text


def _import(link: Link) -> str:
    source = f'{{ account: {link.exporter}, subject: "{link.subject}" }}'
    to = f', to: "{link.to}"' if link.to else ""
    return f"{{ {link.kind}: {source}{to} }}"
