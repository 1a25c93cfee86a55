"""Fault scenarios: each starts a system of its own, runs client load, injects one fault for
real (SIGKILL, a stopped nats-server, a locked database) and reports what the clients saw and
what the system recorded. `python -m tests.chaos` prints them as a table; tests/chaos/
test_chaos.py asserts their targets."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.chaos.keylog import Manager, check_key_log, unacknowledged_and_missing
from tests.chaos.load import Answer, Load, check_usage, recovered_after, wait_for
from tests.chaos.postgres import postgres_database
from tests.chaos.report import Result
from tests.chaos.setup import (
    UNLIMITED,
    edge,
    jobs,
    probe,
    running_stack,
    scan_logs,
    set_plan,
    sign_up,
    unknown_keys,
    url_of,
    warm,
)
from tests.chaos.upstream import upstream_faults
from tests.e2e.stack import Stack


def _outcomes(answers: list[Answer]) -> str:
    return ", ".join(f"{k} {n}" for k, n in Counter(a.outcome for a in answers).most_common())


def _no_server_errors(result: Result, answers: list[Answer], allowed: set[str]) -> None:
    """5xx only with the error body and one of the codes this fault may give."""
    wrong = [a for a in answers if a.status >= 500 and a.code not in allowed]
    result.expect(not wrong, f"unexpected server errors: {_outcomes(wrong)}")
    silent = [a for a in answers if a.status == 0]
    result.expect(not silent, f"{len(silent)} requests got no HTTP answer: {silent[:1]}")


def _first_after(
    answers: Callable[[], list[Answer]], since: float, ok: Callable[[Answer], bool]
) -> Callable[[], bool]:
    return lambda: any(a.started >= since and ok(a) for a in answers())


def _usage(
    result: Result, stack: Stack, accounts: dict[str, list[str]], answers: list[Answer]
) -> None:
    usage = check_usage(stack.nats.url, accounts, answers)
    result.usage_lost, result.usage_duplicated = usage.lost, usage.duplicated
    if usage.detail:
        result.notes.append(usage.detail)


# --- 1. NATS restarts -----------------------------------------------------------------------


def nats_restart(root: Path, outage: float = 3.0) -> Result:
    """The nats-server stops mid-load and comes back (same JetStream store): every process
    reconnects by itself, cached keys keep working, usage is recorded exactly once."""
    result = Result("nats-restart")
    with (
        running_stack(root / "nats-restart", **UNLIMITED) as stack,
        httpx.Client(base_url=stack.api_url, timeout=15) as api,
    ):
        account = sign_up(api)
        key, key_id = account.new_key(api, "load")
        warm(api, key, account.master)
        load = Load(stack.api_url)
        load.add("header", jobs(key), key_id).add("query", jobs(key, query=True), key_id)
        load.add("master", jobs(account.master), account.master_key_id)
        with load.running():
            time.sleep(2)
            down = time.monotonic()
            stack.nats.stop()
            time.sleep(outage)
            up = time.monotonic()
            stack.nats.start()
            exact = _first_after(lambda: load.answers, up, lambda a: a.mode == "exact")
            result.recovery_seconds = recovered_after(up, exact)
            time.sleep(2)
        answers = load.answers
        result.count(answers)
        result.expect(result.recovery_seconds is not None, "decisions never exact again")
        refused = [a for a in answers if a.status != 200]
        result.expect(not refused, f"cached keys refused: {_outcomes(refused)}")
        _no_server_errors(result, answers, set())
        during = [a for a in answers if down <= a.started < up]
        modes = Counter(a.mode for a in during)
        result.notes.append(f"while NATS was down: {len(during)} answered, modes {dict(modes)}")
        _usage(result, stack, {account.account_id: [key_id, account.master_key_id]}, answers)
        scan_logs(result, stack, [account])
    return result


# --- 2. The keys service is killed ----------------------------------------------------------


def keys_kill(root: Path, outage: float = 2.0) -> Result:
    """SIGKILL the keys service: cached keys keep working, uncached and unknown keys get 503
    (never admitted), management 503; all is well again within seconds of the restart."""
    result = Result("keys-kill")
    with (
        running_stack(root / "keys-kill", **UNLIMITED) as stack,
        httpx.Client(base_url=stack.api_url, timeout=15) as api,
    ):
        account = sign_up(api)
        key, key_id = account.new_key(api, "load")
        fresh, _ = account.new_key(api, "never-used")  # not in the edge's cache
        warm(api, key, account.master)
        load = Load(stack.api_url)
        load.add("cached", jobs(key), key_id).add(
            "master", jobs(account.master), account.master_key_id
        )
        load.add("unknown", unknown_keys(), pause=0.05)
        keys = stack.processes["keys"]
        with load.running():
            time.sleep(1.5)
            down = time.monotonic()
            keys.stop(kill=True)
            time.sleep(0.3)
            auth = {"X-API-Key": account.master}
            probes = [
                probe(name, call, stack.api_url)
                for name, call in [
                    ("uncached", jobs(fresh)),
                    ("manage", lambda c: c.post("/v1/api-keys", json={"name": "x"}, headers=auth)),
                    ("list", lambda c: c.get("/v1/api-keys", headers=auth)),
                    ("sign-up", lambda c: c.post("/v1/accounts")),
                ]
            ]
            time.sleep(max(0.0, outage - 0.3))
            up = time.monotonic()
            keys.start()

            def recovered() -> bool:
                with httpx.Client(base_url=stack.api_url, timeout=5) as client:
                    listed = client.get("/v1/api-keys", headers=auth)
                    return jobs(fresh)(client).status_code == 200 and listed.status_code == 200

            result.recovery_seconds = recovered_after(up, recovered)
            time.sleep(1)
        answers = load.answers
        result.count([*answers, *probes])
        result.expect(result.recovery_seconds is not None, "no recovery after the restart")
        cached = [a for a in answers if a.caller in ("cached", "master")]
        refused = [a for a in cached if a.status != 200]
        result.expect(not refused, f"cached keys refused: {_outcomes(refused)}")
        unknown = [a for a in answers if a.caller == "unknown"]
        result.expect(not any(a.admitted for a in unknown), "an unknown key was admitted")
        while_down = [a for a in unknown if down + 0.3 <= a.started and a.ended < up]
        result.expect(
            bool(while_down) and all(a.code == "SERVICE_UNAVAILABLE" for a in while_down),
            f"unknown keys while down: {_outcomes(while_down)}",
        )
        for answer in probes:
            result.expect(
                answer.status == 503 and answer.code == "SERVICE_UNAVAILABLE",
                f"{answer.caller} while down: {answer.status} {answer.code}",
            )
        _no_server_errors(result, [*answers, *probes], {"SERVICE_UNAVAILABLE"})
        _usage(result, stack, {account.account_id: [key_id, account.master_key_id]}, answers)
        scan_logs(result, stack, [account])
    return result


# --- 3. The usage service is killed ---------------------------------------------------------

FREE_LIMIT = 60


def _align_to_minute(needed: float) -> None:
    """Sleep into the next minute when fewer than `needed` seconds are left in this one."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.2)


