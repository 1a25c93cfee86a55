"""The keys service's metrics (prometheus_client), served on the operators' port
(KEYS_METRICS_PORT) by aitbc_runtime.metrics. Labels take a few known values each: a command's
name and outcome, never a key, a hash, an account or an id. Each command's series are bound
once here (`.labels()` looks a child up under a lock). The key events its facts index refuses
are counted by the reader every process shares (aitbc_runtime.key_events.REFUSED)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from aitbc_contracts import messages as m
from aitbc_runtime.metrics import SECONDS

COMMANDS = Counter(
    "aitbc_keys_commands_total",
    "Commands answered, by command (its name on the wire; `malformed`: not a command) and "
    "outcome (ok; rejected: refused, as the command's sender was told; error: the database "
    "away or a failure of ours)",
    ["command", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "aitbc_keys_command_duration_seconds",
    "From a command's arrival to its answer, by command",
    ["command"],
    buckets=SECONDS,
)
CHECK_BATCH_SIZE = Histogram(
    "aitbc_keys_check_batch_size",
    "Key hashes in one key check (an edge's cache misses of one burst)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
RELAY_LAG = Gauge(
    "aitbc_keys_relay_lag_events",
    "Events committed to the event store and not yet published on the key event stream, as "
    "the process running the outbox relay last saw (0 in the others)",
)
RELAY_PUBLISH_FAILURES = Counter(
    "aitbc_keys_relay_publish_failures_total",
    "Attempts of the outbox relay to publish that failed (the stream refused or did not "
    "answer, NATS or the database away); it tries again",
)


@dataclass(frozen=True, slots=True)
class CommandSeries:
    """One command's series, bound once."""

    ok: Counter
    rejected: Counter
    error: Counter
    seconds: Histogram


def _series(command: str) -> CommandSeries:
    return CommandSeries(
        COMMANDS.labels(command, "ok"),
        COMMANDS.labels(command, "rejected"),
        COMMANDS.labels(command, "error"),
        COMMAND_SECONDS.labels(command),
    )


BY_COMMAND: dict[type[m.Command], CommandSeries] = {
    kind: _series(str(kind.__struct_config__.tag)) for kind in get_args(m.AnyCommand)
}
MALFORMED = COMMANDS.labels("malformed", "rejected")
