"""The cluster's faults, one at a time under load through both edges (tests/cluster/traffic.py):
a usage process killed, the NATS node leading the key log killed and restarted, an edge
killed, a keys process killed. Each runs on a whole cluster, leaves it whole again, and says
what it found as a row of `just chaos` (tests.chaos.report.Result): what the clients got,
usage and key events lost or twice, the seconds until every caller was decided exactly
again, takeover and revocation times as notes, and every broken promise
(tests/cluster/checks.py). tests/cluster/test_faults.py runs them on one cluster in CI;
`just chaos` each on a cluster of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aitbc_contracts.subjects import partition_of
from aitbc_infra.bus_stores import EDGE_ACCOUNT
from tests.chaos.load import wait_for
from tests.chaos.report import Result
from tests.cluster.checks import check_all, usage_recorded
from tests.cluster.harness import RunningCluster
from tests.cluster.traffic import Traffic, big_account, revoked_across

Fault = Callable[[RunningCluster, Traffic], Result]


def usage_process_killed(cluster: RunningCluster, traffic: Traffic) -> Result:
    result = Result("cluster: usage process killed")
    holders = cluster.settled_holders()
    victim = holders[partition_of(traffic.free[0][0].account_id)]
    assert victim in ("usage-1", "usage-2"), holders
    survivor = "usage-2" if victim == "usage-1" else "usage-1"
    steady = {k for a, k in traffic.free if holders[partition_of(a.account_id)] == survivor}
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill(victim)
        took = wait_for(lambda: cluster.holders() == dict.fromkeys(range(16), survivor), 60)
        assert took is not None, f"{survivor} never took {victim}'s partitions"
        taken = time.monotonic()
        result.notes.append(f"usage takeover {taken - fault:.2f} s after the kill")
        revoked = revoked_across(cluster, traffic.big, 0, 1)
        result.notes.append(f"revocation across edges {revoked:.2f} s")
        result.recovery_seconds = traffic.until_exact_after(taken) + (taken - fault)
        restarted = time.monotonic()
        cluster.restore()
        cluster.until_whole()
        traffic.until_exact_after(time.monotonic())  # after the handover back, too
    check_all(result, traffic, fault, taken, steady, until=restarted)
    refused = [a for a in traffic.answers() if a.started >= restarted and a.status == 503]
    # A handover costs a request milliseconds, never the fail policy: the restarted process
    # takes its partitions back at once (the killed one's key it found places nothing).
    result.expect(not refused, f"{len(refused)} refused while {victim} took its share back")
    return result


# An edge whose mirror of the key log stopped following it asks the keys service again (about
# a second a key) once the mirror was silent for aitbc_runtime.follower's SILENT (5 s).
REVOKED_WITHIN = 15.0
# A mirror follows a durable consumer on its source (aitbc_infra.bus_mirrors), which it only
# asks to be reset: it follows again once the source and the consumer are led again, where
# one that made its own consumer waited ~45 s for a source with no leader to answer.
MIRROR_BACK_WITHIN = 20.0


def key_log_leader_killed(cluster: RunningCluster, traffic: Traffic) -> Result:
    result = Result("cluster: key log leader node killed")
    with traffic.running():
        traffic.until_admitted()
        leader = cluster.leader()
        # The edges' mirror of the key log led by the same node: it stops with it, and holds
        # nothing new until it follows its consumer again, the edges' connections fine.
        cluster.lead_mirror(EDGE_ACCOUNT, leader)
        fault = time.monotonic()
        cluster.kill(leader)
        elected = wait_for(lambda: cluster.leader() not in ("", leader), 60)
        assert elected is not None, "the key log has no new leader"
        result.notes.append(f"{leader} killed: a new key log leader after {elected:.2f} s")
        # Whether it stops depends on which of the two is led again first (nats-server).
        silent = wait_for(lambda: not cluster.mirror_follows(EDGE_ACCOUNT), 15, every=0.5)
        revoked = revoked_across(cluster, traffic.big, 1, 0)
        stopped = "stopped" if silent is not None else "kept"
        after = time.monotonic() - revoked - fault
        result.notes.append(
            f"revocation across edges {revoked:.2f} s (their mirror {stopped}; revoked "
            f"{after:.1f} s after the kill)"
        )
        result.expect(
            revoked <= REVOKED_WITHIN,
            f"a key revoked on one edge was admitted by the other for {revoked:.1f} s",
        )
        if silent is not None:  # (measured after the revocation, which it may take to)
            back = wait_for(lambda: cluster.mirror_follows(EDGE_ACCOUNT), 60, every=0.5)
            followed = time.monotonic() - fault
            result.notes.append(f"the edges' mirror followed again {followed:.1f} s after")
            result.expect(
                back is not None and followed <= MIRROR_BACK_WITHIN,
                f"the edges' mirror of the key log followed again {followed:.1f} s after the kill",
            )
        recovered = time.monotonic()
        result.recovery_seconds = traffic.until_exact_after(fault)
        cluster.restore()
        back = cluster.until_whole()
        result.notes.append(f"{leader} restarted: every replica current after {back:.2f} s")
        traffic.until_exact_after(time.monotonic())
    return check_all(result, traffic, fault, recovered)


def edge_killed(cluster: RunningCluster, traffic: Traffic) -> Result:
    """The surviving edge answers everything; the killed one's clients get no answer until it
    is back. The killed edge's usage events not yet stored are in its spool, which its restart
    sends: every request it answered is counted, once."""
    result = Result("cluster: edge killed")
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill("api-2")
        alone = revoked_across(cluster, traffic.big, 0, 0)
        result.notes.append(f"revocation on the surviving edge {alone:.2f} s")
        result.recovery_seconds = traffic.until_exact_after(fault, edges=(0,))
        cluster.restore()
        result.notes.append(f"api-2 answering again {time.monotonic() - fault:.2f} s after")
        traffic.until_exact_after(time.monotonic())
    check_all(result, traffic, fault, fault, killed_edge=1)
    killed = usage_recorded(traffic, traffic.answers(1))
    result.expect(
        killed.lost == killed.duplicated == 0, f"the killed edge's usage events: {killed.detail}"
    )
    return result


def keys_process_killed(cluster: RunningCluster, traffic: Traffic) -> Result:
    result = Result("cluster: keys process killed")
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill("keys-1")
        revoked = revoked_across(cluster, traffic.big, 1, 0)
        result.notes.append(f"revocation across edges {revoked:.2f} s")
        managed = wait_for(
            lambda: all(
                any(a.status < 300 and a.started > fault for a in load.of("manage"))
                for load in traffic.loads
            ),
            60,
        )
        assert managed is not None, "no key change accepted on each edge after the kill"
        result.notes.append(f"key changes accepted on both edges {managed:.2f} s after")
        result.recovery_seconds = managed
        recovered = time.monotonic()
        cluster.restore()
        cluster.until_whole()
        traffic.until_exact_after(time.monotonic())
    return check_all(result, traffic, fault, recovered)


@contextmanager
def whole_cluster(root: Path) -> Iterator[RunningCluster]:
    running = RunningCluster(root)
    try:
        running.start()
        running.until_whole()
        yield running
    finally:
        running.stop()


def on_a_cluster_of_its_own(fault: Fault) -> Callable[[Path], Result]:
    """`fault` as a `just chaos` scenario: on a cluster started for it in `root`."""

    def scenario(root: Path) -> Result:
        with whole_cluster(root / fault.__name__) as cluster:
            traffic = Traffic.of(cluster, big_account(cluster))
            return fault(cluster, traffic)

    return scenario


FAULTS: dict[str, Fault] = {
    "cluster-usage-kill": usage_process_killed,
    "cluster-leader-kill": key_log_leader_killed,
    "cluster-edge-kill": edge_killed,
    "cluster-keys-kill": keys_process_killed,
}
