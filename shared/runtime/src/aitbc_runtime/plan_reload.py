"""Reloads a process's plans file (aitbc_contracts.plans.PlanTable) on SIGHUP and when its
modification time changes (polled every few seconds). A file that does not validate leaves the
plans as they were: the error is logged and counted (aitbc_plans_reload_failures_total).

Every table being watched in the process answers one SIGHUP handler: an event loop keeps one
handler per signal, and a process may hold several tables (a test running services side by
side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter

from aitbc_contracts.plans import PlansError, PlanTable
from aitbc_runtime.process import cancel_and_wait

log = logging.getLogger("aitbc.plans")

POLL_SECONDS = 2.0

RELOAD_FAILURES = Counter(
    "aitbc_plans_reload_failures_total",
    "Reloads of the plans file (PLANS_FILE) that did not validate: the plans stayed as they were",
)

_watched: set[PlanTable] = set()


def reload(table: PlanTable) -> bool:
    """Reads the table's file again; whether the plans changed. Never raises."""
    try:
        changed = table.reload()
    except PlansError as exc:
        RELOAD_FAILURES.inc()
        log.error("plans file not reloaded, the plans stay as they were: %s", exc)
        return False
    if changed:
        log.info("plans reloaded from %s: %s", table.path, ", ".join(sorted(table.plans)))
    return changed


def _on_hangup() -> None:
    for table in list(_watched):
        reload(table)


async def _poll(table: PlanTable, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        if table.changed():
            reload(table)


@asynccontextmanager
async def watching(table: PlanTable, interval: float = POLL_SECONDS) -> AsyncIterator[None]:
    """Keeps `table` up to date with its file while the block runs (nothing to do without one)."""
    if not table.path:
        yield
        return
    loop = asyncio.get_running_loop()
    if not _watched:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _on_hangup)  # not from a thread: polled only
    _watched.add(table)
    task = loop.create_task(_poll(table, interval), name="plans-reload")
    try:
        yield
    finally:
        await cancel_and_wait([task])
        _watched.discard(table)
        if not _watched:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
