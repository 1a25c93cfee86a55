"""The signed identity the edge sends the Coordinator: one format, signed and checked by the
same code on both sides (aitbc_contracts.identity)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from aitbc_contracts.identity import (
    MAX_AGE,
    IdentitySecretError,
    UpstreamIdentity,
    new_secret,
)

SECRET = new_secret()
NOW = 1_800_000_000.5
WHO = ("acc_0123456789abcdef", "key_0123456789abcdef", "0123456789abcdef0123456789abcdef")


def test_the_header_is_the_documented_hmac() -> None:
    header = UpstreamIdentity(SECRET).sign(*WHO, NOW)
    message = "aitbc-identity-v1\n" + "\n".join(WHO) + "\n1800000000"
    digest = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert header == f"v1;t=1800000000;sig={digest}"


def test_a_signed_identity_is_believed_within_max_age_either_way() -> None:
    identity = UpstreamIdentity(SECRET)
    header = identity.sign(*WHO, NOW)
    for now in (NOW, NOW + MAX_AGE - 1, NOW - MAX_AGE + 1):
        assert identity.refusal(*WHO, header, now) == ""
    # the other side reads the same secret from its own copy of the file
    assert UpstreamIdentity(SECRET + "\n").refusal(*WHO, header, NOW) == ""


@pytest.mark.parametrize(
    ("who", "header", "now", "why"),
    [
        (WHO, None, NOW, "no signed identity"),
        (WHO, "", NOW, "no signed identity"),
        (WHO, "v1;t=1800000000", NOW, "malformed"),
        (WHO, "v2;t=1800000000;sig=00", NOW, "malformed"),
        (WHO, "v1;t=-5;sig=00", NOW, "malformed"),
        (WHO, "v1;t=\uff11\uff18;sig=00", NOW, "malformed"),  # fullwidth digits
        (WHO, "v1;t=1800000000;sig=é", NOW, "malformed"),
        (WHO, "SIGNED", NOW + MAX_AGE + 2, "stale"),
        (WHO, "SIGNED", NOW - MAX_AGE - 2, "stale"),
        (("acc_other", *WHO[1:]), "SIGNED", NOW, "does not match"),
        ((WHO[0], "key_other", WHO[2]), "SIGNED", NOW, "does not match"),
        ((*WHO[:2], "another-request"), "SIGNED", NOW, "does not match"),
        (WHO, "OTHER SECRET", NOW, "does not match"),
    ],
)
def test_anything_else_is_refused_saying_why(
    who: tuple[str, str, str], header: str | None, now: float, why: str
) -> None:
    identity = UpstreamIdentity(SECRET)
    if header == "SIGNED":
        header = identity.sign(*WHO, NOW)
    elif header == "OTHER SECRET":
        header = UpstreamIdentity(new_secret()).sign(*WHO, NOW)
    reason = identity.refusal(*who, header, now)
    assert why in reason
    assert SECRET not in reason


def test_a_short_secret_is_refused_without_being_shown() -> None:
    with pytest.raises(IdentitySecretError) as refused:
        UpstreamIdentity("too-short-a-secret")
    assert "too-short" not in str(refused.value)
