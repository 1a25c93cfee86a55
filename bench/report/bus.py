"""Sections 2 and 3 of the report: rate-limit decisions and auth checks on the bus, each
against the bare responder run alternately with it."""

from __future__ import annotations

from typing import Any

from bench.report.format import cpu_per, md_table


def _by_batch_table(by_batch: dict[Any, dict[str, Any]], process: str, items: str) -> str:
    """One row per batch size: `process`'s rate of `items`, the ceiling's, and its CPU."""
    header = ["batch size", f"{process} {items}/s", "bare responder /s", f"{process} / ceiling"]
    rows = [
        [
            str(size),
            f"{b['per_second']:,.0f}",
            f"{b['ceiling_per_second']:,.0f}",
            f"{b['ratio_to_ceiling']:.2f}",
            f"{cpu_per(b['runs'][process], process, 100_000):.2f}" if b["runs"] else "",
        ]
        for size, b in by_batch.items()
    ]
    return md_table([*header, f"{process} CPU s per 100k {items}"], rows)


def decisions_section(d: dict[str, Any]) -> list[str]:
    return [
        "## 2. Rate-limit decisions per second, one usage process",
        "",
        f"DecideBatch requests on `aitbc.usage.decide.<partition>` for {d['accounts']:,} "
        f"accounts, {d['concurrency']} requests in flight, alternating with a bare nats-py "
        "responder that decodes each batch and answers fixed admits (bench/null_responder.py: "
        "the ceiling of a Python process on this bus).",
        "",
        _by_batch_table(d["by_batch"], "usage", "decisions"),
        "",
        *_windowed_rows(d.get("windowed")),
    ]


def _windowed_rows(w: dict[str, Any] | None) -> list[str]:
    """A plan with a second and a day (a restricted key's plan), against a minute alone."""
    if not w:
        return []
    runs = w["runs"]
    return [
        f"A plan with a burst limit and a daily quota ({w['accounts']:,} accounts; every "
        "window counted, never lent), alternating with as many accounts on a minute alone, "
        "batches of 100:",
        "",
        md_table(
            ["plan", "decisions/s", "usage CPU s per 100k decisions"],
            [
                [
                    "minute alone",
                    f"{w['minute_per_second']:,.0f}",
                    f"{cpu_per(runs['minute'], 'usage', 100_000):.2f}",
                ],
                [
                    "second, minute and day",
                    f"{w['per_second']:,.0f} ({w['ratio_to_minute']:.2f} of the minute's)",
                    f"{cpu_per(runs['windowed'], 'usage', 100_000):.2f}",
                ],
            ],
        ),
        "",
    ]


def auth_checks_section(a: dict[str, Any]) -> list[str]:
    by_batch = a.get("by_batch") or {1: {**a, "runs": {}}}
    return [
        "## 3. Auth checks per second, one keys process, cache misses",
        "",
        f"CheckKeys requests on `aitbc.keys.check` for {a['distinct_keys']:,} distinct keys "
        f"(no run repeats a key), {a['concurrency']} requests in flight, alternating with "
        "the bare responder. The edge batches its cache misses adaptively "
        "(aitbc_gate.batching): a lone miss leaves at once in a batch of 1, and the misses "
        "of a burst, or those that arrive while batches are out, share one message; so "
        "each size below is a load an edge makes. The target row uses batches of "
        f"{a.get('headline_batch', 1)}.",
        "",
        _by_batch_table(by_batch, "keys", "checks"),
        "",
    ]


def bus_sections(r: dict[str, Any]) -> list[str]:
    out = []
    if d := r.get("decisions"):
        out += decisions_section(d)
    if a := r.get("auth_checks"):
        out += auth_checks_section(a)
    return out
