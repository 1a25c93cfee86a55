"""The caller's identity as the edge vouches for it to the upstream (the Coordinator), signed,
so that no other workload that can reach the Coordinator can claim to be an account.

A forwarded request of an authenticated caller carries `X-Account-Id`, `X-Key-Id` and
`X-Request-Id`, and

    X-AITBC-Identity: v1;t=<unix seconds>;sig=<HMAC-SHA256, hex>

where the HMAC is keyed with a secret the edge and the Coordinator share
(UPSTREAM_IDENTITY_SECRET_FILE) and taken over the bytes of

    aitbc-identity-v1 LF <account id> LF <key id> LF <request id> LF <t>

The Coordinator takes the account from `X-Account-Id` only when the header is there, the
signature is that HMAC of the three headers and `t`, and `t` is within MAX_AGE seconds of its
own clock; otherwise it answers 401 INVALID_IDENTITY. The request id makes each identity one
request's: replaying it (for whoever can read the traffic: keep the edge-to-Coordinator hop on
a private network or TLS) works only within MAX_AGE and only for the same request id.
"""

from __future__ import annotations

import hmac
import secrets
from hashlib import sha256

IDENTITY_HEADER = "x-aitbc-identity"
ACCOUNT_HEADER = "x-account-id"
KEY_HEADER = "x-key-id"
REQUEST_ID_HEADER = "x-request-id"
# A request id's shape: the edge takes a client's X-Request-Id only so (or makes one), and the
# keys service, which logs it and keeps it in the events, refuses a command with another
REQUEST_ID_PATTERN = "[A-Za-z0-9._:-]{1,128}"
VERSION = "v1"
MAX_AGE = 60.0  # seconds an identity is believed, either side of the verifier's clock
MIN_SECRET_LENGTH = 32  # characters of the shared secret
_CONTEXT = "aitbc-identity-v1"


class IdentitySecretError(ValueError):
    """A secret that cannot be used (too short); the secret itself is never shown."""


def new_secret() -> str:
    """A new shared secret: 64 hex characters (256 bits), the text of the secret file."""
    return secrets.token_hex(32)


class UpstreamIdentity:
    """Signs identities (the edge) and checks them (the Coordinator) with the shared secret.
    The HMAC's key is set up once; signing one request costs one HMAC of about 100 bytes."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str) -> None:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise IdentitySecretError(
                f"the upstream identity secret must be at least {MIN_SECRET_LENGTH} characters"
            )
        self._keyed = hmac.new(secret.encode(), digestmod=sha256)

    def _signature(self, account_id: str, key_id: str, request_id: str, t: str) -> str:
        mac = self._keyed.copy()
        mac.update(f"{_CONTEXT}\n{account_id}\n{key_id}\n{request_id}\n{t}".encode())
        return mac.hexdigest()

    def sign(self, account_id: str, key_id: str, request_id: str, now: float) -> str:
        """The X-AITBC-Identity value for this request, made at `now` (time.time())."""
        t = str(int(now))
        return f"{VERSION};t={t};sig={self._signature(account_id, key_id, request_id, t)}"

    def refusal(
        self,
        account_id: str,
        key_id: str,
        request_id: str,
        header: str | None,
        now: float,
        max_age: float = MAX_AGE,
    ) -> str:
        """Why the identity is not to be believed ("" when it is): unsigned, malformed,
        stale (or from the future) by more than `max_age` seconds, or signed otherwise."""
        if not header:
            return "The request carries no signed identity (X-AITBC-Identity)"
        version, _, rest = header.partition(";t=")
        t, _, signature = rest.partition(";sig=")
        well_formed = t.isascii() and t.isdigit() and len(t) <= 12 and signature.isascii()
        if version != VERSION or not well_formed or not signature:
            return "The signed identity (X-AITBC-Identity) is malformed"
        if abs(now - int(t)) > max_age:
            return f"The signed identity is stale: more than {max_age:g} seconds from now"
        expected = self._signature(account_id, key_id, request_id, t)
        if not hmac.compare_digest(expected, signature):
            return "The signed identity does not match the request's account, key and id"
        return ""
