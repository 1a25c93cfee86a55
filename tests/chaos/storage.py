"""Fault scenarios of the keys service's store: killed mid-command, a locked SQLite file, a
PostgreSQL that refuses connections. After each, the key event log must equal the store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.chaos.checks import first_after, no_server_errors, outcomes, record_usage
from tests.chaos.keylog import Manager, check_key_log, unacknowledged_and_missing
from tests.chaos.load import Load, recovered_after
from tests.chaos.postgres import postgres_database
from tests.chaos.report import Result
from tests.chaos.setup import UNLIMITED, jobs, running_stack, scan_logs, sign_up, warm
from tests.e2e.stack import Stack

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
            managed = first_after(
                lambda: load.answers, ended, lambda a: a.caller.startswith("manage") and a.admitted
            )
            result.recovery_seconds = recovered_after(ended, managed)
            time.sleep(1.5)
        answers = load.answers
        result.count(answers)
        result.expect(result.recovery_seconds is not None, "management never worked again")
        refused = [a for a in answers if a.caller == "cached" and a.status != 200]
        result.expect(not refused, f"cached keys refused: {outcomes(refused)}")
        no_server_errors(result, answers, allowed)
        log = check_key_log(stack.database_url, stack.nats.access("auditor"))
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
        record_usage(result, stack, {account.account_id: [key_id, account.master_key_id]}, answers)
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
