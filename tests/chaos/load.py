"""Load for the fault scenarios: client threads calling the edge throughout, every answer kept,
and what the system recorded about them (usage stream, aggregates, key event log)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import msgspec
import nats

from aitbc_contracts.messages import encoder
from aitbc_contracts.subjects import USAGE_QUERY
from aitbc_contracts.usage import UsageQuery, UsageSeries
from aitbc_runtime.bus_access import BusAccess
from tests.e2e.usage_stream import usage_events

Call = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True, slots=True)
class Answer:
    """One request as its client saw it."""

    caller: str
    key_id: str | None  # the key whose usage this request counts against, when known
    started: float  # time.monotonic()
    ended: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, client timeout)
    code: str  # the error body's code; "" on success
    request_id: str
    mode: str  # x-ratelimit-mode: set exactly when the edge took a rate-limit decision
    reset: int  # x-ratelimit-reset (the end of the counted minute), 0 when absent
    body: str = ""

    @property
    def admitted(self) -> bool:
        return 0 < self.status < 400

    @property
    def recorded(self) -> bool:
        """The edge decided on this request, so it must be in the usage stream once."""
        return bool(self.mode)

    @property
    def outcome(self) -> str:
        if self.admitted:
            return "OK"
        return self.code or (f"HTTP_{self.status}" if self.status else "NO_ANSWER")


def answer_of(
    caller: str, key_id: str | None, started: float, call: Call, client: httpx.Client
) -> Answer:
    try:
        response = call(client)
    except httpx.HTTPError as exc:
        return Answer(caller, key_id, started, time.monotonic(), 0, "", "", "", 0, repr(exc))
    code = ""
    if response.status_code >= 400:
        try:
            code = str(response.json()["error"]["code"])
        except Exception:
            code = f"UNSTRUCTURED_{response.status_code}"  # no error body: a finding of its own
    headers = response.headers
    return Answer(
        caller,
        key_id,
        started,
        time.monotonic(),
        response.status_code,
        code,
        headers.get("x-request-id", ""),
        headers.get("x-ratelimit-mode", ""),
        int(headers.get("x-ratelimit-reset", "0") or 0),
        response.text[:200] if response.status_code >= 400 else "",
    )


@dataclass
class Caller:
    name: str
    call: Call
    key_id: str | None = None
    pause: float = 0.01  # between requests: a few hundred a second at most, all threads together


@dataclass
class Load:
    """Threads calling the edge until stopped; `answers` grows while they run."""

    base_url: str
    callers: list[Caller] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    timeout: float = 15.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def add(self, name: str, call: Call, key_id: str | None = None, pause: float = 0.01) -> Load:
        self.callers.append(Caller(name, call, key_id, pause))
        return self

    def _run(self, caller: Caller) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                self.answers.append(
                    answer_of(caller.name, caller.key_id, started, caller.call, client)
                )
                self._stop.wait(caller.pause)

    def start(self) -> Load:
        self._threads = [
            threading.Thread(
                target=self._run, args=(caller,), name=f"load-{caller.name}", daemon=True
            )
            for caller in self.callers
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return list(self.answers)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def of(self, caller: str, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """One caller's answers to requests started in [since, until)."""
        return [a for a in list(self.answers) if a.caller == caller and since <= a.started < until]


def tally(answers: list[Answer]) -> tuple[int, int, int, dict[str, int]]:
    """made, admitted, refused, and the refusals by error code."""
    codes = Counter(a.outcome for a in answers if not a.admitted)
    admitted = sum(1 for a in answers if a.admitted)
    return len(answers), admitted, len(answers) - admitted, dict(sorted(codes.items()))


def wait_for(
    condition: Callable[[], object], timeout: float = 15.0, every: float = 0.1
) -> float | None:
    """Seconds until `condition()` held, or None if it never did within `timeout`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(every)


def recovered_after(
    fault_end: float, condition: Callable[[], object], timeout: float = 60.0
) -> float | None:
    """Seconds from `fault_end` (a monotonic time) until `condition()` holds, or None."""
    if wait_for(condition, timeout) is None:
        return None
    return time.monotonic() - fault_end


# --- what the usage stream and aggregates recorded ---------------------------------------------


async def _aggregated(access: BusAccess, account_id: str, key_id: str) -> int:
    nc = await nats.connect(**access.options())
    try:
        end = datetime.now(UTC) + timedelta(minutes=1)
        query = UsageQuery(account_id, end - timedelta(hours=1), end, key_id)
        reply = await nc.request(USAGE_QUERY, encoder.encode(query), timeout=5)
    finally:
        await nc.close()
    series = msgspec.json.decode(reply.data, type=UsageSeries)
    return sum(minute.requests for minute in series.minutes)


def aggregated_requests(access: BusAccess, account_id: str, key_id: str) -> int:
    """What the usage aggregates (the ones GET /v1/usage serves) count for this key, the last
    hour; asked of the usage service directly, so the asking counts against no rate limit."""
    return asyncio.run(_aggregated(access, account_id, key_id))


@dataclass(frozen=True)
class UsageCheck:
    lost: int  # decided on, but missing from the stream or the aggregates
    duplicated: int  # in the stream or the aggregates more than once
    detail: str


def _at_least(access: BusAccess, account_id: str, key_id: str, n: int) -> bool:
    return aggregated_requests(access, account_id, key_id) >= n


def check_usage(
    access: BusAccess,  # read-only: an auditor's
    accounts: dict[str, list[str]],  # account id -> the load's key ids
    answers: list[Answer],
    timeout: float = 30.0,
) -> UsageCheck:
    """Every request the edge decided on is in the usage stream once and counted once by the
    aggregates of its key. Waits (up to `timeout`) for the stream and the aggregator to catch up."""
    expected: dict[str, Counter[str]] = {}
    for answer in answers:
        if answer.recorded and answer.key_id is not None:
            expected.setdefault(answer.key_id, Counter())[answer.request_id] += 1
    watched = {key_id for key_ids in accounts.values() for key_id in key_ids}
    expected = {k: v for k, v in expected.items() if k in watched}

    def stream_counts() -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for event in usage_events(access, *accounts):
            counts.setdefault(event.key_id, Counter())[event.request_id] += 1
        return counts

    def caught_up() -> bool:
        counts = stream_counts()
        return all(set(ids) <= set(counts.get(k, {})) for k, ids in expected.items())

    wait_for(caught_up, timeout, every=0.5)
    counts = stream_counts()
    lost = duplicated = 0
    notes = []
    for key_id, ids in expected.items():
        seen = counts.get(key_id, Counter())
        missing = set(ids) - set(seen)
        twice = sum(n - 1 for n in seen.values() if n > 1)
        lost += len(missing)
        duplicated += twice
        if missing or twice:
            notes.append(f"{key_id}: {len(missing)} missing from the stream, {twice} twice")

    # The aggregates of each load key: exactly the stream's events (the stream may hold a few
    # more than the answers, for requests whose client gave up before the answer came).
    for account_id, key_ids in accounts.items():
        for key_id in key_ids:
            in_stream = sum(counts.get(key_id, Counter()).values())

            wait_for(partial(_at_least, access, account_id, key_id, in_stream), timeout, 0.5)
            counted = aggregated_requests(access, account_id, key_id)
            if counted != in_stream:
                notes.append(f"{key_id}: aggregates count {counted}, the stream holds {in_stream}")
                lost = max(lost, in_stream - counted)
                duplicated = max(duplicated, counted - in_stream)
    return UsageCheck(lost, duplicated, "; ".join(notes))
