"""The probe behind the NATS node alert (infra/prometheus/blackbox.yml, module nats_info): the
blackbox exporter finds a real nats-server up while it runs and down once it stops."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc_infra.nats_server import NatsServer, free_port
from tests.conftest import secured_nats
from tests.prometheus_tools import BLACKBOX, PROMETHEUS, needs_blackbox
from tests.scrape import value

pytestmark = needs_blackbox


@pytest.fixture
def exporter() -> Iterator[str]:
    """The blackbox exporter with the repository's modules, on a free port: its address."""
    assert BLACKBOX is not None
    address = f"127.0.0.1:{free_port()}"
    argv = [BLACKBOX, "--config.file=blackbox.yml", f"--web.listen-address={address}"]
    process = subprocess.Popen(
        argv, cwd=PROMETHEUS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(address):
            assert process.poll() is None and time.monotonic() < deadline, "it did not start"
            time.sleep(0.05)
        yield address
    finally:
        process.terminate()
        process.wait(10)


def _answers(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def probe(exporter: str, server: NatsServer) -> float:
    target = {"module": "nats_info", "target": f"127.0.0.1:{server.port}"}
    answer = httpx.get(f"http://{exporter}/probe", params=target, timeout=10)
    return value(answer.text, "probe_success")


def test_a_nats_server_is_up_while_it_greets_clients_and_down_once_stopped(
    exporter: str, tmp_path: Path
) -> None:
    server = secured_nats(tmp_path).start()
    try:
        assert probe(exporter, server) == 1
    finally:
        server.stop()
    assert probe(exporter, server) == 0
