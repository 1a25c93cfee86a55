"""Fuzzing the key parser and key extraction (Hypothesis): random, truncated, oversized,
mutated and non-ASCII keys, headers and query strings never crash the local checks, never
reach the bus unless well formed, and a query-string key never reaches the upstream."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.connection import ASGIConnection
from litestar.datastructures import MultiDict

from aitbc_contracts.keyformat import ALPHABET, KEY_LENGTH, PREFIX, generate_key, is_well_formed
from aitbc_contracts.messages import Code, Rejected
from aitbc_gate.auth import AuthCache, Authenticator, presented_key, query_without_key
from aitbc_gate.errors import ApiError
from aitbc_gate.requests import read_head
from aitbc_gate.throttle import FailureThrottle

fuzz = settings(max_examples=200, derandomize=True, deadline=None, database=None)

VALID = [generate_key() for _ in range(5)]


@st.composite
def keys(draw: st.DrawFn) -> str:
    """Anything a client might present: noise, near misses of a real key, huge values."""
    key = draw(st.sampled_from(VALID))
    return draw(
        st.one_of(
            st.text(),  # any Unicode at all
            st.text(alphabet=ALPHABET, min_size=KEY_LENGTH - 6, max_size=KEY_LENGTH + 6),
            st.builds(lambda n: key[:n], st.integers(0, KEY_LENGTH - 1)),  # truncated
            st.builds(lambda s: key + s, st.text(min_size=1)),  # oversized
            st.builds(lambda n: key * n, st.integers(2, 2000)),  # far oversized
            st.builds(  # one character changed
                lambda i, c: key[:i] + c + key[i + 1 :],
                st.integers(0, KEY_LENGTH - 1),
                st.characters(),
            ),
            st.builds(lambda s: PREFIX + s, st.text(min_size=KEY_LENGTH - len(PREFIX))),
            st.just(key.upper()),
            st.just(key.replace("a", "\u0430")),  # a Cyrillic a: looks the same
        )
    )


@given(keys())
@fuzz
def test_the_key_parser_never_crashes_and_accepts_only_real_keys(key: str) -> None:
    assert is_well_formed(key) == (key in VALID)


@given(st.text(alphabet=ALPHABET, min_size=KEY_LENGTH - len(PREFIX), max_size=KEY_LENGTH))
@fuzz
def test_a_made_up_key_passes_the_checksum_about_once_in_a_billion(body: str) -> None:
    assert (
        not is_well_formed(PREFIX + body[: KEY_LENGTH - len(PREFIX)])
        or (PREFIX + body[: KEY_LENGTH - len(PREFIX)]) in VALID
    )


def connection(
    headers: list[tuple[bytes, bytes]], query: bytes
) -> ASGIConnection[Any, Any, Any, Any]:
    scope = {"type": "http", "headers": headers, "query_string": query, "path": "/v1/jobs"}
    return ASGIConnection(scope)  # type: ignore[arg-type]


header_values = st.one_of(st.binary(max_size=300), st.sampled_from(VALID).map(str.encode))
queries = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda name, value, rest: name + b"=" + value + b"&" + rest,
        st.sampled_from([b"api_key", b"api%5Fkey", b"%61pi_key", b"api%5fkey", b"API_KEY"]),
        st.one_of(st.binary(max_size=80), st.sampled_from(VALID).map(str.encode)),
        st.binary(max_size=80),
    ),
)


def header_keys(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """What the request layer reads of them (aitbc_gate.requests.read_head)."""
    return read_head({"headers": headers})[2]


@given(st.lists(st.tuples(st.sampled_from([b"x-api-key", b"x-other"]), header_values)), queries)
@fuzz
def test_key_extraction_never_crashes(headers: list[tuple[bytes, bytes]], query: bytes) -> None:
    """One key, or a 400: two different keys (header and query, or either twice) are refused,
    neither silently wins; and with query keys turned off, any key in the query is refused."""
    conn = connection(headers, query)
    in_query = conn.query_params.getall("api_key", [])
    presented = [v.decode("latin-1") for n, v in headers if n == b"x-api-key"] + in_query
    distinct = {key for key in presented if key}
    try:
        key = presented_key(header_keys(headers), conn.scope["query_string"])
    except ApiError as refused:
        assert (refused.status, refused.code) == (400, Code.CONFLICTING_API_KEYS)
        assert len(distinct) > 1
    else:
        assert len(distinct) <= 1
        assert key is None or isinstance(key, str)
        assert key == (distinct.pop() if distinct else key)
    try:
        presented_key(header_keys(headers), query, query_allowed=False)
    except ApiError as refused:
        assert refused.status == 400
        assert refused.code == (
            Code.API_KEY_IN_QUERY_DISABLED if in_query else Code.CONFLICTING_API_KEYS
        )
    else:
        assert not in_query


@given(queries)
@fuzz
def test_no_spelling_of_a_query_key_reaches_the_upstream(query: bytes) -> None:
    """What the edge forwards, read the way the edge reads a query, has no api_key left."""
    forwarded = query_without_key(query)
    assert connection([], forwarded).query_params.get("api_key") is None


def test_a_percent_encoded_key_name_is_removed_too() -> None:
    key = VALID[0]
    for name in ("api_key", "api%5Fkey", "%61pi%5fkey", quote("api_key", safe="")):
        query = f"{name}={key}&page=2".encode()
        assert connection([], query).query_params.get("api_key") == key  # it authenticates
        forwarded = query_without_key(query)
        assert key.encode() not in forwarded and MultiDict({"page": "2"}) == MultiDict(
            connection([], forwarded).query_params
        )


class CountingKeys:
    """A keys service that knows no key, and counts how often it was asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def check(self, key_hash: str) -> Rejected:
        self.asked += 1
        return Rejected(Code.INVALID_API_KEY, "unknown API key")


@pytest.fixture(scope="module")
def authenticator() -> tuple[Authenticator, CountingKeys]:
    keys = CountingKeys()
    cache = AuthCache(1000, 60, 1000, 0.0)
    return Authenticator(cache, keys, FailureThrottle(10**9)), keys  # type: ignore[arg-type]


@given(st.one_of(st.none(), keys()))
@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
def test_authentication_refuses_with_an_error_body_and_asks_only_about_real_keys(
    authenticator: tuple[Authenticator, CountingKeys], key: str | None
) -> None:
    auth, keys = authenticator
    asked = keys.asked
    with pytest.raises(ApiError) as refused:
        asyncio.run(auth.authenticate(key, "203.0.113.9"))
    assert refused.value.status == 401
    assert refused.value.code in (Code.MISSING_API_KEY, Code.INVALID_API_KEY)
    assert keys.asked - asked == (1 if key in VALID else 0)  # malformed keys never reach the bus
