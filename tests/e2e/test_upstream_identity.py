"""The Coordinator believes only the identities the edge signed: a workload that can reach it
and sends `X-Account-Id` alone, a forged signature or an old one gets 401 INVALID_IDENTITY;
the edge's own requests go through, and what a client sends in those headers never counts."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from aitbc_contracts.identity import UpstreamIdentity, new_secret
from tests.e2e.stack import BIN, Stack


def _shared(stack: Stack) -> UpstreamIdentity:
    return UpstreamIdentity(stack.layout.identity_secret_file.read_text())


def _signed(identity: UpstreamIdentity, account: str, at: float) -> dict[str, str]:
    return {
        "X-Account-Id": account,
        "X-Key-Id": "key_0000000000000000",
        "X-Request-Id": "req-e2e",
        "X-AITBC-Identity": identity.sign(account, "key_0000000000000000", "req-e2e", at),
    }


def test_the_secret_is_made_private_and_given_to_both_sides(stack: Stack) -> None:
    file = stack.layout.identity_secret_file
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    for name in ("coordinator", "api"):
        told = stack.processes[name].env["UPSTREAM_IDENTITY_SECRET_FILE"]
        assert Path(told) == file


def test_the_coordinator_refuses_identities_the_edge_did_not_sign(
    stack: Stack, api: httpx.Client, account: dict[str, str]
) -> None:
    victim = account["account_id"]
    job = api.post(
        "/v1/jobs",
        json={"model": "echo", "input": "mine"},
        headers={"X-API-Key": account["master"]},
    ).json()
    now = time.time()
    forged = [
        {"X-Account-Id": victim},  # what any workload on the Coordinator's network could send
        _signed(UpstreamIdentity(new_secret()), victim, now),  # another secret
        _signed(_shared(stack), victim, now - 120),  # stale
        {**_signed(_shared(stack), "acc_someone_else", now), "X-Account-Id": victim},
    ]
    with httpx.Client(base_url=stack.layout.upstream_url, timeout=10) as coordinator:
        for headers in forged:
            for response in (
                coordinator.get("/v1/jobs", headers=headers),
                coordinator.get(f"/v1/jobs/{job['id']}", headers=headers),
                coordinator.delete(f"/v1/jobs/{job['id']}", headers=headers),
            ):
                assert response.status_code == 401, response.text
                assert response.json()["error"]["code"] == "INVALID_IDENTITY"
        believed = coordinator.get("/v1/jobs", headers=_signed(_shared(stack), victim, now))
        assert believed.status_code == 200
        assert [j["id"] for j in believed.json()["jobs"]] == [job["id"]]
        assert believed.json()["jobs"][0]["status"] == "queued"  # nothing above touched it


def test_what_a_client_sends_as_identity_is_dropped_by_the_edge(
    api: httpx.Client, account: dict[str, str]
) -> None:
    other = api.post("/v1/accounts", json={"name": "other"}).json()
    spoofed = _signed(UpstreamIdentity(new_secret()), other["account_id"], time.time())
    key = {"X-API-Key": account["master"]}
    made = api.post("/v1/jobs", json={"model": "echo"}, headers={**spoofed, **key})
    assert made.status_code == 201, made.text
    mine = api.get("/v1/jobs", headers=key).json()["jobs"]
    assert made.json()["id"] in {j["id"] for j in mine}
    theirs = api.get("/v1/jobs", headers={"X-API-Key": other["master_key"]["key"]}).json()
    assert theirs["total"] == 0


def _coordinator_exit(tmp_path: Path, secret_file: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UPSTREAM_IDENTITY_SECRET_FILE"}
    if secret_file is not None:
        env["UPSTREAM_IDENTITY_SECRET_FILE"] = secret_file
    env["COORDINATOR_PORT"] = "1"  # never reached: it must stop before it listens
    return subprocess.run(
        [str(BIN / "aitbc-sample-coordinator")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("case", ["unset", "missing", "readable by others", "too short"])
def test_the_coordinator_does_not_start_without_a_usable_secret(tmp_path: Path, case: str) -> None:
    file = tmp_path / "secret"
    file.write_text(new_secret() if case != "too short" else "short")
    file.chmod(0o644 if case == "readable by others" else 0o600)
    given = {"unset": None, "missing": str(tmp_path / "nothing")}.get(case, str(file))
    done = _coordinator_exit(tmp_path, given)
    assert done.returncode != 0
    assert "aitbc-sample-coordinator:" in done.stderr
    assert file.read_text() not in done.stderr
