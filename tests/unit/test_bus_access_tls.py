"""A client given a CA opens TLS before anything else, in nats-py and in FastStream alike, and
the note nats-py's TLS transport makes asyncio log at every close stays out of the logs."""

from __future__ import annotations

import logging

import pytest

from aitbc_infra.dev_ca import DevCA
from aitbc_runtime.broker import _security
from aitbc_runtime.bus_access import BusAccess


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    return DevCA(tmp_path_factory.mktemp("tls")).provision()


def test_without_a_ca_there_is_no_tls() -> None:
    options = BusAccess("nats://127.0.0.1:4222").options()
    assert "tls" not in options and "tls_handshake_first" not in options


def test_with_a_ca_tls_comes_first(ca: DevCA) -> None:
    options = BusAccess("tls://127.0.0.1:4222", tls_ca=str(ca.ca_file)).options()
    assert options["tls_handshake_first"] is True
    assert options["tls"].check_hostname


def test_the_broker_opens_tls_first_too(ca: DevCA) -> None:
    access = BusAccess(
        "tls://127.0.0.1:4222",
        tls_ca=str(ca.ca_file),
        tls_cert=str(ca.cert_file("keys")),
        tls_key=str(ca.key_file("keys")),
    )
    security = _security(access)
    assert security is not None and security.tls_handshake_first
    assert security.ssl_context is not None


def test_the_tls_close_note_is_dropped_and_nothing_else(
    ca: DevCA, caplog: pytest.LogCaptureFixture
) -> None:
    BusAccess("tls://127.0.0.1:4222", tls_ca=str(ca.ca_file)).tls_context()
    asyncio_log = logging.getLogger("asyncio")
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio_log.warning("returning true from eof_received() has no effect when using ssl")
        asyncio_log.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
