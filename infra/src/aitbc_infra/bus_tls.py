"""TLS on the bus: the nats-server's `tls` blocks and what each client is given to match.

With TLS on (`just up --tls`, NATS_TLS=1) the server speaks TLS only, and from the first byte
(`handshake_first`): it sends nothing in the clear, not even its INFO, so a plain client gets
no answer at all, and no one between a client and the server can strip TLS off (in the
ordinary NATS handshake the client learns from a cleartext INFO whether to start TLS). Every
client is given the CA (NATS_TLS_CA) and opens TLS first (aitbc_runtime.bus_access); with
mutual TLS (NATS_TLS_VERIFY=1) each also presents its role's certificate (NATS_TLS_CERT,
NATS_TLS_KEY) and the server refuses a client without one. The role's nkey is still what
says who the client is: the certificate only says it may talk to the server at all.

The certificates come from the development CA (aitbc_infra.dev_ca); docs/security.md ("TLS")
says how production differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aitbc_infra.dev_ca import SERVER, DevCA
from aitbc_runtime.bus_access import TlsFields

HANDSHAKE_TIMEOUT = 2.0  # seconds; nats-server's default (0.5) is short on a busy machine


@dataclass(frozen=True)
class BusTls:
    """TLS for one server (or cluster) and its clients, with the certificates of `ca`;
    `verify`: mutual TLS, every client presents a certificate of `ca`."""

    ca: DevCA
    verify: bool = False

    def provision(self) -> BusTls:
        self.ca.provision()
        return self

    def _files(self) -> str:
        files = {
            "cert_file": self.ca.cert_file(SERVER),
            "key_file": self.ca.key_file(SERVER),
            "ca_file": self.ca.ca_file,
        }
        return "\n".join(f"    {name}: {json.dumps(str(path))}" for name, path in files.items())

    def server_block(self) -> str:
        """The client port's `tls` block: TLS first, and with `verify` a client certificate."""
        verify = "true" if self.verify else "false"
        return (
            f"tls {{\n{self._files()}\n    verify: {verify}\n"
            f"    timeout: {HANDSHAKE_TIMEOUT}\n    handshake_first: true\n}}\n"
        )

    def route_block(self) -> str:
        """A cluster's `tls` block (inside `cluster {}`): both ends of a route are nodes with
        the server certificate, and each checks the other's."""
        return (
            f"  tls {{\n{self._files()}\n    verify: true\n    timeout: {HANDSHAKE_TIMEOUT}\n  }}\n"
        )

    def client(self, role: str) -> TlsFields:
        """A client of `role`: aitbc_runtime.bus_access.BusAccess's TLS fields."""
        fields: TlsFields = {"tls_ca": str(self.ca.ca_file)}
        if self.verify:
            fields["tls_cert"] = str(self.ca.cert_file(role))
            fields["tls_key"] = str(self.ca.key_file(role))
        return fields

    def env(self, role: str) -> dict[str, str]:
        """The same, as the settings a process of `role` reads (BusAccess.from_env)."""
        fields = self.client(role)
        return {f"NATS_{name.upper()}": str(value) for name, value in fields.items()}
