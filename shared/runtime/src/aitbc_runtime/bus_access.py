"""How a process reaches the bus, and as whom: the servers, its role's credentials and TLS;
and how many copies of the streams it makes the bus keeps.

Every NATS connection of the system (services, CLI, tests, benchmarks) is made from a
`BusAccess`, so that credentials and TLS are read, checked and applied in one place:

- `NATS_URL`: one server or a comma-separated list (a cluster: any of them; a client connects
  to one that is up and, when it goes, reconnects to another);
- `NATS_REPLICAS`: how many nodes keep a copy of each stream and bucket the process makes
  when it is missing [1; 3 in a 3-node cluster];
- `NATS_CREDS`: the role's NATS nkey seed file (`just up` writes one per role, mode 0600, into
  `DATA_DIR/creds`, or `NATS_CREDS_DIR`); the server knows the public key and the role's
  permissions;
- `NATS_TLS_CA`, and for mutual TLS `NATS_TLS_CERT` and `NATS_TLS_KEY`: TLS to the server,
  from the first byte (the server's `tls` block has `handshake_first: true`): a client that
  waited for the server's cleartext INFO to learn whether to start TLS could be talked out of
  it by anyone in between (aitbc_infra.bus_tls).

A connection's inboxes are under `_INBOX.<the first 16 characters of its public key>`: the
server config lets each user subscribe to its own prefix only, so no other role can read the
replies meant for it.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import nkeys

from aitbc_runtime import environment, redaction

INBOX_ROOT = "_INBOX"


class BusAccessError(ValueError):
    """Credentials or TLS files that cannot be used: say which and why, before connecting."""


class _TlsCloseNote(logging.Filter):
    """nats-py's TLS transport makes asyncio log "returning true from eof_received() has no
    effect when using ssl" (WARNING) each time a TLS connection ends (nats-io/nats.py#574):
    nothing is wrong, and a line at every reconnect would hide the ones that matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("returning true from eof_received()")


_TLS_CLOSE_NOTE = _TlsCloseNote()


def public_key_of_seed(seed: str) -> str:
    """The nkey public key (U...) of an nkey seed (SU...)."""
    try:
        return str(nkeys.from_seed(bytearray(seed.strip().encode())).public_key.decode())
    except Exception as exc:  # nkeys raises its own error types, and binascii's
        raise BusAccessError(f"not an nkey seed: {type(exc).__name__}") from None


def without_secrets(url: str) -> str:
    """NATS_URL as it may be printed: nats-py takes a password (`nats://user:pass@host`) or a
    token (`nats://token@host`) from each server's URL, and a log line or an error message
    must show neither."""
    return ",".join(redaction.without_secrets(server, token=True) for server in url.split(","))


def inbox_prefix(public_key: str) -> str:
    """The inbox prefix of the user with `public_key`: the server config lets it, and only it,
    subscribe below this prefix."""
    return f"{INBOX_ROOT}.{public_key[:16]}"


def read_secret_file(path: str, what: str) -> str:
    """A secret file's text, refused if others may read it (as ssh refuses a private key)."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text()
    except OSError as exc:
        raise BusAccessError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BusAccessError(f"the {what} {path} is readable by others: chmod 600 it")
    return text


class TlsFields(TypedDict, total=False):
    """BusAccess's TLS fields, as keyword arguments."""

    tls_ca: str
    tls_cert: str
    tls_key: str


@dataclass(frozen=True)
class BusAccess:
    """Where the bus is and the credentials to present there; empty strings: not used."""

    url: str = field(default_factory=lambda: environment.nats_url({}))
    creds: str = ""  # the role's nkey seed file
    tls_ca: str = ""  # the CA that signed the servers' certificates
    tls_cert: str = ""  # this client's certificate, for mutual TLS
    tls_key: str = ""
    replicas: int = 1  # of each stream and KV bucket this process makes

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, creds: str = "NATS_CREDS") -> BusAccess:
        """As `just up` and the deployment set it; `creds` names the variable holding the
        credentials file (the keys service has a second one for its event publisher)."""
        return cls(
            url=environment.nats_url(env),
            creds=env.get(creds, ""),
            tls_ca=env.get("NATS_TLS_CA", ""),
            tls_cert=env.get("NATS_TLS_CERT", ""),
            tls_key=env.get("NATS_TLS_KEY", ""),
            replicas=environment.nats_replicas(env),
        )

    @property
    def servers(self) -> list[str]:
        return [url.strip() for url in self.url.split(",") if url.strip()]

    @cached_property
    def public_key(self) -> str | None:
        """The public key of the credentials, None without any."""
        if not self.creds:
            return None
        return public_key_of_seed(read_secret_file(self.creds, "NATS credentials file"))

    @property
    def inbox_prefix(self) -> str:
        return INBOX_ROOT if self.public_key is None else inbox_prefix(self.public_key)

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        logging.getLogger("asyncio").addFilter(_TLS_CLOSE_NOTE)  # once: it is the same filter
        context = ssl.create_default_context(cafile=self.tls_ca or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            try:
                context.load_cert_chain(self.tls_cert, self.tls_key or None)
            except (OSError, ssl.SSLError) as exc:
                raise BusAccessError(f"cannot load the TLS client certificate: {exc}") from None
        return context

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `nats.connect` (and FastStream's NatsBroker) that say where
        and as whom; a caller adds its own (name, callbacks, reconnect policy)."""
        options: dict[str, Any] = {"servers": self.servers, "inbox_prefix": self.inbox_prefix}
        if self.public_key is not None:
            options["nkeys_seed"] = self.creds
        context = self.tls_context()
        if context is not None:
            options["tls"] = context
            options["tls_handshake_first"] = True
        return options

    def where(self) -> str:
        """For log lines and error messages: the servers, and whether credentials and TLS
        are used (never the credentials themselves)."""
        how = [
            word for word, on in (("nkey", self.creds), ("TLS", self.tls_ca or self.tls_cert)) if on
        ]
        return without_secrets(self.url) + (f" ({', '.join(how)})" if how else "")
