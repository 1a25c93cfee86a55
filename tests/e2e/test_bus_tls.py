"""The whole system with mutual TLS on the bus (`just up --mtls`): every service, the CLI and
the readiness probes connect over TLS with their role's certificate and nkey, and the key
flow works end to end, a revocation included, across two edges."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import BIN, Stack


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("stack-tls"), bus_tls={"nats_tls": True, "nats_tls_verify": True}
    )
    try:
        yield stack.start()
    finally:
        stack.stop()


def test_every_process_is_told_to_use_tls(system: Stack) -> None:
    for role in ("edge", "keys", "usage"):
        env = system.env(role)
        assert env["NATS_URL"].startswith("tls://")
        assert env["NATS_TLS_CERT"].endswith(f"/{role}.pem")
        assert env["NATS_TLS_CA"] == env["NATS_TLS_CERT"].rsplit("/", 1)[0] + "/ca.pem"
    assert "handshake_first: true" in system.nats.config_file.read_text()


def test_a_key_works_and_its_revocation_reaches_another_edge(
    system: Stack, api: httpx.Client
) -> None:
    second = system.add_edge("api-tls-2").start()
    signed_up = api.post("/v1/accounts", json={"name": "tls"}).json()
    master = signed_up["master_key"]["key"]
    made = api.post("/v1/api-keys", json={"name": "w"}, headers={"X-API-Key": master}).json()
    key = {"X-API-Key": made["key"]}
    with httpx.Client(base_url=second.url, timeout=10) as other:
        assert api.get("/v1/jobs", headers=key).status_code == 200
        assert other.get("/v1/jobs", headers=key).status_code == 200  # cached there too
        revoked = api.delete(f"/v1/api-keys/{made['key_id']}", headers={"X-API-Key": master})
        assert revoked.status_code == 200, revoked.text
        deadline = time.monotonic() + 10
        while (answer := other.get("/v1/jobs", headers=key)).status_code == 200:
            assert time.monotonic() < deadline, "the revocation never reached the second edge"
            time.sleep(0.1)
    assert answer.status_code == 401, answer.text


def test_the_operator_cli_works_over_tls(system: Stack, api: httpx.Client) -> None:
    account = api.post("/v1/accounts", json={"name": "cli"}).json()["account_id"]
    shown = subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", account, "pro"],
        env={**system.env(), "PATH": str(BIN)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr


def test_no_handshake_failed_on_the_way(system: Stack) -> None:
    """The services and the probes presented what the server asks for: its log names no
    refused handshake."""
    log = (system.root / "nats.log").read_text()
    assert "TLS handshake error" not in log, log[-2000:]
