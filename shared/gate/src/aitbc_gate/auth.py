"""Who is calling: key extraction, local checks, and the auth cache before the keys service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote_plus

import msgspec

from aitbc_contracts.keyformat import KEY_LENGTH, is_well_formed, key_digest
from aitbc_contracts.messages import Code, KeyFacts, Rejected
from aitbc_gate import metrics
from aitbc_gate.auth_cache import AuthCache as AuthCache  # its users import it from here
from aitbc_gate.errors import ApiError, from_rejection
from aitbc_gate.key_checks import KeyChecks
from aitbc_gate.throttle import FailureThrottle

KeyAnswer = KeyFacts | Rejected  # what the keys service says about one hash

API_KEY_HEADER = "x-api-key"
API_KEY_QUERY = "api_key"
_HEADER = API_KEY_HEADER.encode()
_QUERY = API_KEY_QUERY.encode()


class Principal(msgspec.Struct, frozen=True, gc=False):
    """Made per request: a Struct is built ~10x faster than a frozen dataclass."""

    key_id: str
    account_id: str
    kind: str
    plan: str
    rate_limit: int | None
    in_grace: bool = False  # a replaced secret in its grace period: it manages nothing
    data_plane: bool = True  # False: a master key its account keeps off the forwarded routes
    scopes: tuple[str, ...] = ()  # the key's restrictions (KeyFacts): (): none
    allowed_ips: tuple[str, ...] = ()
    shadow: bool = False

    @property
    def is_master(self) -> bool:
        return self.kind == "master"


def presented_key(in_headers: list[str], query: bytes, query_allowed: bool = True) -> str | None:
    """The key from `X-API-Key` (each one `in_headers`, as the request layer read the head:
    aitbc_gate.requests) or the `api_key` parameter of the `query` string: one key, however
    many times it is sent. Two different keys are refused (400 CONFLICTING_API_KEYS: neither
    silently wins), and so is any key in the query when `query_allowed` is off
    (API_KEY_IN_QUERY=0). The query is parsed only when it could hold the parameter
    (`api%5Fkey` is one spelling)."""
    keys = in_headers
    if query and (_QUERY in query or b"%" in query):
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        in_query = [value for name, value in pairs if name == API_KEY_QUERY]
        if in_query and not query_allowed:
            raise ApiError(
                400,
                Code.API_KEY_IN_QUERY_DISABLED,
                "API keys in the query string are turned off on this service: "
                "send the key in the X-API-Key header",
            )
        keys = in_headers + in_query
    if len(keys) > 1:
        distinct = {key for key in keys if key}
        if len(distinct) > 1:
            raise ApiError(
                400,
                Code.CONFLICTING_API_KEYS,
                "Two different API keys were presented (X-API-Key and the api_key query "
                "parameter, or one of them twice): send one",
            )
        return distinct.pop() if distinct else None
    return keys[0] if keys else None


def query_without_key(query: bytes) -> bytes:
    """The query string without the `api_key` parameter (however its name is spelled), for
    whatever comes after the gate: the edge's upstream, or the app behind the middleware and
    its server's access log. The key is a secret, theirs neither to read nor to log. Unchanged
    when no key is in it."""
    if _QUERY not in query and b"%" not in query:
        return query  # no spelling of api_key here (`api%5Fkey` is one, and authenticates)
    # The other parameters stay byte for byte: decoded and encoded again, a `%FF` or a raw
    # non-ASCII byte would come out as other bytes. Names are read as `presented_key` reads
    # them (parse_qsl: split at `&`, `+` a space, percent-decoded as UTF-8).
    pairs = query.split(b"&")
    kept = [pair for pair in pairs if not _names_the_key(pair)]
    return query if len(kept) == len(pairs) else b"&".join(kept)


def _names_the_key(pair: bytes) -> bool:
    return unquote_plus(pair.split(b"=", 1)[0].decode("latin-1")) == API_KEY_QUERY


# One answer for every key that opens nothing: never issued, mistyped, or replaced (its grace
# over). Different words for a replaced secret would tell a guesser that it once was a key.
INVALID_KEY_MESSAGE = "The provided API key is invalid"


def _invalid() -> ApiError:
    return ApiError(401, Code.INVALID_API_KEY, INVALID_KEY_MESSAGE)


class Authenticator:
    """Turns a presented key into a Principal, or an ApiError with a stable code."""

    def __init__(self, cache: AuthCache, keys: KeyChecks, throttle: FailureThrottle) -> None:
        self.cache = cache
        self.keys = keys
        self.throttle = throttle
        self._lookups: dict[bytes, asyncio.Task[tuple[int, KeyAnswer]]] = {}

    def _cached(self, key: str) -> tuple[bytes, KeyFacts | None]:
        """The key's digest (b"" when it cannot be a key) and its facts, if cached. The cache
        comes first: a digest found there is an issued key's, so well-formed by construction,
        and the common case skips the checksum's arithmetic."""
        digest = key_digest(key) if len(key) == KEY_LENGTH and key.isascii() else b""
        facts = self.cache.get(digest) if digest else None
        if facts is None:
            return digest, None
        if facts.secret_valid_until is not None and _ended(facts):
            return digest, None  # a replaced secret past its grace: judged as any unknown key
        metrics.CACHE_HIT.inc()
        return digest, facts

    def known(self, key: str | None) -> Principal | None:
        """The caller, when the key's facts are cached (the common case): no await, no task.
        None: ask `authenticate`, which knows every other answer."""
        facts = self._cached(key)[1] if key else None
        return None if facts is None else principal_of(facts)

    async def facts(self, key: str | None, client: str) -> KeyFacts:
        if not key:
            raise ApiError(
                401, Code.MISSING_API_KEY, "An API key is required: send it in the X-API-Key header"
            )
        digest, facts = self._cached(key)
        if facts is not None:
            return facts
        well_formed = bool(digest) and is_well_formed(key)  # prefix, alphabet, checksum
        now = time.time()
        if self.throttle.blocked(client, now):
            metrics.INVALID_KEYS_THROTTLED.inc()
            raise ApiError(
                429,
                Code.TOO_MANY_INVALID_KEYS,
                "Too many invalid API keys from this address; try again later",
                headers={"Retry-After": str(self.throttle.retry_after(now))},
            )
        if not well_formed or self.cache.is_unknown(digest):
            metrics.CACHE_NEGATIVE.inc()
            self.throttle.failed(client, now)
            raise _invalid()
        metrics.CACHE_MISS.inc()

        def unknown() -> None:
            self.cache.put_unknown(digest)
            self.throttle.failed(client, now)

        return await self._ask(digest, unknown)

    async def _ask(self, digest: bytes, on_unknown: Callable[[], None] = lambda: None) -> KeyFacts:
        """A cache miss: ask the keys service. While it cannot answer (503), an entry kept
        unchecked since the key event stream was lost still serves, within the cache's stale
        bound (AUTH_STALE_MAX); key events evict such entries as usual."""
        try:
            generation, reply = await self._lookup(digest)
            if isinstance(reply, Rejected):
                if reply.code == Code.INVALID_API_KEY:
                    on_unknown()
                    raise _invalid()  # the keys service's own words would differ
                raise from_rejection(reply)
        except ApiError as exc:
            stale = self.cache.get(digest, stale=True) if exc.status == 503 else None
            if stale is None:
                raise
            metrics.CACHE_STALE.inc()
            return stale
        self.cache.put(digest, reply, generation)
        return reply

    def _lookup(self, digest: bytes) -> Awaitable[tuple[int, KeyAnswer]]:
        """One question per hash in flight: concurrent misses of a key share it, each judging
        the reply for itself (its own throttle, negative cache and stale fallback). Each gets
        the generation the question was asked at, so an eviction while it was out still
        refuses the answer. A task, shielded: a caller that gives up leaves it to the others."""
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.create_task(self._check(digest, self.cache.generation))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
            lookup.add_done_callback(_retrieve)
        return asyncio.shield(lookup)

    async def _check(self, digest: bytes, generation: int) -> tuple[int, KeyAnswer]:
        return generation, await self.keys.check(digest.hex())  # the wire's hex hash

    async def authenticate(self, key: str | None, client: str = "") -> Principal:
        return principal_of(await self.facts(key, client))

    async def authenticate_hash(self, key_hash: str) -> Principal:
        """The same check for a key known only by its hash (a dashboard session's master key):
        the same cache, kept true by the key event stream, and the same answers."""
        try:
            digest = bytes.fromhex(key_hash)
        except ValueError:
            raise _invalid() from None
        return principal_of(self.cache.get(digest) or await self._ask(digest))


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a failed lookup's exception seen: every caller may have given up on it."""
    if not task.cancelled():
        task.exception()


def _ended(facts: KeyFacts) -> bool:
    """Whether these facts are of a replaced secret whose grace period is over."""
    return facts.secret_valid_until is not None and facts.secret_valid_until <= datetime.now(UTC)


def principal_of(facts: KeyFacts) -> Principal:
    """Who the facts say is calling, unless the key is revoked, expired or replaced."""
    if facts.revoked:
        raise ApiError(401, Code.API_KEY_REVOKED, "This API key has been revoked")
    if facts.expires_at is not None or facts.secret_valid_until is not None:
        if facts.expires_at is not None and facts.expires_at <= datetime.now(UTC):
            raise ApiError(401, Code.API_KEY_EXPIRED, "This API key has expired")
        if _ended(facts):
            raise _invalid()
    return Principal(
        facts.key_id,
        facts.account_id,
        facts.kind,
        facts.plan,
        facts.rate_limit,
        facts.secret_valid_until is not None,
        facts.data_plane,
        facts.scopes,
        facts.allowed_ips,
        facts.shadow,
    )
