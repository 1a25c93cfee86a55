"""A key revoked while an edge is cut off from the bus is refused as soon as the edge is back,
even when the keys service cannot be asked then: the edge's key event reader resumes where it
was and applies what was published meanwhile (docs/architecture.md, "The key event log")."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cuttable_link import CuttableLink
from tests.e2e.stack import BIN, Stack


@pytest.fixture(scope="module")
def cut_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, CuttableLink]]:
    """A system whose edge reaches the bus through a link the test cuts; the rest do not."""
    system = Stack(tmp_path_factory.mktemp("revocation-outage"))
    link = CuttableLink(system.layout.nats_port).restore()
    try:
        system.start_bus()
        system.add_service("coordinator").start()
        scheme = system.layout.bus_url.split(":", 1)[0]
        system.add_edge("edge", NATS_URL=link.url(scheme)).start()
        yield system, link
    finally:
        link.cut()
        system.stop()


def operator(system: Stack, *command: str) -> None:
    subprocess.run(
        [str(BIN / "aitbc"), *command],
        env={**system.env(), "PATH": str(BIN)},
        check=True,
        capture_output=True,
    )


def status(api: httpx.Client, key: str) -> tuple[int, str]:
    answered = api.get("/v1/jobs", headers={"X-API-Key": key})
    code = answered.json()["error"]["code"] if answered.status_code != 200 else ""
    return answered.status_code, code


def test_a_key_revoked_while_the_edge_was_cut_off_is_refused_once_it_is_back(
    cut_off: tuple[Stack, CuttableLink],
) -> None:
    system, link = cut_off
    with httpx.Client(base_url=system.processes["edge"].url, timeout=10) as api:
        master = api.post("/v1/accounts").json()["master_key"]["key"]
        made = api.post("/v1/api-keys", json={"name": "w"}, headers={"X-API-Key": master}).json()
        assert status(api, made["key"]) == (200, "") and status(api, master) == (200, "")

        link.cut()  # the edge alone loses the bus
        # Revoked, and the event published, while the edge cannot hear it; then another event,
        # so that the revocation is not the stream's last message (where a reader starting
        # from "now" would anchor, and see it after all).
        operator(system, "keys", "revoke", made["key_id"])
        operator(system, "accounts", "create", "--plan", "free")
        system.processes["keys"].stop(kill=True)  # and nobody to ask when it is back
        # An outage longer than the server keeps the edge's consumer without its client (5 s):
        # what that consumer would still have delivered on reconnection is gone with it.
        time.sleep(6)
        link.restore()

        deadline = time.monotonic() + 10  # a reconnection takes about a second
        while (answer := status(api, made["key"])) != (401, "API_KEY_REVOKED"):
            assert answer[0] in (200, 503), answer
            assert time.monotonic() < deadline, f"the revoked key still answers {answer}"
            time.sleep(0.25)  # within the plan's 60 a minute, should it keep answering 200
        # Resumed, nothing missed: the other cached key is trusted again, with no one to ask.
        assert status(api, master) == (200, "")
        assert status(api, made["key"]) == (401, "API_KEY_REVOKED")
