"""`just cluster` under faults, one at a time, with load through both edges (tests/cluster/
traffic.py): a usage process killed, the NATS node leading the key log killed and restarted,
an edge killed, a keys process killed. Each test puts the cluster back as it found it (the
killed process restarted, every partition held, every stream replica current); what each
asserts is in tests/cluster/checks.py. Marked `chaos`: they run after the rest, alone, so
that no other test's load makes a lease lapse. Takeover and recovery times are printed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitbc_contracts.subjects import partition_of
from tests.chaos.load import wait_for
from tests.cluster.checks import check_all, usage_recorded
from tests.cluster.harness import RunningCluster
from tests.cluster.traffic import Big, Traffic, big_account, revoked_across

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    running = RunningCluster(tmp_path_factory.mktemp("cluster"))
    try:
        running.start()
        running.until_whole()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def big(cluster: RunningCluster) -> Big:
    return big_account(cluster)


@pytest.fixture
def traffic(cluster: RunningCluster, big: Big) -> Iterator[Traffic]:
    """Fresh free accounts (a minute's count of their own), the cluster whole before and after."""
    cluster.until_whole()
    yield Traffic.of(cluster, big)
    restarted = cluster.restore()
    cluster.until_whole()
    assert restarted == [], f"left dead by the test: {restarted}"


def test_a_usage_process_killed(cluster: RunningCluster, traffic: Traffic) -> None:
    holders = cluster.holders()
    first = traffic.free[0][0].account_id
    victim = holders[partition_of(first)]
    assert victim in ("usage-1", "usage-2"), holders
    survivor = "usage-2" if victim == "usage-1" else "usage-1"
    steady = {
        key_id for a, key_id in traffic.free if holders[partition_of(a.account_id)] == survivor
    }
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill(victim)
        took = wait_for(lambda: cluster.holders() == dict.fromkeys(range(16), survivor), 60)
        assert took is not None, f"{survivor} never took {victim}'s partitions"
        taken = time.monotonic()
        print(f"\nusage takeover: {taken - fault:.2f} s after the kill")
        print(f"revocation across edges: {revoked_across(cluster, traffic.big, 0, 1):.2f} s")
        recovery = traffic.until_exact_after(taken) + (taken - fault)
        print(f"every caller decided exactly again {recovery:.2f} s after the kill")
        restarted = time.monotonic()
        cluster.restore()
        cluster.until_whole()
        traffic.until_exact_after(time.monotonic())  # after the handover back, too
    check_all(traffic, fault, taken, steady, until=restarted)
    refused = [a for a in traffic.answers() if a.started >= restarted and a.status == 503]
    # A handover costs a request milliseconds, never the fail policy: the restarted process
    # takes its partitions back at once (the killed one's key it found places nothing).
    assert not refused, f"{len(refused)} refused while {victim} took its partitions back"


def test_the_key_log_leader_node_killed_and_restarted(
    cluster: RunningCluster, traffic: Traffic
) -> None:
    with traffic.running():
        traffic.until_admitted()
        leader = cluster.leader()
        fault = time.monotonic()
        cluster.kill(leader)
        elected = wait_for(lambda: cluster.leader() not in ("", leader), 60)
        assert elected is not None, "the key log has no new leader"
        print(f"\nkey log leader {leader} killed: a new leader after {elected:.2f} s")
        print(f"revocation across edges: {revoked_across(cluster, traffic.big, 1, 0):.2f} s")
        recovered = time.monotonic()
        print(f"callers decided exactly {traffic.until_exact_after(fault):.2f} s after the kill")
        restarted = time.monotonic()
        cluster.restore()
        back = cluster.until_whole()
        print(f"{leader} restarted: every replica current after {back:.2f} s")
        print(f"restart: {restarted - fault:.1f} s after the kill")
        traffic.until_exact_after(time.monotonic())
    check_all(traffic, fault, recovered)


def test_an_edge_killed(cluster: RunningCluster, traffic: Traffic) -> None:
    """The surviving edge answers everything; the killed one's clients get no answer until it
    is back. A SIGKILLed edge loses the usage events it had not flushed yet (its buffer waits
    up to 0.1 s for a batch): never twice, but not necessarily once (printed)."""
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill("api-2")
        alone = revoked_across(cluster, traffic.big, 0, 0)
        print(f"\nrevocation on the surviving edge: {alone:.2f} s")
        traffic.until_exact_after(time.monotonic(), edges=(0,))
        cluster.restore()
        print(f"api-2 restarted, answering {time.monotonic() - fault:.2f} s after the kill")
        traffic.until_exact_after(time.monotonic())
    check_all(traffic, fault, fault, killed_edge=1)
    lost = usage_recorded(traffic, traffic.answers(1), within=3)  # the rest was already seen
    assert lost.duplicated == 0, lost.detail
    print(f"usage events of the killed edge lost: {lost.lost} ({lost.detail or 'none'})")


def test_a_keys_process_killed(cluster: RunningCluster, traffic: Traffic) -> None:
    with traffic.running():
        traffic.until_admitted()
        fault = time.monotonic()
        cluster.kill("keys-1")
        print(f"\nrevocation across edges: {revoked_across(cluster, traffic.big, 1, 0):.2f} s")
        managed = wait_for(
            lambda: all(
                any(a.status < 300 and a.started > fault for a in load.of("manage"))
                for load in traffic.loads
            ),
            60,
        )
        assert managed is not None, "no key change accepted on each edge after the kill"
        print(f"key changes accepted on both edges {managed:.2f} s after the kill")
        recovered = time.monotonic()
        cluster.restore()
        cluster.until_whole()
        traffic.until_exact_after(time.monotonic())
    check_all(traffic, fault, recovered)


def test_logs_hold_no_plaintext_key(cluster: RunningCluster, traffic: Traffic) -> None:
    """Last: every process's log after all the faults (no key of the traffic's in them)."""
    from tests.key_scan import plaintext_keys

    logs = "\n".join(
        p.read_text(errors="replace") for p in Path(cluster.layout.data_dir).glob("*.log")
    )
    assert plaintext_keys(logs) == set()
    assert traffic.big.key not in logs
