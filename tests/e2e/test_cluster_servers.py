"""NATS_URL as a list of a cluster's servers, in every process and the `aitbc` CLI: the system
starts while the first listed node is down, and keeps working when the node each process is
connected to is killed (SIGKILL: a machine lost), one node at a time, on a real 3-node
cluster with every stream at 3 replicas.

Each round checks every way the processes use the bus: key commands and checks (request/reply
to the keys service), decisions (to the usage service), the keys service's relay publishing
into the key log and the mirrors copying it (JetStream, read by the CLI), and usage events
published by the edge and aggregated by the usage service."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from aitbc_infra import stack as definition
from aitbc_infra.processes import ChildProcess
from aitbc_infra.readiness import run_to_end
from aitbc_infra.stack import Layout
from tests.e2e.stack import BIN, TEST_SETTINGS
from tests.e2e.usage_stream import usage_totals
from tests.nats_cluster import Cluster, cluster_of

T = TypeVar("T")
# Seconds a round may take: a lost node's streams elect new leaders meanwhile, and the key
# log's mirror recreates its copy of the stream after its source's leader moved (45 s was once
# too short for that on a loaded machine).
ROUND = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with cluster_of(tmp_path / "nats") as made:
        yield made


def eventually(check: Callable[[], T | None], what: str, within: float = ROUND) -> T:
    """`check()`'s first true result, asked again until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
        except (httpx.HTTPError, AssertionError, subprocess.SubprocessError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        time.sleep(0.2)


def cli(layout: Layout, *args: str) -> str:
    """The `aitbc` command as an operator runs it: NATS_URL (the list) and admin credentials."""
    env = {**layout.child_env("admin"), "PATH": str(BIN)}
    done = subprocess.run(
        [str(BIN / "aitbc"), *args], env=env, capture_output=True, text=True, timeout=ROUND / 2
    )
    done.check_returncode()
    return done.stdout


def everything_works(api: httpx.Client, layout: Layout, account: str, master: str) -> None:
    owner = {"X-API-Key": master}

    def new_key() -> dict[str, str] | None:
        made = api.post("/v1/api-keys", json={"name": "round"}, headers=owner)
        return made.json() if made.status_code == 201 else None

    key = eventually(new_key, "a key made (keys service, request/reply)")

    def exact() -> bool:
        used = api.get("/v1/jobs", headers={"X-API-Key": key["key"]})
        return used.status_code == 200 and used.headers["x-ratelimit-mode"] == "exact"

    eventually(exact, "a request checked and decided exactly (keys and usage services)")
    listed = eventually(lambda: cli(layout, "keys", "list", "--account", account, "--json"), "cli")
    assert key["key_id"] in {k["key_id"] for k in json.loads(listed)["keys"]}
    eventually(
        lambda: key["key_id"] in cli(layout, "events", "replay", "--account", account),
        "the key's event in the key log's mirror (relay, mirror, CLI)",
    )
    eventually(
        lambda: usage_totals(api, master, key_id=key["key_id"]).get("requests"),
        "the request counted (usage stream, aggregates, usage query)",
    )


# Node kills and elections on a loaded machine: alone, after the parallel part (as tests/cluster),
# with time for its three rounds.
@pytest.mark.chaos
@pytest.mark.timeout(60 + 3 * ROUND)
def test_every_process_reaches_the_cluster_through_any_of_its_nodes(
    cluster: Cluster, tmp_path: Path
) -> None:
    run_to_end(cluster.provision(3))
    first, second, third = cluster.nodes
    first.stop()  # down before anything connects: every process must use the others
    layout = Layout.on_free_ports(
        tmp_path,
        nats_url=cluster.url(),
        nats_replicas=3,
        creds_dir=cluster.credentials.folder,
        env=TEST_SETTINGS,
    )
    processes = [
        ChildProcess.of(definition.service(layout, name), tmp_path)
        for name in ("keys", "usage", "coordinator", "api")
    ]
    try:
        for process in processes:
            process.start(timeout=90)
        with httpx.Client(base_url=layout.api_url, timeout=10) as api:
            body = api.post("/v1/accounts").json()
            account, master = body["account_id"], body["master_key"]["key"]
            everything_works(api, layout, account, master)
            cluster.start(first)
            # Every process is connected to the second or the third node: killing each in
            # turn takes every process's node away at least once. One node at a time, as in
            # a rolling restart: the one that came back has caught up before the next goes
            # (with two of three copies behind, a stream has no quorum until they catch up).
            for node in (second, third):
                assert run_to_end(cluster.all_current(3)), "the streams did not catch up"
                node.stop(kill=True)
                everything_works(api, layout, account, master)
                cluster.start(node)
    finally:
        for process in reversed(processes):
            process.stop()
    logs = "".join(p.log_file.read_text(errors="replace") for p in processes)
    for connection in ("aitbc-keys", "aitbc-keys-writer", "aitbc-usage", "aitbc-api"):
        assert f"{connection} reconnected to NATS" in logs  # its node was one of those killed
