"""Process counters, in the Prometheus text format at /metrics on the operators' listener
(aitbc_api.metrics_listener). No labels carry secrets."""

from __future__ import annotations

from collections import Counter

counters: Counter[str] = Counter()

HELP = {
    "aitbc_ratelimit_decisions_total": "Rate-limit decisions by outcome",
    "aitbc_ratelimit_fallback_total": "Requests decided without the usage service, by policy",
    "aitbc_usage_events_published_total": "Usage events stored in the usage stream",
    "aitbc_usage_events_dropped_total": "Usage events dropped because the buffer was full",
    "aitbc_usage_events_buffered": "Usage events waiting to be published",
    "aitbc_bus_batches_total": "NATS requests carrying batches (decisions, key checks)",
    "aitbc_auth_lookups_total": "Keys asked of the keys service (auth cache misses)",
    "aitbc_auth_throttled_total": "Requests refused for too many invalid keys from an address",
    "aitbc_attempts_throttled_total": "Sign-ups and dashboard sign-ins refused by their budgets",
}


def series(name: str, labels: str = "") -> str:
    """A counter's key: its name and labels (build it once for a hot path, then `add`)."""
    return f"{name}{{{labels}}}" if labels else name


def inc(name: str, labels: str = "", by: int = 1) -> None:
    counters[series(name, labels)] += by


def add(series_key: str, by: int = 1) -> None:
    counters[series_key] += by


def render(gauges: dict[str, float]) -> str:
    lines = []
    for name, help_text in HELP.items():
        kind = "gauge" if name in gauges else "counter"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        if name in gauges:
            lines.append(f"{name} {gauges[name]}")
        series = [(k, v) for k, v in sorted(counters.items()) if k.split("{")[0] == name]
        lines += [f"{k} {v}" for k, v in series] or ([] if name in gauges else [f"{name} 0"])
    return "\n".join(lines) + "\n"