def usage_kill(root: Path, outage: float = 2.5) -> Result:
    """SIGKILL the usage service mid-minute: fail-closed answers 503, fail-open admits with its
    local limiter; after the restart the minute's counts are restored from the KV snapshot, so
    over-admission (admitted in that minute beyond the plan's limit) stays within what was
    admitted after the last snapshot."""
    result = Result("usage-kill")
    with (
        running_stack(root / "usage-kill") as stack,
        httpx.Client(base_url=stack.api_url, timeout=15) as api,
    ):
        closed = url_of(edge(stack, "api-closed", USAGE_FAIL_MODE="closed", USAGE_TIMEOUT="0.3"))
        limited = sign_up(api)  # the free plan: FREE_LIMIT a minute, on the fail-closed edge
        a_key, a_id = limited.new_key(api, "limited")
        roomy = sign_up(api)  # enterprise, on the fail-open edge
        set_plan(stack, roomy.account_id, "enterprise")
        b_key, b_id = roomy.new_key(api, "roomy")
        _align_to_minute(needed=20)
        load = Load(stack.api_url)
        load.add("closed", jobs(a_key, base=closed), a_id, pause=0.08)
        load.add("open", jobs(b_key), b_id, pause=0.03)
        usage = stack.processes["usage"]
        with load.running():
            half = FREE_LIMIT // 2
            wait_for(lambda: sum(a.admitted for a in load.of("closed")) >= half, timeout=15)
            down = time.monotonic()
            minute_end = max(a.reset for a in load.of("closed"))
            usage.stop(kill=True)
            time.sleep(outage)
            up = time.monotonic()
            usage.start()
            exact = _first_after(lambda: load.of("closed"), up, lambda a: a.mode == "exact")
            result.recovery_seconds = recovered_after(up, exact)
            limited_again = _first_after(lambda: load.of("closed"), up, lambda a: a.status == 429)
            wait_for(limited_again, timeout=20)
            time.sleep(0.5)
        answers = load.answers
        result.count(answers)
        result.expect(result.recovery_seconds is not None, "no exact decisions after the restart")
        settled = down + 0.5  # requests in flight at the kill may still have had a decision
        closed_down = load.of("closed", settled, up)
        open_down = load.of("open", settled, up)
        result.expect(
            bool(closed_down)
            and all(
                a.code == "SERVICE_UNAVAILABLE" and a.mode == "fail-closed" for a in closed_down
            ),
            f"fail-closed while down: {_outcomes(closed_down)}",
        )
        result.expect(
            bool(open_down) and all(a.status == 200 and a.mode == "fail-open" for a in open_down),
            f"fail-open while down: {_outcomes(open_down)}",
        )
        in_minute = [a for a in load.of("closed") if a.admitted and a.reset == minute_end]
        after_restart = [a for a in load.of("closed", up) if a.reset == minute_end]
        result.expect(bool(after_restart), "the minute ended before the restart: inconclusive")
        over = len(in_minute) - FREE_LIMIT
        result.notes.append(
            f"over-admission in the minute of the kill: {over} (admitted {len(in_minute)}, "
            f"limit {FREE_LIMIT}; without restored counts it would be up to {FREE_LIMIT})"
        )
        # Bounded by what was admitted after the last snapshot (every 0.2 s, ~12 requests/s).
        result.expect(over <= 6, f"over-admission {over}: the counts were not restored")
        _no_server_errors(result, answers, {"SERVICE_UNAVAILABLE"})
        _usage(result, stack, {limited.account_id: [a_id], roomy.account_id: [b_id]}, answers)
        scan_logs(result, stack, [limited, roomy])
    return result


