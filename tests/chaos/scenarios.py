"""Fault scenarios: each starts a system of its own, runs client load, injects one fault for
real (SIGKILL, a stopped nats-server, a locked database) and reports what the clients saw and
what the system recorded. `python -m tests.chaos` prints them as a table; tests/chaos/
test_chaos.py asserts their targets. The scenarios are in tests/chaos/processes.py,
tests/chaos/storage.py and tests/chaos/upstream.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.chaos.processes import keys_kill, nats_restart, usage_kill
from tests.chaos.report import Result
from tests.chaos.storage import keys_kill_mid_command, postgres_down, sqlite_locked
from tests.chaos.upstream import upstream_faults
from tests.cluster.faults import FAULTS, on_a_cluster_of_its_own

SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "nats-restart": nats_restart,
    "keys-kill": keys_kill,
    "usage-kill": usage_kill,
    "keys-kill-mid-command": keys_kill_mid_command,
    "sqlite-locked": sqlite_locked,
    "postgres-down": postgres_down,
    "upstream": upstream_faults,
}

# On a 3-node NATS cluster with two of each service (`just cluster`), each on a cluster of its
# own. Under pytest they run in tests/cluster/test_faults.py, on one cluster.
CLUSTER_SCENARIOS: dict[str, Callable[[Path], Result]] = {
    name: on_a_cluster_of_its_own(fault) for name, fault in FAULTS.items()
}
