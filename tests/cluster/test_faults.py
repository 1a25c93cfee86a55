"""`just cluster` under faults (tests/cluster/faults.py), one at a time on one cluster, with
load through both edges. Each test puts the cluster back as it found it (the killed process
restarted, every partition held, every stream replica current); what each asserts is in
tests/cluster/checks.py. Marked `chaos`: they run after the rest, alone, so that no other
test's load makes a lease lapse. Their `just chaos` rows are printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.report import table
from tests.cluster.faults import FAULTS, whole_cluster
from tests.cluster.harness import RunningCluster
from tests.cluster.traffic import Big, Traffic, big_account

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with whole_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


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


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name: str, cluster: RunningCluster, traffic: Traffic) -> None:
    result = FAULTS[name](cluster, traffic)
    report = table([result])
    print(f"\n{report}")  # takeover, revocation and recovery times
    assert result.ok, report
    assert (result.usage_lost, result.usage_duplicated) == (0, 0), report
    assert (result.events_lost, result.events_duplicated) == (0, 0), report


def test_logs_hold_no_plaintext_key(cluster: RunningCluster, traffic: Traffic) -> None:
    """Last: every process's log after all the faults (no key of the traffic's in them)."""
    from tests.key_scan import plaintext_keys

    logs = "\n".join(
        p.read_text(errors="replace") for p in Path(cluster.layout.data_dir).glob("*.log")
    )
    assert plaintext_keys(logs) == set()
    assert traffic.big.key not in logs
