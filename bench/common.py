"""What every bench phase shares: where results go, statistics, and the progress line."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

from aitbc_infra import stack as definition
from bench.httpclient import build_request
from bench.stack import ROOT, Proc

RESULTS = ROOT / "bench" / "results"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def against_ceiling(metered: dict[str, list[dict]], process: str) -> dict[str, Any]:
    """Median rates of `process` and of the bare responder run alternately with it."""
    rate = median([r["per_second"] for r in metered[process]])
    ceiling = median([r["per_second"] for r in metered["ceiling"]])
    return {
        "per_second": rate,
        "ceiling_per_second": ceiling,
        "ratio_to_ceiling": rate / ceiling,
        "runs": metered,
    }


def rates(b: dict[str, Any]) -> str:
    return f"{b['per_second']:,.0f}/s (bare responder {b['ceiling_per_second']:,.0f}/s)"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def edge_metrics(edge: Proc) -> dict[str, float]:
    """The edge's own counters (/metrics, on its operators' port), for the mean size of its
    decision batches."""
    url = definition.metrics_url(edge.env)
    reader, writer = await asyncio.open_connection(urlsplit(url).hostname, urlsplit(url).port)
    writer.write(build_request(url, {"Connection": "close"}))
    data = (await reader.read()).decode(errors="replace")
    writer.close()
    values: dict[str, float] = {}
    for line in data.split("\r\n\r\n", 1)[-1].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values
