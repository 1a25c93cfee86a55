"""The usage service's metrics (prometheus_client), served on the operators' port
(USAGE_METRICS_PORT) by aitbc_runtime.metrics. Labels take a few known values each: a
partition (0-15) and an outcome, never an account, a key or an id. The decisions' series are
bound once here, per partition (`.labels()` looks a child up under a lock). The gauges are
read when scraped, from what the running service keeps anyway (aitbc_usage.main binds them).
The key events its plan book refuses are counted by the reader every process shares
(aitbc_runtime.key_events.REFUSED)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from aitbc_contracts.subjects import USAGE_PARTITIONS
from aitbc_contracts.usage import Decision

DECISIONS = Counter(
    "aitbc_usage_decisions_total",
    "Rate-limit decisions made by this process, by partition (0-15) and outcome (admitted, "
    "limited); refusals that decided nothing (an unknown account, a misrouted one) are not counted",
    ["partition", "outcome"],
)
# partition -> (its admitted series, its limited series)
_DECIDED = [
    (DECISIONS.labels(str(p), "admitted"), DECISIONS.labels(str(p), "limited"))
    for p in range(USAGE_PARTITIONS)
]

SHADOW = Counter(
    "aitbc_usage_shadow_refusals_total",
    "Requests of plans or keys in shadow mode that their limits would have refused, admitted: "
    "by the window that would have refused (second, minute, day)",
    ["window"],
)
# the window's seconds -> its series
SHADOW_REFUSALS = {1: SHADOW.labels("second"), 60: SHADOW.labels("minute")}
SHADOW_REFUSALS[86_400] = SHADOW.labels("day")

PARTITIONS_OWNED = Gauge(
    "aitbc_usage_partitions_owned", "Partitions this process decides for now (its lease fresh)"
)
SNAPSHOT_AGE = Gauge(
    "aitbc_usage_snapshot_age_seconds",
    "Seconds since the counts of every partition held here were last all saved to the "
    "snapshots' bucket (saved every USAGE_SNAPSHOT_INTERVAL while it answers)",
)
AGGREGATES_LAG = Gauge(
    "aitbc_usage_aggregates_lag_events",
    "Messages of the usage stream, in the partitions held here, not yet counted in the "
    "aggregates (as of the last message the aggregator was given)",
)
EVENTS_REFUSED = Counter(
    "aitbc_usage_events_refused_total",
    "Usage events the aggregator could not read and left out (a malformed event, or a "
    "message that is no usage event at all)",
)


def count_decisions(partition: int | None, decisions: Sequence[Decision]) -> None:
    """A batch's decisions, counted once it is answered. A refusal with a code decided
    nothing: it is not counted; nor is a batch of no partition (a test's deciding alone)."""
    if partition is None:
        return
    admitted = limited = 0
    for decision in decisions:
        if decision.admitted:
            admitted += 1
        elif not decision.code:
            limited += 1
    admitted_series, limited_series = _DECIDED[partition]
    if admitted:
        admitted_series.inc(admitted)
    if limited:
        limited_series.inc(limited)
