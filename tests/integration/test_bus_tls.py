"""TLS on the bus, against a real nats-server with the real configuration (the roles' nkeys
and the `tls` block that `just up --tls` writes): a plain client gets nothing, a client that
trusts the CA and holds a role's nkey gets in, and with mutual TLS a client must also present
a certificate of the CA."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from aitbc_infra.bus_config import BusCredentials
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import DevCA
from aitbc_infra.nats_server import NatsServer, free_port
from aitbc_infra.readiness import answers, connects
from aitbc_runtime.broker import service_broker
from aitbc_runtime.bus_access import BusAccess

ONCE = {"connect_timeout": 2, "allow_reconnect": False, "max_reconnect_attempts": 0}


def tls_nats(root: Path, verify: bool) -> NatsServer:
    """A nats-server with the roles' users and TLS only (mutual with `verify`)."""
    return NatsServer(
        free_port(),
        root / "js",
        log_file=root / "nats.log",
        credentials=BusCredentials(root / "creds"),
        tls=BusTls(DevCA(root / "tls"), verify=verify),
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    running = tls_nats(tmp_path, verify=False).start()
    yield running
    running.stop()


@pytest.fixture
def mutual(tmp_path: Path) -> Iterator[NatsServer]:
    running = tls_nats(tmp_path, verify=True).start()
    yield running
    running.stop()


async def _quiet(_: Exception) -> None:
    """A refused attempt is the expected outcome here: no traceback in the output."""


async def connect(access: BusAccess) -> NATS:
    return await nats.connect(**access.options(), **ONCE, error_cb=_quiet)


async def refused(access: BusAccess) -> None:
    with pytest.raises(Exception):  # noqa: B017 - refused somewhere in the handshake
        client = await connect(access)
        await client.flush(timeout=2)  # an accepted connection would answer this
        await client.close()


async def round_trip(client: NATS) -> bytes:
    subscription = await client.subscribe("tls.check")
    await client.publish("tls.check", b"over TLS")
    message = await subscription.next_msg(timeout=2)
    return message.data


def test_a_plain_client_gets_nothing_and_is_cut_off(server: NatsServer) -> None:
    """TLS first: the server says nothing in the clear (no INFO, no nonce), and a client that
    speaks the protocol in the clear is disconnected without an answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as plain:
        plain.settimeout(1)
        with pytest.raises(TimeoutError):
            plain.recv(100)  # nothing until a TLS handshake begins
        plain.settimeout(5)
        plain.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
    assert b"PONG" not in answer and b"INFO" not in answer
    assert answer == b"" or not answer.isascii()  # closed, or a TLS alert


async def test_a_client_without_tls_is_refused_even_with_a_roles_nkey(
    server: NatsServer,
) -> None:
    plain = BusAccess(server.url.replace("tls://", "nats://"), creds=server.access("edge").creds)
    await refused(plain)


async def test_a_client_that_trusts_the_ca_and_holds_a_nkey_gets_in(server: NatsServer) -> None:
    client = await connect(server.access("admin"))
    try:
        assert client.is_connected
        assert await round_trip(client) == b"over TLS"
    finally:
        await client.close()
    edge = await connect(server.access("edge"))
    await edge.close()


async def test_the_servers_name_is_checked_by_address_and_by_host_name(
    server: NatsServer,
) -> None:
    """The development certificate names 127.0.0.1 and localhost: both verify."""
    access = server.access("admin")
    for url in (f"tls://127.0.0.1:{server.port}", f"tls://localhost:{server.port}"):
        client = await connect(replace(access, url=url))
        await client.close()


async def test_tls_does_not_replace_credentials(server: NatsServer) -> None:
    """Over TLS, an anonymous client is still refused: the nkey says who a client is."""
    await refused(replace(server.access("admin"), creds=""))


async def test_a_server_signed_by_another_ca_is_not_trusted(
    server: NatsServer, tmp_path: Path
) -> None:
    stranger = DevCA(tmp_path / "stranger").provision()
    await refused(replace(server.access("admin"), tls_ca=str(stranger.ca_file)))


async def test_mutual_tls_refuses_a_client_without_a_certificate(mutual: NatsServer) -> None:
    await refused(replace(mutual.access("edge"), tls_cert="", tls_key=""))


async def test_mutual_tls_refuses_a_certificate_of_another_ca(
    mutual: NatsServer, tmp_path: Path
) -> None:
    stranger = DevCA(tmp_path / "stranger").provision()
    edge = mutual.access("edge")
    foreign = replace(edge, tls_cert=str(stranger.cert_file("edge")))
    await refused(replace(foreign, tls_key=str(stranger.key_file("edge"))))


async def test_mutual_tls_lets_a_role_with_its_certificate_in(mutual: NatsServer) -> None:
    access = mutual.access("admin")
    assert access.tls_cert.endswith("admin.pem")
    client = await connect(access)
    try:
        assert await round_trip(client) == b"over TLS"
    finally:
        await client.close()


async def test_a_services_broker_connects_with_mutual_tls(mutual: NatsServer) -> None:
    """FastStream's broker (the keys and usage services) takes the same TLS settings."""
    broker = service_broker(mutual.access("keys"), "tls-test")
    await broker.connect()
    try:
        await broker.connection.flush(timeout=2)
        assert broker.connection.is_connected
    finally:
        await broker.stop()


async def test_the_readiness_probes_work_over_tls(mutual: NatsServer) -> None:
    """`just up`'s probes connect as admin: over TLS, with its certificate."""
    assert await connects(mutual.access("admin"))()
    assert not await connects(replace(mutual.access("admin"), tls_cert="", tls_key=""))()
    responder = await connect(mutual.access("admin"))

    async def pong(message: Msg) -> None:
        await message.respond(b"pong")

    try:
        await responder.subscribe("tls.ping", cb=pong)
        await responder.flush()
        assert await answers(mutual.access("admin"), "tls.ping", b"ping")()
    finally:
        await responder.close()


async def test_the_server_log_names_the_refused_handshakes(mutual: NatsServer) -> None:
    await refused(replace(mutual.access("edge"), tls_cert="", tls_key=""))
    await asyncio.sleep(0.2)
    assert mutual.log_file is not None
    assert "client didn't provide a certificate" in mutual.log_file.read_text()


def operator_cli(server: NatsServer, tls: bool) -> subprocess.CompletedProcess[str]:
    """`aitbc keys list` as an operator runs it against `server` (no keys service there)."""
    access = server.access("admin")
    env = {**os.environ, "NATS_URL": server.url, "NATS_CREDS": access.creds}
    if tls:
        env |= {"NATS_TLS_CA": access.tls_ca, "NATS_TLS_CERT": access.tls_cert}
        env["NATS_TLS_KEY"] = access.tls_key
    command = [str(Path(sys.executable).parent / "aitbc"), "keys", "list", "--account", "acc_1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def test_the_cli_names_the_tls_setting_it_lacks(mutual: NatsServer) -> None:
    without = operator_cli(mutual, tls=False)
    assert without.returncode == 1 and "needs NATS_TLS_CA" in without.stderr, without.stderr
    assert len(without.stderr.splitlines()) == 1
    given = operator_cli(mutual, tls=True)
    assert "no keys service is answering" in given.stderr  # connected: nobody to answer
