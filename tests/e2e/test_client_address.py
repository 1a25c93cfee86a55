"""The client's address and scheme behind a load balancer: forwarding headers are believed only
from TRUSTED_PROXIES (none by default), over real HTTP to running edges. The test client
connects from 127.0.0.1, which uvicorn alone would trust."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from aitbc_contracts.keyformat import generate_key
from aitbc_infra.processes import ChildProcess
from tests.e2e.stack import Stack

BUDGET = 3  # invalid keys an address may present a minute


@pytest.fixture(scope="module")
def untrusting(stack: Stack) -> Iterator[ChildProcess]:
    edge = stack.add_edge("api-no-proxies", AUTH_FAILURE_BUDGET=str(BUDGET)).start()
    yield edge
    edge.stop()


@pytest.fixture(scope="module")
def behind_a_proxy(stack: Stack) -> Iterator[ChildProcess]:
    edge = stack.add_edge(
        "api-behind-proxy",
        AUTH_FAILURE_BUDGET=str(BUDGET),
        TRUSTED_PROXIES="127.0.0.1/32, ::1/128",
        REQUIRE_HTTPS="1",
    ).start()
    yield edge
    edge.stop()


def guess(client: httpx.Client, **headers: str) -> str:
    """An invalid key's answer: INVALID_API_KEY, or TOO_MANY_INVALID_KEYS once the address
    the edge sees has spent its budget."""
    answer = client.get("/v1/jobs", headers={"X-API-Key": generate_key(), **headers})
    code: str = answer.json()["error"]["code"]
    return code


def test_an_untrusted_peer_cannot_name_another_client_or_scheme(
    untrusting: ChildProcess,
) -> None:
    with httpx.Client(base_url=untrusting.url, timeout=10) as client:
        spoofs = [
            {"X-Forwarded-For": "203.0.113.1"},
            {"X-Forwarded-For": "203.0.113.2"},
            {"Forwarded": "for=203.0.113.3"},
        ]
        assert [guess(client, **spoof) for spoof in spoofs] == ["INVALID_API_KEY"] * BUDGET
        # every guess was the socket's: the address is spent whatever the headers say
        assert guess(client, **{"X-Forwarded-For": "198.51.100.4"}) == "TOO_MANY_INVALID_KEYS"
        assert guess(client, Forwarded="for=198.51.100.5") == "TOO_MANY_INVALID_KEYS"
        # nor does a made-up X-Forwarded-Proto make the request HTTPS
        page = client.get("/dashboard/sign-in", headers={"X-Forwarded-Proto": "https"})
        assert page.status_code == 200
        assert "strict-transport-security" not in page.headers
        assert "secure" not in page.headers["set-cookie"].lower()


def test_a_trusted_proxy_names_the_client_and_its_scheme(behind_a_proxy: ChildProcess) -> None:
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=behind_a_proxy.url, timeout=10) as client:
        plain = client.get("/v1/jobs", headers={"X-Forwarded-For": "203.0.113.7"})
        assert plain.status_code == 403 and plain.json()["error"]["code"] == "HTTPS_REQUIRED"

        # the client made up the left hop; our proxy appended the right one: that is who it is
        made_up = {**https, "X-Forwarded-For": "192.0.2.1, 203.0.113.7"}
        assert [guess(client, **made_up) for _ in range(BUDGET)] == ["INVALID_API_KEY"] * BUDGET
        assert guess(client, **https, **{"X-Forwarded-For": "203.0.113.7"}) == (
            "TOO_MANY_INVALID_KEYS"
        )
        # behind a second proxy of ours (a trusted hop is skipped): the same client
        two_hops = {**https, "X-Forwarded-For": "203.0.113.7, 127.0.0.1"}
        assert guess(client, **two_hops) == "TOO_MANY_INVALID_KEYS"
        # another client behind the same proxy has a budget of its own
        assert guess(client, **https, **{"X-Forwarded-For": "198.51.100.1"}) == ("INVALID_API_KEY")
        # a Forwarded header the client made up, passed on by an X-Forwarded-For proxy
        passed_on = {**https, "X-Forwarded-For": "203.0.113.7", "Forwarded": "for=198.51.100.2"}
        assert guess(client, **passed_on) == "TOO_MANY_INVALID_KEYS"

        page = client.get("/dashboard/sign-in", headers={**https, "X-Forwarded-For": "192.0.2.9"})
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        assert "; secure" in page.headers["set-cookie"].lower()  # TLS ended at the proxy


def test_a_made_up_hop_with_a_digit_that_is_no_number_is_only_a_hop(
    behind_a_proxy: ChildProcess,
) -> None:
    """Latin-1 has superscript digits (² is 0xB2): a port of one is no port, not a 500."""
    with httpx.Client(base_url=behind_a_proxy.url, timeout=10) as client:
        for name, value in [
            ("X-Forwarded-For", b"192.0.2.1:\xb2, 203.0.113.8"),
            ("X-Forwarded-For", b"[2001:db8::1]:\xb9\xb3"),
        ]:
            answer = client.get(
                "/v1/jobs",
                headers=[(b"X-Forwarded-Proto", b"https"), (name.encode(), value)],
            )
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"]["code"] == "MISSING_API_KEY"
