"""`just up --tls` and `--mtls` as a person runs them: the development CA is made, the bus
speaks TLS only, everything serves, and the runner says what the CLI needs."""

from __future__ import annotations

import signal
import socket
import stat
from pathlib import Path

import httpx

from tests.integration.test_up import JUST, JUSTFILE, Up, start
from tests.integration.test_up import up_factory as up_factory  # the fixture, for this module


def test_just_up_mtls_serves_over_a_bus_that_speaks_tls_only(
    up_factory: list[Up], tmp_path: Path
) -> None:
    argv = [JUST, "--justfile", str(JUSTFILE), "--no-deps", "up", "--mtls"]
    up = start(up_factory, tmp_path, argv, DATA_DIR=str(tmp_path / "data"))
    up.wait_for("everything is up")
    tls = tmp_path / "data" / "tls"
    assert f"NATS_TLS_CA={tls / 'ca.pem'} NATS_TLS_CERT={tls / 'admin.pem'}" in up.output
    assert f"nats is ready on tls://127.0.0.1:{up.ports['NATS_PORT']}" in up.output
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in tls.glob("*.key"))
    signup = httpx.post(up.api() + "/v1/accounts", json={}, timeout=10)
    assert signup.status_code == 201, signup.text  # the edge reached the keys service
    with socket.create_connection(("127.0.0.1", up.ports["NATS_PORT"]), timeout=3) as plain:
        plain.settimeout(1)
        try:
            said = plain.recv(100)
        except TimeoutError:
            said = b""
    assert b"INFO" not in said  # nothing in the clear
    assert up.stop(signal.SIGINT, group=True) == 0
    refused = [line for line in up.errors() if "TLS handshake error" in line]
    assert len(refused) == 1, up.errors()  # the plain connection above; no service, no probe
    assert [line for line in up.errors() if line not in refused] == []
