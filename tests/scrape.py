"""Reading a service's /metrics as Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str) -> list[Sample]:
    """Every sample of an exposition; a malformed one fails the parse (and the test)."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    return sum(
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def scrape(url: str) -> str:
    answer = httpx.get(url, timeout=10)
    answer.raise_for_status()
    return answer.text


def registered(name: str, **labels: str) -> float:
    """A sample of this process's own registry (0 when there is none): what its /metrics would
    say, for a test that runs a service in-process."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
