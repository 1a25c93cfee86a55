"""Where the Prometheus files are (infra/prometheus), and the tools that check them where
installed: promtool (Debian's package `prometheus`) and the blackbox exporter
(`prometheus-blackbox-exporter`). Tests that need one are skipped, saying so, without it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parents[1] / "infra" / "prometheus"

PROMTOOL = shutil.which("promtool")
BLACKBOX = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian's package `prometheus` has it)"
)
needs_blackbox = pytest.mark.skipif(
    BLACKBOX is None,
    reason="the blackbox exporter is not installed (Debian: prometheus-blackbox-exporter)",
)
