"""The signed checkpoints, as `aitbc events verify` checks them: each one's signature under a
trusted public key, and the chain hash it signed against the chain recomputed from the event
store and from the stream (aitbc_contracts.chain).

The chains alone show an event altered, removed or inserted; they cannot show a consistent
rewrite, where every hash after the altered event was recomputed in the store and the stream
alike. A checkpoint can: its signed hash at its position no longer matches. A checkpoint whose
signature does not verify vouches for nothing, and is named as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aitbc_contracts.chain import Verifier
from aitbc_contracts.checkpoints import EVERY_EVENTS, Checkpoint
from aitbc_contracts.subjects import KEY_EVENTS_STREAM
from aitbc_runtime.checkpoint_keys import TrustedKey, read_checkpoint

WITNESSES = ("store", "stream")


@dataclass(frozen=True)
class Held:
    """A checkpoint as one witness holds it: its number (from the table or the subject) and
    its bytes."""

    witness: str  # "store" | "stream"
    number: int | None
    data: bytes


@dataclass(frozen=True)
class Problem:
    problem: str  # "forged" | "unreadable" | "rewritten" | "removed" | "differ"
    number: int | None
    position: int | None
    witness: str  # where it was found: "store", "stream" or "both"
    detail: str


@dataclass
class Audit:
    checkpoints: int = 0  # distinct checkpoint numbers found
    held: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WITNESSES, 0))
    verified: int = 0  # signed by a trusted key (0 when no key was given)
    covered: int = 0  # the last position a checkpoint covers (a verified one, given keys)
    # Per witness, the last position a verified checkpoint confirms there.
    confirmed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WITNESSES, 0))
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def audit(
    held: Iterable[Held],
    keys: Sequence[TrustedKey],
    logs: Mapping[str, Verifier],
    every_events: int = EVERY_EVENTS,
) -> Audit:
    """Check every checkpoint held against `keys` and the chains `logs` ("store", "stream");
    more than twice `every_events` events after the last checkpoint is a warning."""
    result = Audit()
    versions: dict[int | None, dict[bytes, list[str]]] = {}
    for one in held:
        result.held[one.witness] += 1
        versions.setdefault(one.number, {}).setdefault(one.data, []).append(one.witness)
    result.checkpoints = len([n for n in versions if n is not None])
    for number in sorted(versions, key=lambda n: -1 if n is None else n):
        if len(versions[number]) > 1:
            result.problems.append(
                Problem("differ", number, None, "both", "the store and the stream differ on it")
            )
        for data, witnesses in versions[number].items():
            where = "both" if len(witnesses) > 1 else witnesses[0]
            _check(result, number, read_checkpoint(data), where, keys, logs)
    _warn(result, versions, keys, logs)
    events = max((log.position for log in logs.values()), default=0)
    if result.covered and events - result.covered > 2 * every_events:
        result.warnings.append(
            f"{events - result.covered} events after the last checkpoint (position "
            f"{result.covered}), more than twice the cadence (every {every_events}): is the "
            "keys service signing?"
        )
    return result


def _check(
    result: Audit,
    number: int | None,
    checkpoint: Checkpoint | str,
    where: str,
    keys: Sequence[TrustedKey],
    logs: Mapping[str, Verifier],
) -> None:
    if isinstance(checkpoint, str):
        result.problems.append(Problem("unreadable", number, None, where, checkpoint))
        return
    if checkpoint.number != number or checkpoint.log != KEY_EVENTS_STREAM:
        detail = f"it is checkpoint {checkpoint.number} of {checkpoint.log}, held as {number}"
        result.problems.append(Problem("forged", number, checkpoint.position, where, detail))
        return
    if not keys:
        result.covered = max(result.covered, checkpoint.position)
        return
    key = next((k for k in keys if k.key_id == checkpoint.key_id), None)
    reason = (
        key.check(checkpoint)
        if key is not None
        else f"signed by a key that is not trusted ({checkpoint.key_id[:12]}...)"
    )
    if reason is not None:
        result.problems.append(Problem("forged", number, checkpoint.position, where, reason))
        return
    result.verified += 1
    result.covered = max(result.covered, checkpoint.position)
    for name, log in logs.items():
        problem = _against(checkpoint, name, log, result.confirmed[name])
        if problem is not None:
            result.problems.append(problem)
        elif checkpoint.position in log.hashes:
            result.confirmed[name] = max(result.confirmed[name], checkpoint.position)


def _against(checkpoint: Checkpoint, name: str, log: Verifier, confirmed: int) -> Problem | None:
    """Whether the chain of witness `name` has the checkpoint's hash at its position (an
    earlier checkpoint confirmed it up to position `confirmed`)."""
    position = checkpoint.position
    ours = log.hashes.get(position)
    if ours == checkpoint.chain_hash:
        return None
    if ours is None:
        if name == "stream" and position > log.position and not log.truncated:
            return None  # the relay has not published so far yet
        detail = f"the {name} lacks position {position}, which the checkpoint covers"
        return Problem("removed", checkpoint.number, position, name, detail)
    detail = (
        f"it signed chain hash {checkpoint.chain_hash[:16]}, the {name}'s chain has "
        f"{ours[:16]} there: positions {confirmed + 1}..{position} were rewritten (an event "
        "altered, removed or inserted, and the hashes after it recomputed)"
    )
    return Problem("rewritten", checkpoint.number, position, name, detail)


def _warn(
    result: Audit,
    versions: Mapping[int | None, Mapping[bytes, list[str]]],
    keys: Sequence[TrustedKey],
    logs: Mapping[str, Verifier],
) -> None:
    numbers = sorted(n for n in versions if n is not None)
    events = max((log.position for log in logs.values()), default=0)
    if not keys and numbers:
        result.warnings.append(
            "the checkpoints were not verified: no trusted public key "
            "(--checkpoint-key or KEYS_CHECKPOINT_PUBLIC_KEY)"
        )
    if not numbers and events:
        result.warnings.append(f"no checkpoint covers the log's {events} events")
    for witness in WITNESSES:
        lacks = [n for n in numbers if witness not in _witnesses(versions[n])]
        if lacks and numbers:
            result.warnings.append(f"the {witness} lacks checkpoint(s) {_ranges(lacks)}")
    gaps = [n for n in range(1, numbers[-1]) if n not in versions] if numbers else []
    if gaps:
        result.warnings.append(f"checkpoint(s) {_ranges(gaps)} are missing from both")


def _witnesses(versions: Mapping[bytes, list[str]]) -> set[str]:
    return {witness for witnesses in versions.values() for witness in witnesses}


def _ranges(numbers: Sequence[int]) -> str:
    """1, 2, 3, 5 -> "1..3, 5"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


def report(result: Audit) -> list[str]:
    """The audit, for people: a summary line, then each problem and warning."""
    if not result.checkpoints:
        summary = "none"
    else:
        held = ", ".join(f"{w} {result.held[w]}" for w in WITNESSES)
        summary = f"{result.checkpoints} ({held}), {result.verified} signed by a trusted key"
        confirmed = ", ".join(f"{result.confirmed[w]} in the {w}" for w in WITNESSES)
        summary += f"; they confirm the log up to position {confirmed}" if result.verified else ""
    out = [summary]
    # After a rewrite every later checkpoint disagrees too: the first of each kind says it.
    seen: dict[tuple[str, str], int] = {}
    for p in result.problems:
        kind = (p.problem, p.witness)
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] == 1:
            at = "" if p.position is None else f", position {p.position}"
            out.append(
                f"  {p.problem.upper()} at checkpoint {p.number}{at} ({p.witness}): {p.detail}"
            )
    for (problem, witness), count in seen.items():
        if count > 1:
            out.append(f"  ... and {count - 1} later checkpoint(s) {problem} ({witness})")
    out.extend(f"  warning: {warning}" for warning in result.warnings)
    return out
