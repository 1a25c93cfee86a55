"""What every fault scenario starts from: a whole system of its own, accounts, keys, clients."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from aitbc_contracts.keyformat import generate_key
from tests.chaos.load import Call, answer_of
from tests.chaos.report import Result
from tests.e2e.stack import BIN, Process, Stack
from tests.key_scan import plaintext_keys

# Limits no load here reaches, for scenarios about faults rather than rate limits.
UNLIMITED = {"PLAN_LIMITS": "free=1000000,pro=1000000,enterprise=1000000"}


@contextmanager
def running_stack(root: Path, database_url: str = "", **env: str) -> Iterator[Stack]:
    """A system of this scenario's own (NATS, keys, usage, coordinator, edge), always stopped."""
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(root, database_url=database_url, extra_env=env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def edge(stack: Stack, name: str, **env: str) -> Process:
    """One more edge process in front of the stack's Coordinator (or another upstream)."""
    return stack.add_edge(name, **env).start()


def url_of(process: Process) -> str:
    return f"http://127.0.0.1:{process.port}"


@dataclass
class Account:
    account_id: str
    master: str = field(repr=False)  # keys: never in an assertion's message
    master_key_id: str
    issued: list[str] = field(default_factory=list, repr=False)  # every key: none may leak

    def new_key(self, api: httpx.Client, name: str, **body: object) -> tuple[str, str]:
        response = api.post(
            "/v1/api-keys", json={"name": name, **body}, headers={"X-API-Key": self.master}
        )
        response.raise_for_status()
        made = response.json()
        self.issued.append(made["key"])
        return made["key"], made["key_id"]


def sign_up(api: httpx.Client) -> Account:
    response = api.post("/v1/accounts", json={"name": "chaos"})
    response.raise_for_status()
    body = response.json()
    master = body["master_key"]
    return Account(body["account_id"], master["key"], master["key_id"], [master["key"]])


def set_plan(stack: Stack, account_id: str, plan: str) -> None:
    subprocess.run(
        [str(BIN / "aitbc"), "accounts", "set-plan", account_id, plan],
        env={**stack.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
        timeout=30,
    )


def jobs(key: str, query: bool = False, base: str = "") -> Call:
    """GET /v1/jobs with the key in the header, or in the query string (which logs must not
    show), on the load's edge or on `base`."""
    if query:
        return lambda client: client.get(base + "/v1/jobs", params={"api_key": key})
    return lambda client: client.get(base + "/v1/jobs", headers={"X-API-Key": key})


def unknown_keys(base: str = "") -> Call:
    """Each call a new well-formed key that no one was ever given: never cached, never admitted."""
    return lambda client: client.get(base + "/v1/jobs", headers={"X-API-Key": generate_key()})


def warm(api: httpx.Client, *keys: str) -> None:
    """Each key answered once by the edge, so that it is in the edge's auth cache."""
    for key in keys:
        response = api.get("/v1/jobs", headers={"X-API-Key": key})
        assert response.status_code == 200, response.text


def probe(name: str, call: Call, base_url: str, key_id: str | None = None):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=base_url, timeout=15) as client:
        return answer_of(name, key_id, time.monotonic(), call, client)


def scan_logs(result: Result, stack: Stack, accounts: list[Account]) -> None:
    """No plaintext key in any log line of this system (edge, keys, usage, Coordinator, NATS)."""
    logs = stack.logs()
    issued = [key for account in accounts for key in account.issued]
    leaked = plaintext_keys(logs) | {key for key in issued if key in logs}
    result.expect(not leaked, f"{len(leaked)} plaintext keys in the logs")
    result.expect("aitbc.api.access" in logs, "no access log to scan")


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"
