"""Who may send which keys command: the one place for the rule.

A sender's power is the subject its command arrived on (`SUBJECTS`), and only the roles the
NATS server lets publish there have it (aitbc_infra.bus_roles): never a field the sender fills
in. A command's `actor` is who acted, recorded in its events for the audit trail, and grants
nothing.

- `read`: look-ups of any account, no change (the usage service, an auditor's CLI);
- `owner`: the look-ups and changes an account's owner may make, each naming that account
  (the edge, for a caller it authenticated); never an operator's command;
- `operator`: everything (the admin CLI).

The keys service refuses what the power does not cover (`refusal`); senders pick the subject
of the power they act with (`operator_subject` for an operator's tools).
"""

from __future__ import annotations

import enum

from aitbc_contracts import messages as m
from aitbc_contracts import subjects as s


class Power(enum.Enum):
    READ = "read"
    OWNER = "owner"
    OPERATOR = "operator"


SUBJECTS: dict[Power, str] = {
    Power.READ: s.KEYS_READ_COMMANDS,
    Power.OWNER: s.KEYS_OWNER_COMMANDS,
    Power.OPERATOR: s.KEYS_OPERATOR_COMMANDS,
}
POWER_OF_SUBJECT: dict[str, Power] = {subject: power for power, subject in SUBJECTS.items()}

# What each command needs at least: every command of the contract is here (a unit test checks).
NEEDS: dict[type[m.Command], Power] = {
    m.GetAccount: Power.READ,
    m.ListKeys: Power.READ,
    m.GetKey: Power.READ,
    m.ListKeyEvents: Power.READ,
    m.CreateAccount: Power.OWNER,  # sign-up, on the free plan
    m.CreateKey: Power.OWNER,
    m.RevokeKey: Power.OWNER,  # an owner's master key excepted (aitbc_keys.domain)
    m.RegenerateKey: Power.OWNER,
    m.RestrictKey: Power.OWNER,
    m.SetMasterKeyDataPlane: Power.OWNER,
    m.SetPlan: Power.OPERATOR,
    m.RebuildProjections: Power.OPERATOR,
    m.ReplaceMasterKey: Power.OPERATOR,  # account recovery: a lost or revoked master key
}

# The powers each power includes: an owner may look up its own account, an operator anything.
_INCLUDES: dict[Power, frozenset[Power]] = {
    Power.READ: frozenset({Power.READ}),
    Power.OWNER: frozenset({Power.READ, Power.OWNER}),
    Power.OPERATOR: frozenset(Power),
}

SIGN_UP_PLAN = "free"  # an account an owner opens; any other plan is an operator's to give


def command_name(command: m.Command) -> str:
    """The command's tag on the wire (`set_plan`), as people and logs know it."""
    return str(type(command).__struct_config__.tag)


def refusal(command: m.Command, power: Power) -> str | None:
    """Why a sender with `power` may not have `command` carried out (one line that names the
    command and the subject), or None if it may."""
    name, subject = command_name(command), SUBJECTS[power]
    needed = NEEDS.get(type(command), Power.OPERATOR)
    if needed not in _INCLUDES[power]:
        if power is Power.READ:
            return f"{name} changes something: {subject} carries look-ups only"
        return f"{name} is an operator's command: it may not be sent on {subject}"
    if power is Power.OWNER:
        return _owner_refusal(command, name, subject)
    return None


def _owner_refusal(command: m.Command, name: str, subject: str) -> str | None:
    """An owner acts on its own account only, which the command names."""
    # Refused rather than ignored: the events record the actor, and "operator" in the audit
    # trail must mean an operator's command, not an owner's claim.
    if command.actor == m.OPERATOR:
        return f"actor {m.OPERATOR!r} is reserved for operators: {name} on {subject} names its own"
    if getattr(command, "account_id", "") is None:
        return f"{name} on {subject} must name the owner's account (account_id)"
    if isinstance(command, m.CreateAccount) and command.plan != SIGN_UP_PLAN:
        return f"{name} on {subject} opens a {SIGN_UP_PLAN} account: another plan is an operator's"
    return None


def may_revoke_master(power: Power) -> bool:
    """A master key is its account's way in: only an operator may revoke it (an owner who
    revoked it would lock themselves out)."""
    return power is Power.OPERATOR


def operator_subject(command: m.Command) -> str:
    """Where an operator's tool sends `command`: a look-up on the read subject, so that an
    auditor's read-only credentials suffice, anything else on the operator subject."""
    power = Power.READ if NEEDS.get(type(command)) is Power.READ else Power.OPERATOR
    return SUBJECTS[power]
