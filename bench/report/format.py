"""What every part of the report shares: Markdown tables, medians, rounding toward a target,
and how much of the machine other processes took during the measurements."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def toward(value: float, fmt: str, rounding: Callable[[float], int]) -> float:
    """`value` rounded to `fmt`'s decimals with `rounding` (math.floor or math.ceil)."""
    places = int(match.group(1)) if (match := re.search(r"\.(\d+)f", fmt)) else 0
    return rounding(value * 10**places) / 10**places


def floor_to(value: float, fmt: str) -> float:
    return toward(value, fmt, math.floor)


def ceil_to(value: float, fmt: str) -> float:
    return toward(value, fmt, math.ceil)


def cores(run: dict[str, Any]) -> dict[str, float]:
    """Each process's CPU in a run, in cores (CPU seconds per second of the run)."""
    return {name: s / run["wall_seconds"] for name, s in run["cpu_seconds"].items()}


def cpu_per(runs: list[dict[str, Any]], process: str, items: int) -> float:
    """CPU seconds `process` spent per `items` items, over all `runs`."""
    seconds = sum(run["cpu_seconds"][process] for run in runs)
    return seconds / max(1, sum(run["items"] for run in runs)) * items


def others_cores(runs: list[dict[str, Any]]) -> float:
    """The median load other processes put on the machine over `runs` (cores)."""
    return median([run.get("others_cores", 0.0) for run in runs])


def noise(r: dict[str, Any]) -> float:
    """The most CPU other processes on the machine used during a measured phase (cores)."""
    loads = [others_cores(sc["runs"]) for sc in r.get("http", {}).get("scenarios", {}).values()]
    for paced in ("paced", "workers"):
        loads += [others_cores(runs) for runs in r.get(paced, {}).get("runs", {}).values()]
    return max(loads, default=0.0)


NOISY = 0.15  # cores of other processes beyond which a run is called noisy


def noise_note(r: dict[str, Any]) -> list[str]:
    level = noise(r)
    load = r.get("load_average", {})
    text = (
        f"Other processes on this shared machine used up to {level:.2f} cores during the HTTP "
        f"measurements (load average {load.get('start', 0):.1f} at the start, "
        f"{load.get('end', 0):.1f} at the end)."
    )
    if level > NOISY:
        return [
            f"> **Noisy run.** {text} Absolute figures are depressed and the ratios are "
            "noisier than on a quiet machine; compare rounds, and rerun when it is quiet.",
            "",
        ]
    return [text, ""]
