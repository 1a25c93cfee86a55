"""What every cluster fault test asserts of what the clients saw and what the cluster recorded.

- No 500 ever, and no 5xx but a fail-closed 503 (SERVICE_UNAVAILABLE): the edges fail closed,
  and a 503 is allowed only while a partition has no holder (or a keys request no keys
  service): for each caller, only for a request still unanswered at the fault, or started
  before its first request decided exactly after the test saw the cluster recover
  (`recovered`: the takeover seen in the lease bucket, a new leader elected...). `steady` callers'
  accounts kept their holder throughout: no 503 at all.
- A free account is admitted no more than its limit plus the takeover bound in any minute:
  what the dead holder admitted after its last snapshot (USAGE_SNAPSHOT_INTERVAL, 0.2 s), at
  most what the account was admitted in the second before the fault (docs/architecture.md,
  "Partitions that move"; with USAGE_FAIL_MODE=closed the edges admit nothing on their own).
- Every request an edge decided on is in the usage stream exactly once, and the aggregates
  count the stream's events exactly; the key event log holds every stored event once, in
  order, byte for byte, and every change a client was told of.
"""

from __future__ import annotations

from collections import Counter

from tests.chaos.checks import outcomes
from tests.chaos.keylog import check_key_log, unacknowledged_and_missing
from tests.chaos.load import Answer, UsageCheck, check_usage
from tests.chaos.report import Result
from tests.cluster.traffic import FREE_LIMIT, Traffic

FAIL_CLOSED = "SERVICE_UNAVAILABLE"


def outcomes_of(answers: list[Answer]) -> str:
    return ", ".join(f"{c} {n}" for c, n in Counter(a.caller for a in answers).most_common())


def server_errors(answers: list[Answer]) -> list[Answer]:
    """5xx other than the fail policy's 503."""
    return [
        a for a in answers if a.status >= 500 and not (a.status == 503 and a.code == FAIL_CLOSED)
    ]


def refused_out_of_time(
    answers: list[Answer],
    fault: float,
    recovered: float,
    steady: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[Answer]:
    """503s that ended before the fault, or started after the caller's first exact decision
    after `recovered`; and any 503 of a caller whose key is in `steady`."""
    wrong = []
    for caller in {a.caller for a in answers}:
        mine = [a for a in answers if a.caller == caller]
        back = min(
            (a.started for a in mine if a.started >= recovered and a.mode == "exact"),
            default=float("inf"),
        )
        for a in mine:
            if a.status == 503 and (a.ended < fault or a.started >= back or a.key_id in steady):
                wrong.append(a)
    return wrong


def over_admitted(traffic: Traffic, fault: float) -> list[str]:
    """Free accounts admitted in a minute beyond FREE_LIMIT plus the bound (see above)."""
    found = []
    answers = traffic.answers()
    for account, key_id in traffic.free:
        mine = [a for a in answers if a.key_id == key_id and a.admitted]
        bound = sum(1 for a in mine if fault - 1.0 <= a.started < fault)
        for minute, admitted in Counter(a.reset for a in mine).items():
            if admitted > FREE_LIMIT + bound:
                found.append(f"{account.account_id}: {admitted} in minute {minute}, bound {bound}")
    return found


def usage_recorded(traffic: Traffic, answers: list[Answer], within: float = 30) -> UsageCheck:
    """`within`: how long the stream may take to hold every event expected."""
    accounts = {account.account_id: [key_id] for account, key_id in traffic.free}
    accounts[traffic.big.account.account_id] = [traffic.big.key_id]
    return check_usage(traffic.cluster.access("auditor"), accounts, answers, within)


# How long the key log may take to hold every stored event: the log itself, in KEYLOG (what the
# relay publishes: a relay that skipped or lost an event fails here), then the auditor's copy
# of it, a mirror in READ. The cluster is whole again only once every mirror follows its
# source (harness.RunningCluster.whole), so neither waits on nats-server's retry of a mirror
# whose source's leader was killed. A lost event never arrives, however long the wait.
KEY_LOG_WITHIN = 30.0


def key_log_whole(result: Result, traffic: Traffic) -> None:
    cluster = traffic.cluster
    url = cluster.layout.database_url
    log = check_key_log(url, cluster.access("keylog-admin"), timeout=KEY_LOG_WITHIN)
    result.events_lost, result.events_duplicated = log.lost, log.duplicated
    result.expect(
        log.lost == log.duplicated == 0, f"key events lost {log.lost}, twice {log.duplicated}"
    )
    result.expect(log.in_order and log.same_bytes, "the key log is out of order or rewritten")
    read = check_key_log(url, cluster.access("auditor"), timeout=KEY_LOG_WITHIN)
    result.expect(
        read.lost == read.duplicated == 0 and read.in_order and read.same_bytes,
        f"the auditor's mirror of the key log (in READ) lacks {read.lost} of the events the "
        f"log holds, has {read.duplicated} twice"
        + ("" if read.in_order and read.same_bytes else ", is out of order or rewritten"),
    )
    _, missing = unacknowledged_and_missing(log.stored, traffic.managers)
    result.expect(missing == [], f"key changes acknowledged but not stored: {missing}")


def check_all(
    result: Result,
    traffic: Traffic,
    fault: float,
    recovered: float,
    steady: set[str] = frozenset(),  # type: ignore[assignment]
    killed_edge: int | None = None,
    until: float = float("inf"),
) -> Result:
    """Everything above, into `result`, on the answers of the edges that stayed up
    (`killed_edge`'s: no 5xx, and usage events never twice; see faults.edge_killed for what
    it may lose). The 503 rule is for requests started before `until` (the caller checks the
    rest)."""
    kept = [i for i in range(len(traffic.loads)) if i != killed_edge]
    answers = [a for i in kept for a in traffic.answers(i)]
    result.count(traffic.answers())
    errors = server_errors(answers)
    result.expect(bool(answers) and not errors, f"server errors: {outcomes(errors)}")
    silent = [a for a in answers if a.status == 0]
    result.expect(not silent, f"{len(silent)} requests got no answer: {silent[:2]}")
    for i in kept:
        before = [a for a in traffic.answers(i) if a.started < until]
        wrong = refused_out_of_time(before, fault, recovered, steady)
        when = sorted({round(a.started - fault, 1) for a in wrong})
        result.expect(
            not wrong,
            f"edge {i}: 503 outside the takeover (recovered at +{recovered - fault:.1f} s): "
            f"{outcomes(wrong)}, started at +{when} s after the fault, by {outcomes_of(wrong)}",
        )
    over = over_admitted(traffic, fault)
    result.expect(over == [], f"over-admitted: {over}")
    usage = usage_recorded(traffic, answers)
    result.usage_lost, result.usage_duplicated = usage.lost, usage.duplicated
    result.expect(usage.lost == usage.duplicated == 0, f"usage events: {usage.detail}")
    key_log_whole(result, traffic)
    return result