# --- 4. Relay and database ------------------------------------------------------------------


def _management_scenario(
    result: Result,
    stack: Stack,
    fault: Callable[[], tuple[float, float]],
    allowed: set[str],
) -> None:
    """Management commands and cached-key traffic while `fault()` runs (it returns when the
    fault began and ended); then the key event log must equal the store."""
    with httpx.Client(base_url=stack.api_url, timeout=15) as api:
        account = sign_up(api)
        key, key_id = account.new_key(api, "load")
        warm(api, key, account.master)
        managers = [Manager(account.master) for _ in range(2)]
        load = Load(stack.api_url)
        for n, manager in enumerate(managers):
            load.add(f"manage{n}", manager.call(), account.master_key_id, pause=0.02)
        load.add("cached", jobs(key), key_id)
        with load.running():
            time.sleep(1.5)
            _, ended = fault()
            managed = _first_after(
                lambda: load.answers, ended, lambda a: a.caller.startswith("manage") and a.admitted
            )
            result.recovery_seconds = recovered_after(ended, managed)
            time.sleep(1.5)
        answers = load.answers
        result.count(answers)
        result.expect(result.recovery_seconds is not None, "management never worked again")
        refused = [a for a in answers if a.caller == "cached" and a.status != 200]
        result.expect(not refused, f"cached keys refused: {_outcomes(refused)}")
        _no_server_errors(result, answers, allowed)
        log = check_key_log(stack.database_url, stack.nats.url)
        result.events_lost, result.events_duplicated = log.lost, log.duplicated
        result.expect(log.in_order, "the key event log is not in store order")
        result.expect(log.same_bytes, "a logged event differs from the stored one")
        extra, missing = unacknowledged_and_missing(log.stored, managers)
        result.expect(not missing, f"acknowledged changes missing from the store: {missing[:3]}")
        result.notes.append(
            f"{len(log.stored)} events stored; {sum(len(m.acked) for m in managers)} changes "
            f"acknowledged; {len(extra)} answered with an error yet committed "
            f"({Counter(t for t, _ in extra)})"
        )
        _usage(result, stack, {account.account_id: [key_id, account.master_key_id]}, answers)
        scan_logs(result, stack, [account])


