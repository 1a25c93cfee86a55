"""The edge's counters are for operators: /metrics is served on a port of its own, on
127.0.0.1, and not on the public listener."""

from __future__ import annotations

import httpx

from aitbc_infra.stack import metrics_url
from tests.e2e.stack import Stack


def test_metrics_are_not_on_the_public_port_but_on_the_operators_one(
    stack: Stack, api: httpx.Client
) -> None:
    public = api.get("/metrics")
    assert public.status_code == 404 and public.json()["error"]["code"] == "NOT_FOUND"
    url = metrics_url(stack.processes["api"].env)
    assert url.startswith("http://127.0.0.1:") and not url.startswith(stack.api_url)
    served = httpx.get(url, timeout=10)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE aitbc_usage_events_buffered gauge" in served.text
    assert "aitbc_auth_cache_total" in served.text
    other = httpx.get(url.removesuffix("/metrics") + "/v1/health", timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "NOT_FOUND"
