"""`aitbc-up` as a person runs it: everything up, usable over HTTP, stopped cleanly, data kept."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aitbc_infra.nats_server import NatsServer, free_port, port_is_open
from tests.conftest import secured_nats

UP = str(Path(sys.executable).parent / "aitbc-up")
JUST = str(Path(sys.executable).parent / "just")
JUSTFILE = Path(__file__).resolve().parents[2] / "justfile"
ERROR = re.compile(r"\berror\b|Traceback|callback for Task", re.IGNORECASE)


class Up:
    """An `aitbc-up` process and everything it printed."""

    def __init__(self, cwd: Path, argv: list[str] | None = None, **env: str) -> None:
        self.ports = {
            name: int(env.get(name) or free_port())
            for name in (
                *("NATS_PORT", "COORDINATOR_PORT", "API_PORT", "API_METRICS_PORT"),
                *("KEYS_METRICS_PORT", "USAGE_METRICS_PORT"),
            )
        }
        child_env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
        child_env.update({k: str(v) for k, v in self.ports.items()})
        child_env.update(env)
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv or [UP],
            cwd=cwd,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal of its own: Ctrl-C goes to its group only
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def exited(self, timeout: float = 60) -> int:
        """Its exit code, once its output is read to the end (however long a loaded machine
        takes the reader thread to get there)."""
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}:\n{self.output}")
            time.sleep(0.05)

    def errors(self) -> list[str]:
        """Lines that read as a failure: an error, a traceback, a stray note of FastStream's."""
        return [line for line in self.lines if ERROR.search(line)]

    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['API_PORT']}"

    def stop(self, sig: signal.Signals = signal.SIGTERM, group: bool = False) -> int:
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        return self.exited()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


def start(started: list[Up], cwd: Path, argv: list[str] | None = None, **env: str) -> Up:
    up = Up(cwd, argv, **env)
    started.append(up)
    return up


def all_ports_closed(up: Up) -> bool:
    return not any(port_is_open(port) for port in up.ports.values())


def test_everything_comes_up_serves_stops_cleanly_and_keeps_its_data(
    up_factory: list[Up], tmp_path: Path
) -> None:
    first = start(up_factory, tmp_path)
    first.wait_for("everything is up")
    for name in ("nats", "keys", "coordinator", "api"):
        assert f"{name} is ready" in first.output
    signup = httpx.post(first.api() + "/v1/accounts", json={}, timeout=10)
    assert signup.status_code == 201, signup.text
    master = signup.json()["master_key"]["key"]
    assert httpx.get(first.api() + "/v1/health", timeout=10).json() == {"status": "ok"}
    metrics = f"http://127.0.0.1:{first.ports['API_METRICS_PORT']}/metrics"
    assert f"metrics, this machine only: {metrics}" in first.output  # it says where
    assert "aitbc_auth_cache_total" in httpx.get(metrics, timeout=10).text
    assert httpx.get(first.api() + "/metrics", timeout=10).status_code == 404
    for service, counter in (("KEYS", "aitbc_keys_commands_total"), ("USAGE", "aitbc_usage")):
        metrics = f"http://127.0.0.1:{first.ports[f'{service}_METRICS_PORT']}/metrics"
        assert f"metrics, this machine only: {metrics}" in first.output
        assert counter in httpx.get(metrics, timeout=10).text
    # the edge signs each caller's identity with the secret it shares with the Coordinator
    by_key = {"X-API-Key": master}
    job = httpx.post(first.api() + "/v1/jobs", json={"model": "echo"}, headers=by_key, timeout=10)
    assert job.status_code == 201, job.text
    secret = tmp_path / ".data" / "upstream-identity.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    shared = secret.read_text()
    assert first.stop(signal.SIGTERM) == 0
    assert "all stopped" in first.output
    assert first.errors() == []  # a clean stop reads as one
    assert all_ports_closed(first)
    assert (tmp_path / ".data" / "keys.db").exists()
    assert (tmp_path / ".data" / "nats" / "jetstream").is_dir()

    # same data directory, new processes: the account and its master key are still there
    second = start(up_factory, tmp_path, **{k: str(v) for k, v in first.ports.items()})
    second.wait_for("everything is up")
    keys = httpx.get(second.api() + "/v1/api-keys", headers={"X-API-Key": master}, timeout=10)
    assert keys.status_code == 200, keys.text
    assert secret.read_text() == shared  # kept: edges and Coordinator restart in any order
    jobs = httpx.get(second.api() + "/v1/jobs", headers=by_key, timeout=10)
    assert jobs.status_code == 200, jobs.text
    # Ctrl-C in a terminal signals the whole foreground group, runner first among equals
    assert second.stop(signal.SIGINT, group=True) == 0
    assert all_ports_closed(second)
    assert second.errors() == []


def test_ctrl_c_stops_just_up_cleanly(up_factory: list[Up], tmp_path: Path) -> None:
    """Ctrl-C reaches `just` as well as the runner: `just up` exits 0 without an error line."""
    argv = [JUST, "--justfile", str(JUSTFILE), "--no-deps", "up"]
    up = start(up_factory, tmp_path, argv, DATA_DIR=str(tmp_path / "data"))
    up.wait_for("everything is up")
    assert up.stop(signal.SIGINT, group=True) == 0
    assert "all stopped" in up.output
    assert up.errors() == []
    assert all_ports_closed(up)


def test_a_service_that_dies_takes_everything_down_with_a_failure(
    up_factory: list[Up], tmp_path: Path
) -> None:
    up = start(up_factory, tmp_path, UP_SERVICES="nats,coordinator")
    up.wait_for("everything is up")
    line = next(line for line in up.lines if "Started server process [" in line)
    coordinator_pid = int(line.split("[")[1].split("]")[0])
    os.kill(coordinator_pid, signal.SIGKILL)
    assert up.exited() != 0
    assert "coordinator exited unexpectedly" in up.output
    assert "stopping nats" in up.output
    assert all_ports_closed(up)


def test_the_services_log_in_the_format_just_up_is_given(
    up_factory: list[Up], tmp_path: Path
) -> None:
    """LOG_FORMAT reaches every child from the runner's environment."""
    up = start(up_factory, tmp_path, UP_SERVICES="nats,coordinator", LOG_FORMAT="json")
    up.wait_for("everything is up")
    assert up.stop(signal.SIGTERM) == 0
    prefix = re.compile(r"^coordinator +\| ")
    logged = [prefix.sub("", line) for line in up.lines if prefix.match(line)]
    entries = [json.loads(line) for line in logged]  # every line of it
    assert {entry["service"] for entry in entries} == {"aitbc-sample-coordinator"}
    assert any(entry["message"].startswith("Started server process") for entry in entries)


def test_a_busy_port_is_refused_before_anything_starts(
    up_factory: list[Up], tmp_path: Path
) -> None:
    blocker = secured_nats(tmp_path / "other").start()
    try:
        up = start(up_factory, tmp_path, NATS_PORT=str(blocker.port))
        assert up.exited() == 1
        assert f"port {blocker.port}" in up.output and "NATS_URL" in up.output
        assert "starting" not in up.output
    finally:
        blocker.stop()


def test_nats_url_uses_an_existing_server(
    up_factory: list[Up], tmp_path: Path, nats_server: NatsServer
) -> None:
    up = start(up_factory, tmp_path, NATS_URL=nats_server.url, UP_SERVICES="coordinator")
    up.wait_for("everything is up")
    assert f"using the NATS server at {nats_server.url}" in up.output
    assert "starting nats" not in up.output
    assert up.stop() == 0
