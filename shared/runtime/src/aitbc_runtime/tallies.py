"""Counters on the path of every request: plain ints, read when `/metrics` is scraped.

prometheus_client's `Counter.inc` takes a lock: about 1 us a call on the benchmark machine
(bench/results/ANALYSIS.md, "The gate"), and the gate counts two things per request, where all
of it may cost a few microseconds. A Tally is a counter family exposed as prometheus_client
exposes its own (a Collector on its registry, so `/metrics` is unchanged), whose children are
ints. A process increments them on its event loop, the thread that also serves `/metrics`
(aitbc_runtime.metrics), so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from aitbc_runtime.summed import multiprocess_mode, on_sync


class TallyChild:
    __slots__ = ("synced", "value")

    def __init__(self) -> None:
        self.value = 0
        self.synced = 0  # what its Counter holds of it (multiprocess mode)

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class Tally(Collector):
    """A counter family of `labelnames`, each child (`labels(...)`) a plain int."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], TallyChild] = {}
        registry.register(self)
        # A server's workers: only files reach /metrics, so a Counter of the same name (its
        # own, not a registry's) carries the counts there at each sync (aitbc_runtime.summed).
        if multiprocess_mode():
            self._shared = Counter(name, documentation, labelnames, registry=None)
            on_sync(self._sync)

    def _sync(self) -> None:
        for values, child in list(self._children.items()):
            if child.value != child.synced:
                self._shared.labels(*values).inc(child.value - child.synced)
                child.synced = child.value

    def labels(self, *values: str) -> TallyChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, given {values}")
        return self._children.setdefault(values, TallyChild())

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family
