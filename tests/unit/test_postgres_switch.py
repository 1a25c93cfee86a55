"""The one rule for a missing PostgreSQL (tests/postgres.py): skipped, unless required."""

from __future__ import annotations

import pytest

from aitbc_infra.nats_server import free_port
from tests import postgres


@pytest.fixture
def closed_port(monkeypatch: pytest.MonkeyPatch) -> str:
    """TEST_POSTGRES_URL pointing at a port no server listens on."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    monkeypatch.setenv(postgres.URL_VARIABLE, url)
    return url


def test_an_unreachable_server_is_skipped_by_default(
    closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(postgres.REQUIRE_VARIABLE, raising=False)
    assert postgres.server_url() == closed_port and not postgres.reachable()
    with pytest.raises(pytest.skip.Exception):
        postgres.absent("no PostgreSQL")


@pytest.mark.parametrize("setting", ["1", "yes"])
def test_an_unreachable_server_fails_where_postgres_is_required(
    closed_port: str, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv(postgres.REQUIRE_VARIABLE, setting)
    with pytest.raises(pytest.fail.Exception, match="AITBC_REQUIRE_POSTGRES=1 requires it"):
        postgres.absent(f"no PostgreSQL reachable at {postgres.where()}")


def test_zero_or_empty_does_not_require_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in ("0", ""):
        monkeypatch.setenv(postgres.REQUIRE_VARIABLE, setting)
        assert not postgres.required()


def test_messages_name_the_host_and_port_and_never_the_password() -> None:
    assert postgres.where("postgresql://u:secret@db.example:6543/x") == "db.example:6543"
