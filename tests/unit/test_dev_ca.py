"""The development CA: what it makes, with which modes, what it keeps and what it reissues;
and how `just up`'s settings turn TLS on for the server and every process."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from aitbc_infra import dev_ca
from aitbc_infra.bus_config import server_config
from aitbc_infra.bus_roles import ROLES
from aitbc_infra.bus_tls import BusTls
from aitbc_infra.dev_ca import SERVER, DevCA
from aitbc_infra.runner import Config, services, settings


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(path: Path) -> set[str]:
    extension = certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return {str(name.value) for name in extension.value}


def purposes(path: Path) -> list[x509.ObjectIdentifier]:
    return list(certificate(path).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def contents(folder: Path) -> dict[str, bytes]:
    return {file.name: file.read_bytes() for file in sorted(folder.iterdir())}


def test_it_makes_a_ca_a_server_and_one_client_per_role_all_private(tmp_path: Path) -> None:
    ca = DevCA(tmp_path / "tls").provision()
    holders = [SERVER, *ROLES]
    expected = {"ca.pem", "ca.key"} | {f"{h}.{x}" for h in holders for x in ("pem", "key")}
    assert {file.name for file in ca.folder.iterdir()} == expected
    assert stat.S_IMODE(ca.folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(file.stat().st_mode) == 0o600 for file in ca.folder.iterdir())


def test_every_certificate_is_signed_by_the_ca_with_its_own_random_serial(tmp_path: Path) -> None:
    ca = DevCA(tmp_path).provision()
    authority = certificate(ca.ca_file)
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaves = [certificate(ca.cert_file(h)) for h in (SERVER, *ROLES)]
    for leaf in leaves:
        leaf.verify_directly_issued_by(authority)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    serials = [leaf.serial_number for leaf in leaves] + [authority.serial_number]
    assert len(set(serials)) == len(serials) and all(s.bit_length() > 64 for s in serials)


def test_the_server_certificate_names_the_local_hosts_and_the_extra_ones(tmp_path: Path) -> None:
    local = DevCA(tmp_path / "local").provision()
    assert names(local.cert_file(SERVER)) == {"localhost", "127.0.0.1", "::1"}
    cluster = DevCA(tmp_path / "cluster", hosts=("nats-1", "10.0.0.7")).provision()
    assert names(cluster.cert_file(SERVER)) == names(local.cert_file(SERVER)) | {
        "nats-1",
        "10.0.0.7",
    }


def test_the_server_certificate_serves_both_ends_of_a_route_and_clients_only_clients(
    tmp_path: Path,
) -> None:
    ca = DevCA(tmp_path).provision()
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert purposes(ca.cert_file(SERVER)) == both
    assert purposes(ca.cert_file("edge")) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    subject = certificate(ca.cert_file("edge")).subject
    assert subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "edge"


def test_it_is_made_once_and_kept(tmp_path: Path) -> None:
    ca = DevCA(tmp_path).provision()
    before = contents(tmp_path)
    ca.provision()
    assert contents(tmp_path) == before


def test_new_host_names_reissue_the_server_certificate_only(tmp_path: Path) -> None:
    DevCA(tmp_path).provision()
    before = contents(tmp_path)
    DevCA(tmp_path, hosts=("nats-2",)).provision()
    after = contents(tmp_path)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"server.pem", "server.key"}


def test_a_certificate_near_its_end_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as short:
        short.setattr(dev_ca, "LEAF_LIFETIME", timedelta(days=10))
        DevCA(tmp_path).provision()
    before = contents(tmp_path)
    DevCA(tmp_path).provision()
    after = contents(tmp_path)
    assert before["ca.pem"] == after["ca.pem"]
    assert before["edge.pem"] != after["edge.pem"]
    assert certificate(tmp_path / "edge.pem").not_valid_after_utc > datetime.now(UTC) + timedelta(
        days=300
    )


def test_a_new_ca_reissues_everything_it_signed(tmp_path: Path) -> None:
    DevCA(tmp_path).provision()
    before = contents(tmp_path)
    (tmp_path / "ca.key").unlink()
    DevCA(tmp_path).provision()
    after = contents(tmp_path)
    assert all(before[name] != after[name] for name in before if name != "ca.key")
    certificate(tmp_path / "usage.pem").verify_directly_issued_by(certificate(tmp_path / "ca.pem"))


def test_a_key_that_does_not_match_its_certificate_is_replaced(tmp_path: Path) -> None:
    DevCA(tmp_path).provision()
    (tmp_path / "edge.key").write_bytes((tmp_path / "usage.key").read_bytes())
    DevCA(tmp_path).provision()
    edge = certificate(tmp_path / "edge.pem")
    key = dev_ca.serialization.load_pem_private_key((tmp_path / "edge.key").read_bytes(), None)
    assert key.public_key() == edge.public_key()


def test_the_server_config_speaks_tls_first_and_mutual_tls_asks_for_a_certificate(
    tmp_path: Path,
) -> None:
    ca = DevCA(tmp_path / "tls")
    plain = server_config(4222, tmp_path / "js", None, BusTls(ca))
    assert "handshake_first: true" in plain and "verify: false" in plain
    assert f'ca_file: "{ca.ca_file}"' in plain
    mutual = server_config(4222, tmp_path / "js", None, BusTls(ca, verify=True))
    assert "verify: true" in mutual
    assert "tls" not in server_config(4222, tmp_path / "js", None)
    assert "verify: true" in BusTls(ca).route_block()  # nodes always check each other


def config(tmp_path: Path, *argv: str, **env: str) -> Config:
    return Config.from_env(settings(list(argv), {"DATA_DIR": str(tmp_path), **env}))


def test_just_up_tls_gives_every_bus_client_the_ca(tmp_path: Path) -> None:
    table = {s.name: s for s in services(config(tmp_path, "--tls"))}
    edge = table["api"].env
    assert edge["NATS_URL"].startswith("tls://127.0.0.1:")
    assert edge["NATS_TLS_CA"] == str(tmp_path / "tls" / "ca.pem")
    assert "NATS_TLS_CERT" not in edge
    assert not any(name.startswith("NATS_") for name in table["coordinator"].env)
    assert (tmp_path / "tls" / "server.pem").exists()  # made before anything starts


def test_mutual_tls_gives_each_service_its_roles_certificate(tmp_path: Path) -> None:
    for c in (config(tmp_path, "--mtls"), config(tmp_path, NATS_TLS_VERIFY="1")):
        table = {s.name: s.env for s in services(c)}
        assert table["keys"]["NATS_TLS_CERT"] == str(tmp_path / "tls" / "keys.pem")
        assert table["usage"]["NATS_TLS_KEY"] == str(tmp_path / "tls" / "usage.key")
        assert table["api"]["NATS_TLS_CERT"] == str(tmp_path / "tls" / "edge.pem")
        assert c.layout.access("admin").tls_cert == str(tmp_path / "tls" / "admin.pem")


def test_tls_settings_have_their_own_folder_and_host_names(tmp_path: Path) -> None:
    layout = config(
        tmp_path, NATS_TLS="yes", NATS_TLS_DIR=str(tmp_path / "certs"), NATS_TLS_HOSTS="a, b"
    ).layout
    tls = layout.bus_tls
    assert tls is not None and not tls.verify
    assert tls.ca.folder == tmp_path / "certs" and tls.ca.hosts == ("a", "b")
    assert config(tmp_path, NATS_TLS="0").layout.bus_tls is None
