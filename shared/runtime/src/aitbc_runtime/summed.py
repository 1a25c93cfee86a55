"""Metrics of a server's workers (aitbc_api.workers), summed on one operators' port.

In prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before the library is
imported) each process writes its metrics into files there, and the worker that holds the
port sums them all (`summed_registry`). Only what is in those files reaches `/metrics`: the
library's own Counters, Gauges and Histograms write them, but a Tally (plain ints:
aitbc_runtime.tallies) and a Gauge read through `set_function` write nothing, and would be
missing or read 0. So in that mode each process copies them into files of their own names on
the event loop: once a second, before the serving worker answers a scrape, and at its exit
(`syncing`). Outside that mode nothing changes: a Gauge reads its function at the scrape.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache

from prometheus_client import CollectorRegistry, Gauge, multiprocess

from aitbc_runtime.process import cancel_and_wait

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
SYNC_SECONDS = 1.0  # how far behind the other workers' counts a scrape may be

_syncs: list[Callable[[], None]] = []  # each Tally's copy into its Counter
_sampled: dict[Gauge, Callable[[], float]] = {}


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


@cache
def summed_registry() -> CollectorRegistry:
    """Every worker's metrics, from their files."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def on_sync(copy: Callable[[], None]) -> None:
    """`copy` runs at each sync (multiprocess mode): what it keeps outside the files goes in."""
    _syncs.append(copy)


def sampled(gauge: Gauge, read: Callable[[], float]) -> None:
    """`gauge` reads `read()`: at each scrape, or in multiprocess mode at each sync (the last
    function given for a gauge is the one read)."""
    if multiprocess_mode():
        _sampled[gauge] = read
    else:
        gauge.set_function(read)


def sync() -> None:
    """This process's Tallies and sampled Gauges into its files (multiprocess mode only)."""
    if not multiprocess_mode():
        return
    for copy in _syncs:
        copy()
    for gauge, read in list(_sampled.items()):
        gauge.set(read())


@asynccontextmanager
async def syncing() -> AsyncIterator[None]:
    """While open, in multiprocess mode: a sync every SYNC_SECONDS, and one at the end."""
    if not multiprocess_mode():
        yield
        return

    async def every_second() -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            sync()

    task = asyncio.create_task(every_second(), name="metrics-sync")
    try:
        yield
    finally:
        await cancel_and_wait([task])
        sync()