def keys_kill_mid_command(root: Path) -> Result:
    """SIGKILL the keys service while management commands are in flight (committed, maybe not
    yet relayed), twice, and restart it: the key event log ends up equal to the store."""
    result = Result("keys-kill-mid-command")
    with running_stack(root / "relay-kill", **UNLIMITED) as stack:
        keys = stack.processes["keys"]

        def fault() -> tuple[float, float]:
            began = time.monotonic()
            for n in range(2):
                keys.stop(kill=True)
                time.sleep(0.5)
                restarted = time.monotonic()
                keys.start()
                if n == 0:
                    time.sleep(3)  # served again, then killed again
            return began, restarted

        _management_scenario(result, stack, fault, {"SERVICE_UNAVAILABLE"})
    return result


def sqlite_locked(root: Path, seconds: float = 3.0) -> Result:
    """Another connection holds an exclusive transaction on the keys database for a few
    seconds: management answers 503 while writes cannot commit, nothing is lost or doubled."""
    result = Result("sqlite-locked")
    with running_stack(root / "sqlite-lock", **UNLIMITED) as stack:
        path = stack.database_url.split(":///", 1)[1]

        def fault() -> tuple[float, float]:
            db = sqlite3.connect(path, timeout=10, isolation_level=None)
            try:
                db.execute("BEGIN EXCLUSIVE")
                began = time.monotonic()
                time.sleep(seconds)
                db.execute("COMMIT")
            finally:
                db.close()
            return began, time.monotonic()

        _management_scenario(result, stack, fault, {"SERVICE_UNAVAILABLE"})
    return result


def postgres_down(root: Path, seconds: float = 3.0) -> Result:
    """The keys service on PostgreSQL; its database refuses connections and its sessions are
    terminated for a few seconds: 503 with the error body while down, nothing lost after."""
    result = Result("postgres-down")
    with postgres_database() as database:
        if database is None:
            result.skipped = "no PostgreSQL reachable"
            return result
        with running_stack(root / "postgres", database_url=database.url, **UNLIMITED) as stack:

            def fault() -> tuple[float, float]:
                began = time.monotonic()
                asyncio.run(database.refuse_connections())
                time.sleep(seconds)
                asyncio.run(database.allow_connections())
                return began, time.monotonic()

            _management_scenario(result, stack, fault, {"SERVICE_UNAVAILABLE"})
    return result


SCENARIOS: dict[str, Callable[[Path], Result]] = {
    "nats-restart": nats_restart,
    "keys-kill": keys_kill,
    "usage-kill": usage_kill,
    "keys-kill-mid-command": keys_kill_mid_command,
    "sqlite-locked": sqlite_locked,
    "postgres-down": postgres_down,
    "upstream": upstream_faults,
}
